#!/usr/bin/env bash
# Instructions per operation of each checked / hardened build, measured with callgrind
# (docs/BENCHMARKS.md, section 5). Each loop of examples/pair_cost.rs runs with N1 and N2
# iterations; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one iteration, start-up
# cancelled out.
#
#   bash scripts/hardening-cost.sh            every configuration
#   bash scripts/hardening-cost.sh poison     one configuration ("" is the default build)
#
# Needs valgrind (apt-get install -y valgrind). Builds go to target/hcost.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=("${@:-default check check-heap poison guard-pages}")
read -r -a CONFIGS <<<"${CONFIGS[*]}"
ir() { # mode n -> instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_op() { # mode n1 n2
    local a b
    a=$(ir "$1" "$2")
    b=$(ir "$1" "$3")
    python3 -c "print(f'{($b - $a) / ($3 - $2):.1f}')"
}
printf '%-20s %14s %14s %14s\n' config "local64 pair" "large pair" "remote 64B"
for c in "${CONFIGS[@]}"; do
    feat=()
    [[ $c == default ]] || feat=(--features "$c")
    cargo build --quiet --release -p gomalloc --example pair_cost --target-dir target/hcost "${feat[@]}"
    BIN=target/hcost/release/examples/pair_cost
    printf '%-20s %14s %14s %14s\n' "$c" "$(per_op local64 100000 600000)" \
        "$(per_op large 2000 12000)" "$(per_op remote 40960 204800)"
done
