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
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    start=$SECONDS
    echo "== $t: until $ACTIONS actions"
    GOMALLOC_FUZZ_ACTIONS=$ACTIONS \
        "target/x86_64-unknown-linux-gnu/release/$t" -len_control=0 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "corpus/$t" 2>&1 |
        grep -E "actions|ERROR|panicked|DONE|stat::" || true
    rc=${PIPESTATUS[0]}
    echo "== $t: exit $rc after $((SECONDS - start)) s"
    [[ $rc == 0 ]] || exit "$rc"
done
