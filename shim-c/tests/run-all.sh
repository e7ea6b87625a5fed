#!/usr/bin/env bash
# The one entry point CI calls for libgomalloc.so (issue 3). From any directory:
#
#   shim-c/tests/run-all.sh
#
# 1. builds target/release/libgomalloc.so (cargo is never run with the preload);
# 2. the C suite (tests/run-c-tests.sh): every exported function's edge cases, alignments
#    8 B .. 8 MiB, misuse aborts, fork loops while threads exit, thread churn, TLS/dlopen;
# 3. process life (tests/run-process-life.sh, issue 16): a process whose last thread calls
#    pthread_exit exits 0, exit statuses and SIGTERM are unchanged, fork from a thread,
#    vfork/posix_spawn, exec after fork, daemon() and a forked child that pthread_exits all
#    finish; the allocator's thread exists only while there is memory to give back;
# 4. real programs (tests/run-real-programs.sh): python3, sqlite3, git, gcc/g++, perl, sort,
#    xz, openssl, node must give the same stdout and exit status with and without the
#    preload; a program that is not installed is skipped with a note, unless
#    GOMALLOC_REQUIRE_ALL=1 (then it fails);
# 5. the workspace's Rust test binaries, run by cargo with the library preloaded through
#    .cargo/preload-runner.sh (cargo's `runner` setting; cargo and rustc are not preloaded,
#    nor the trybuild binary that runs them: gc/tests/compile_fail.rs).
#
# Prints one summary line per part and exits non-zero if any part failed. Takes about
# about 4 minutes on 2 cores. Debian packages it needs: see shim-c/README.md ("Running the
# tests"): build-essential (gcc g++ make libc6-dev) python3 sqlite3 git perl coreutils
# xz-utils openssl nodejs bc.
#
# Environment: GOMALLOC_SO=/path/libgomalloc.so tests that library instead of building one
# (parts 2-5); GOMALLOC_PARTS="c life real rust" picks the parts to run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
unset LD_PRELOAD

if [ -z "${GOMALLOC_SO:-}" ]; then
    echo "== cargo build --release -p gomalloc-shim"
    cargo build --release -p gomalloc-shim || { echo "FAILED: build"; exit 1; }
    GOMALLOC_SO=$root/target/release/libgomalloc.so
fi
GOMALLOC_SO=$(cd "$(dirname "$GOMALLOC_SO")" && pwd)/$(basename "$GOMALLOC_SO")
export GOMALLOC_SO
if [ "${GOMALLOC_REQUIRE_ALL:-0}" != 1 ]; then
    export GOMALLOC_ALLOW_MISSING=1
fi

parts=${GOMALLOC_PARTS:-c life real rust}
summary=()
status=0
logdir=$root/target/shim-tests
mkdir -p "$logdir"

# Runs part $1 with the command that follows; its output goes to the terminal and a log,
# and its closing "N passed, N failed" line into the summary.
part() {
    local name=$1
    shift
    echo
    echo "======== $name"
    local start=$SECONDS
    "$@" 2>&1 | tee "$logdir/$name.log"
    local rc=${PIPESTATUS[0]}
    local counts
    counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logdir/$name.log" | tail -1)
    local skipped
    skipped=$(grep -E '^\([0-9]+ skipped\)$' "$logdir/$name.log" | tail -1)
    if [ $rc -eq 0 ]; then
        summary+=("ok     $name: ${counts:-passed} $skipped ($((SECONDS - start)) s)")
    else
        summary+=("FAILED $name: ${counts:-exit status $rc} $skipped ($((SECONDS - start)) s)")
        status=1
    fi
}

# The Rust tests: every test binary of the workspace, preloaded. Fails if the runner was
# not used (cargo ignored the setting) or a test failed.
rust_tests() {
    local runlog=$logdir/runner-invocations.txt
    : > "$runlog"
    GOMALLOC_RUNNER_LOG=$runlog cargo test --workspace --tests --no-fail-fast \
        --config "target.x86_64-unknown-linux-gnu.runner='$root/.cargo/preload-runner.sh'"
    local rc=$?
    local n skipped
    n=$(grep -c '^preloaded ' "$runlog")
    skipped=$(grep -c '^not-preloaded ' "$runlog")
    echo "preload runner ran $n test binaries with LD_PRELOAD=$GOMALLOC_SO" \
        "and $skipped without (they run cargo or rustc: .cargo/preload-runner.sh)"
    if [ "$n" -eq 0 ]; then
        echo "FAIL: cargo did not use the preload runner"
        return 1
    fi
    # trybuild's binary runs cargo and rustc, which must never inherit the preload.
    if grep -q '^preloaded .*/compile_fail-' "$runlog"; then
        echo "FAIL: the runner preloaded a compile_fail binary (cargo and rustc would inherit it)"
        return 1
    fi
    # A preloaded process really runs on the library (the runner sets LD_PRELOAD only).
    if ! "$root/.cargo/preload-runner.sh" cat /proc/self/maps | grep -q "$(basename "$GOMALLOC_SO")"; then
        echo "FAIL: the runner does not load $GOMALLOC_SO"
        return 1
    fi
    return $rc
}

for p in $parts; do
    case $p in
        c) part c-suite "$here/run-c-tests.sh" ;;
        life) part process-life "$here/run-process-life.sh" ;;
        real) part real-programs "$here/run-real-programs.sh" ;;
        rust) part rust-tests-preloaded rust_tests ;;
        *) echo "unknown part $p"; exit 2 ;;
    esac
done

echo
echo "======== summary (library: $GOMALLOC_SO; logs in $logdir)"
printf '%s\n' "${summary[@]}"
exit $status
