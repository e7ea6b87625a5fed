#!/usr/bin/env bash
# How a process lives and dies under LD_PRELOAD=libgomalloc.so (issue 16). The allocator's
# own thread (the scavenger) must not keep a process alive after its last thread called
# pthread_exit, change its exit status, stop a signal from ending it, or break fork from a
# thread, vfork/posix_spawn, exec after fork or daemon().
#
#   shim-c/tests/run-process-life.sh [scenario-substring ...]
#
#   repro      issue 16's reproduction verbatim (tests/c/pthread_exit_repro.c): main frees
#              half of 4000 x 16 KiB and calls pthread_exit; must print its line and exit 0.
#              Run under `timeout -k 2 10`: 124 means SIGTERM ended a hung process, 137 that
#              even SIGTERM did not (the issue's "only SIGKILL ends it").
#   scenarios  tests/c/process_life.c, one process per scenario (its header lists them):
#              each must end as it does on glibc (exit 0, exit 3 or death by SIGTERM) within
#              its deadline; a hung one is reported with its /proc State and Threads.
#              alloc_only_one_thread and idle_after_free_one_thread are gomalloc-only
#              expectations (trivially true on glibc): a program that never frees much has
#              one thread, and the allocator's thread is gone once idle (each polls 5 s).
#
# Everything runs twice: without a preload (validates the tests) and with
# LD_PRELOAD=$GOMALLOC_SO. Prints `N passed, N failed` last; exits non-zero on a failure.
# Environment: GOMALLOC_SO (else find-library.sh builds target/release/libgomalloc.so),
# CC (default gcc), GOMALLOC_TEST_BUILD (default target/c-tests). Takes about 15 s.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GOMALLOC_TEST_BUILD:-$root/target/c-tests}
cc=${CC:-gcc}
mkdir -p "$build"

me=run-process-life
. "$here/find-library.sh"

cflags="-O2 -g -fno-builtin -pthread -Wall -Wextra"
env -u LD_PRELOAD $cc $cflags -o "$build/pthread_exit_repro" "$here/c/pthread_exit_repro.c" &&
    env -u LD_PRELOAD $cc $cflags -o "$build/process_life" "$here/c/process_life.c" ||
    { echo "$me: build failed"; echo "0 passed, 1 failed"; exit 1; }

# Whether test name $1 is selected by the arguments (all when none).
selected() {
    [ ${#filters[@]} -eq 0 ] && return 0
    local f
    for f in "${filters[@]}"; do
        case $1 in *"$f"*) return 0 ;; esac
    done
    return 1
}
filters=("$@")

passed=0 failed=0
# run_scenario LABEL PRELOAD(empty: none) NAME: runs one scenario; prints its status line, then details.
# A command that prints `ok ...` and exits 0 passes; the backstop timeout (60 s) only fires
# if process_life's own deadline handling failed.
run_scenario() {
    local label=$1 pre=$2 name=$3 out rc
    if [ -n "$pre" ]; then
        out=$(timeout -k 5 60 env LD_PRELOAD="$pre" "$build/process_life" "$name" 2>&1)
    else
        out=$(timeout -k 5 60 env -u LD_PRELOAD "$build/process_life" "$name" 2>&1)
    fi
    rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "$out" | grep -E '^ok ' | sed "s/\$/  [$label]/"
    else
        failed=$((failed + 1))
        local status
        status=$(echo "$out" | grep -E '^FAIL ')
        echo "${status:-FAIL $name: exit status $rc} [$label]"
        echo "$out" | grep -vE '^(ok|FAIL) ' | sed 's/^ */    /'
    fi
}

run_repro() {
    local label=$1 pre=$2 out rc start=$SECONDS
    selected repro || return 0
    if [ -n "$pre" ]; then
        out=$(timeout -k 2 10 env LD_PRELOAD="$pre" "$build/pthread_exit_repro" 2>&1)
    else
        out=$(timeout -k 2 10 env -u LD_PRELOAD "$build/pthread_exit_repro" 2>&1)
    fi
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "main: pthread_exit" ]; then
        passed=$((passed + 1))
        echo "ok   repro: main's pthread_exit ends the process with status 0 [$label]"
        return
    fi
    failed=$((failed + 1))
    case $rc in
        124) echo "FAIL repro: hung after main's pthread_exit; SIGTERM after 10 s ended it [$label]" ;;
        137) echo "FAIL repro: hung after main's pthread_exit; SIGTERM did not end it, SIGKILL did [$label]" ;;
        *) echo "FAIL repro: exit status $rc, output \"$out\" (expected status 0) [$label]" ;;
    esac
    echo "    ($((SECONDS - start)) s)"
}

for mode in glibc gomalloc; do
    if [ $mode = glibc ]; then
        pre="" label="glibc"
        echo "== without a preload (validates the tests)"
    else
        pre=$so label="gomalloc"
        echo "== with LD_PRELOAD=$so"
    fi
    run_repro "$label" "$pre"
    for name in $("$build/process_life" --list); do
        selected "$name" || continue
        run_scenario "$label" "$pre" "$name"
    done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
