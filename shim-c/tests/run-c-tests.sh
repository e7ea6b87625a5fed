#!/usr/bin/env bash
# The C test suite of libgomalloc.so (issue 3). Self-contained: builds the library (unless
# GOMALLOC_SO names one) and the C programs, runs them, prints `N passed, N failed` last and
# exits non-zero on any failure.
#
#   shim-c/tests/run-c-tests.sh [test-name-substring ...]
#
# Every program runs twice: on glibc's malloc (no preload: proves the tests themselves are
# right; gomalloc-only tests are skipped there) and with LD_PRELOAD=libgomalloc.so.
#   suite       tests/c/{api,align,misuse,threads,fork,libc,oom}.c, each test in its own child
#   hijack      an executable defining `free` cannot capture the library's internal frees
#   tls_dlopen  40 TLS modules dlopen'ed after a thread started (the __tls_get_addr trap)
#   dlopen_lib  libgomalloc.so itself dlopen'ed (not preloaded) after a thread started: its
#               initial-exec TLS must fit glibc's static TLS surplus (alloc-core/src/tls.rs)
#   early       a library preloaded before libgomalloc.so allocates/threads/forks in its
#               constructor, then the quick part of the suite runs
#   tls model   check-tls-model.sh: the library is STATIC_TLS and nothing malloc, free,
#               calloc or realloc reaches calls __tls_get_addr (README, "TLS model")
# Environment: GOMALLOC_SO=/path/libgomalloc.so (skip the cargo build), CC (default gcc),
#              GOMALLOC_TEST_BUILD (default target/c-tests).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GOMALLOC_TEST_BUILD:-$root/target/c-tests}
cc=${CC:-gcc}
mkdir -p "$build"

me=run-c-tests
. "$here/find-library.sh"

# -fno-builtin: GCC would otherwise fold malloc/free pairs and constant-size checks away.
cflags="-O2 -g -fno-builtin -pthread -Wall -Wextra -Wno-unused-result -Wno-alloc-size-larger-than
        -Wno-use-after-free -Wno-free-nonheap-object -Wno-unused-parameter -Wno-mismatched-dealloc
        -Wno-deprecated-declarations"
c=$here/c
set -e
env -u LD_PRELOAD $cc $cflags -o "$build/suite" "$c/harness.c" "$c/api.c" "$c/align.c" "$c/misuse.c" \
    "$c/threads.c" "$c/fork.c" "$c/libc.c" "$c/oom.c" -ldl
env -u LD_PRELOAD $cc $cflags -o "$build/hijack" "$c/hijack.c"
env -u LD_PRELOAD $cc $cflags -o "$build/tls_dlopen" "$c/tls_dlopen.c" -ldl
env -u LD_PRELOAD $cc $cflags -o "$build/dlopen_lib" "$c/dlopen_lib.c" -ldl
env -u LD_PRELOAD $cc $cflags -shared -fPIC -o "$build/early.so" "$c/early.c"
mkdir -p "$build/tlsmods"
for i in $(seq 0 39); do
    [ "$build/tlsmods/tlsmod$i.so" -nt "$c/tlsmod.c" ] ||
        env -u LD_PRELOAD $cc -O2 -shared -fPIC -o "$build/tlsmods/tlsmod$i.so" "$c/tlsmod.c"
done
set +e

passed=0 failed=0
# Adds the counts of the suite's closing line ("N passed, N failed") from file $1.
add_suite_counts() {
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1)
    if [ -z "$line" ]; then
        echo "   (no closing line: the suite itself crashed)"
        failed=$((failed + 1))
        return
    fi
    passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
}
# Runs one program as one test: run_prog NAME PRELOAD COMMAND...
run_prog() {
    local name=$1 pre=$2
    shift 2
    local out
    if [ -n "$pre" ]; then
        out=$(timeout 120 env LD_PRELOAD="$pre" "$@" 2>&1)
    else
        out=$(timeout 120 env -u LD_PRELOAD "$@" 2>&1)
    fi
    local rc=$?
    if [ $rc -eq 0 ]; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name (exit status $rc)"
        echo "$out" | sed 's/^/    /' | tail -20
        failed=$((failed + 1))
    fi
}

log=$build/suite.log
echo "== suite on glibc's malloc (validates the tests)"
env -u LD_PRELOAD "$build/suite" --expect=glibc "$@" 2>&1 | tee "$log.glibc"
add_suite_counts "$log.glibc"
echo "== suite with LD_PRELOAD=$so"
env LD_PRELOAD="$so" "$build/suite" --expect=gomalloc "$@" 2>&1 | tee "$log.gomalloc"
add_suite_counts "$log.gomalloc"

if [ $# -eq 0 ]; then
    echo "== separate programs"
    run_prog "hijack (glibc)" "" "$build/hijack"
    run_prog "hijack (gomalloc)" "$so" "$build/hijack"
    run_prog "tls_dlopen (glibc)" "" "$build/tls_dlopen" "$build/tlsmods"
    run_prog "tls_dlopen (gomalloc)" "$so" "$build/tls_dlopen" "$build/tlsmods"
    run_prog "dlopen_lib (gomalloc dlopen'ed, not preloaded)" "" "$build/dlopen_lib" "$so"
    run_prog "early preload + suite subset (gomalloc)" "$build/early.so $so" \
        "$build/suite" --expect=gomalloc malloc_zero libc_aliases thread_churn fork_from_a_thread glibc_internal
    run_prog "tls model: STATIC_TLS, no __tls_get_addr on malloc paths" "" "$here/check-tls-model.sh" "$so"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
