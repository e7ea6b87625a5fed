#!/usr/bin/env bash
# Instructions per iteration of each mode of gc/examples/barrier_cost.rs (the write
# barrier while a cycle marks), measured with callgrind: each mode runs with N1 and N2
# stores, and (Ir(N2) - Ir(N1)) / (N2 - N1) is one iteration, start-up cancelled out.
#
#   bash scripts/barrier-cost.sh
#
# Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p gomalloc-gc --example barrier_cost
BIN=${BIN:-target/release/examples/barrier_cost}
ir() { # mode n -> instructions
    GOMALLOC_GCPROCS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | paste -sd+ | bc
}
printf '%-8s %s\n' mode "instructions per iteration"
for mode in off fill replace grey; do
    a=$(ir "$mode" 100000)
    b=$(ir "$mode" 300000)
    printf '%-8s %s\n' "$mode" "$(python3 -c "print(f'{($b - $a) / 200000:.1f}')")"
done
