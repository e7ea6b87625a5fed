#!/usr/bin/env bash
# CPython's test_threading, test_os, test_subprocess, test_signal and test_concurrent_futures
# under LD_PRELOAD=libgomalloc.so, compared with the same run without the preload (issue 16:
# a preloaded malloc must not change how a program's processes and threads live and die;
# CPython's own suites exercise pthread_exit, fork from threads, subprocesses, signals and
# process pools). Fails on a test case that fails only under the preload, a module that
# hangs or crashes only under it, or a run past its hard timeout; the details, and how a
# flaky case is told apart, are in scripts/cpython-tests.py.
#
#   bash scripts/cpython-tests.sh [LIB] [-- cpython-tests.py options and modules]
#
# LIB: default $GOMALLOC_SO, else target/release/libgomalloc.so (not built here: the
# shim-c stage of scripts/test.sh builds it). Interpreters: $PYTHON if set; otherwise the
# `python3` first on PATH (a pyenv build here, where test_threading's
# ThreadJoinOnShutdown.test_3_join_in_forked_from_thread hung on a library whose
# background thread glibc counted) when it has its `test` package, and Debian's
# /usr/bin/python3 (3.11, test package libpython3.11-testsuite). Logs and junit XML go to
# target/cpython-tests. The preloaded run takes about 45 s for pyenv's interpreter and
# 2.5 minutes for Debian's (test_concurrent_futures the longest module) on 2 cores; the
# plain run reruns only what failed under the preload (cpython-tests.py). Prints
# `N passed, N failed` last, summed over the interpreters.
set -u
cd "$(dirname "$0")/.."
lib=${GOMALLOC_SO:-target/release/libgomalloc.so}
if [ $# -gt 0 ] && [ "$1" != -- ]; then
    lib=$1
    shift
fi
[ "${1:-}" = -- ] && shift

pythons=()
if [ -n "${PYTHON:-}" ]; then
    pythons=("$PYTHON")
else
    first=$(env -u LD_PRELOAD python3 -c 'import sys, test.support; print(sys.executable)' 2>/dev/null)
    debian=/usr/bin/python3
    if [ -n "$first" ] && [ "$(readlink -f "$first")" != "$(readlink -f "$debian")" ]; then
        pythons+=("$first")
    fi
    pythons+=("$debian")
fi

passed=0 failed=0 status=0
for python in "${pythons[@]}"; do
    echo "== $python ($("$python" --version 2>&1))"
    out=$(env -u LD_PRELOAD "$python" scripts/cpython-tests.py --python "$python" --lib "$lib" \
        --logdir "target/cpython-tests/$(basename "$(dirname "$(dirname "$python")")")" "$@" 2>&1)
    rc=$?
    echo "$out"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)
    if [ -n "$line" ]; then
        passed=$((passed + $(cut -d' ' -f1 <<<"$line")))
        failed=$((failed + $(cut -d' ' -f3 <<<"$line")))
    fi
    [ $rc -eq 0 ] || status=1
done
echo "$passed passed, $failed failed"
exit $status
