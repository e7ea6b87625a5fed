#!/usr/bin/env bash
# Instructions per malloc+free pair on the fast path, counted exactly by callgrind.
#
# For each allocator, runs `pairs ALLOCATOR SIZE N` for two values of N under
# `valgrind --tool=callgrind` and prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, thread
# set-up and the first refills cancel out, what is left is the cost of one more pair.
# `null` is the harness alone (loop, black_box, null check); `net` subtracts it.
#
# usage: benches/callgrind.sh [SIZE...]        (default sizes: 8 64 512 4096)
# env:   N1, N2 (default 100000, 200000), ALLOCATORS (default "null gomalloc system mimalloc jemalloc"),
#        MODE=batch: allocate 1000 objects, then free them (per object: one malloc + one free),
#        FEATURES: cargo features of the build (e.g. gomalloc/profile, with CARGO_TARGET_DIR
#        set apart and GOMALLOC_PROFILE_RATE for the sampling rate; README, "Heap profiles")
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-100000}
N2=${N2:-200000}
ALLOCATORS=${ALLOCATORS:-"null gomalloc system mimalloc jemalloc"}
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(8 64 512 4096)
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p gomalloc-benches --example pairs ${FEATURES:+--features "$FEATURES"}
BIN=${CARGO_TARGET_DIR:-target}/release/examples/pairs
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

ir() { # allocator size n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" "$1" "$2" "$3" ${MODE:+"$MODE"} 2>"$OUT/log" \
        || { cat "$OUT/log" >&2; exit 1; }
    sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$OUT/log"
}

printf '%-10s' "allocator"
for s in "${SIZES[@]}"; do printf ' %9s %7s' "${s}B" "net"; done
echo
declare -A BASE
for a in $ALLOCATORS; do
    printf '%-10s' "$a"
    for s in "${SIZES[@]}"; do
        i1=$(ir "$a" "$s" "$N1")
        i2=$(ir "$a" "$s" "$N2")
        per=$(python3 -c "print(f'{($i2 - $i1) / ($N2 - $N1):.1f}')")
        if [ "$a" = null ]; then
            BASE[$s]=$per
            printf ' %9s %7s' "$per" "-"
        else
            net=$(python3 -c "print(f'{$per - ${BASE[$s]:-0}:.1f}')")
            printf ' %9s %7s' "$per" "$net"
        fi
    done
    echo
done
