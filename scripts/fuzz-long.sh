#!/usr/bin/env bash
# Long fuzz runs: each target until it has executed ACTIONS actions (default 10 million),
# then prints its total. The figures of docs/FUZZING.md come from this script.
#
#   bash scripts/fuzz-long.sh                  both targets, 10 million actions each
#   bash scripts/fuzz-long.sh heap_actions 2e7 one target, another count
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz --locked`). Crashes land in
# fuzz/artifacts/<target>/; turn each into a regression test in alloc-core/tests.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
TARGETS=(${1:-heap_actions c_api})
ACTIONS=$(python3 -c "print(int(float('${2:-1e7}')))")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -s none -O
run() { # target: runs it until $ACTIONS actions; its summary goes to fuzz/long-<target>.log
    local t=$1 start=$SECONDS rc=0
    mkdir -p "corpus/$t" "artifacts/$t"
    GOMALLOC_FUZZ_ACTIONS=$ACTIONS \
        "target/x86_64-unknown-linux-gnu/release/$t" -len_control=0 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "corpus/$t" >"long-$t.out" 2>&1 || rc=$?
    grep -E "actions|ERROR|panicked|stat::" "long-$t.out" >"long-$t.log" || true
    echo "== $t: exit $rc after $((SECONDS - start)) s" >>"long-$t.log"
    return "$rc"
}
# The targets run side by side (each is one process; on 2 cores that halves the wall time).
pids=()
for t in "${TARGETS[@]}"; do
    echo "== $t: until $ACTIONS actions (progress: fuzz/long-$t.out)"
    run "$t" &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in "${TARGETS[@]}"; do cat "long-$t.log"; done
exit "$status"
