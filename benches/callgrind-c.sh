#!/usr/bin/env bash
# Instructions per C malloc+free pair under LD_PRELOAD, counted exactly by callgrind: the
# C-ABI twin of callgrind.sh (which measures the Rust GlobalAlloc path).
#
# For each allocator, runs `pairs SIZE N` (benches/c/pairs.c, built with -O2 -fno-builtin)
# for two values of N under `valgrind --tool=callgrind` with the allocator preloaded and
# prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, thread set-up and the first refills cancel
# out, what is left is one more pair, the loop included (about 6 instructions).
#
# usage: benches/callgrind-c.sh [SIZE...]      (default sizes: 8 64 512 4096)
#        A SIZE written A+B runs `pairs A N B`: malloc(A), malloc(B), free, free per
#        iteration, printed per pair (half an iteration): frees that alternate between
#        two spans.
# env:   N1, N2 (default 100000, 200000)
#        ALLOCATORS (default "gomalloc glibc mimalloc jemalloc tcmalloc"; a missing peer is
#        skipped with a note)
#        GOMALLOC_SO (default target/release/libgomalloc.so, brought up to date with
#        `cargo build --release -p gomalloc-shim` first; set it to measure another build)
set -euo pipefail
cd "$(dirname "$0")/.."
unset LD_PRELOAD
N1=${N1:-100000}
N2=${N2:-200000}
ALLOCATORS=${ALLOCATORS:-"gomalloc glibc mimalloc jemalloc tcmalloc"}
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(8 64 512 4096)
command -v valgrind >/dev/null || { echo "callgrind-c.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
SO=${GOMALLOC_SO:-${CARGO_TARGET_DIR:-target}/release/libgomalloc.so}
[ -n "${GOMALLOC_SO:-}" ] || cargo build --release -q -p gomalloc-shim
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cc -O2 -fno-builtin -o "$OUT/pairs" benches/c/pairs.c

LIBDIR=/usr/lib/x86_64-linux-gnu
lib_of() {
    case $1 in
        gomalloc) echo "$SO" ;;
        glibc) echo "" ;;
        mimalloc) echo "$LIBDIR/libmimalloc.so.2" ;;
        jemalloc) echo "$LIBDIR/libjemalloc.so.2" ;;
        tcmalloc) echo "$LIBDIR/libtcmalloc_minimal.so.4" ;;
        *) echo "$1" ;; # a path
    esac
}

ir() { # lib size n [size2] -> total instructions
    # `env` sets LD_PRELOAD for the program only (not for valgrind); --trace-children
    # follows the exec, and env's own instructions are the same for both N.
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.%p" \
        env ${1:+LD_PRELOAD=$1} "$OUT/pairs" "$2" "$3" ${4:-} 2>"$OUT/log" \
        || { cat "$OUT/log" >&2; exit 1; }
    sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$OUT/log" | paste -sd+ | bc
}

printf '%-10s' "allocator"
for s in "${SIZES[@]}"; do printf ' %8s' "${s}B"; done
echo
for a in $ALLOCATORS; do
    lib=$(lib_of "$a")
    if [ -n "$lib" ] && [ ! -f "$lib" ]; then
        echo "skip $a: $lib not installed (apt-get install libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4)"
        continue
    fi
    printf '%-10s' "$a"
    for s in "${SIZES[@]}"; do
        args=${s/+/ }                    # "A+B" -> "A B": pairs SIZE N SIZE2
        a1=${args%% *}
        a2=${args#"$a1"}
        pairs_per=1
        [ -n "$a2" ] && pairs_per=2
        # shellcheck disable=SC2086
        i1=$(ir "$lib" "$a1" "$N1" $a2)
        # shellcheck disable=SC2086
        i2=$(ir "$lib" "$a1" "$N2" $a2)
        printf ' %8s' "$(python3 -c "print(f'{($i2 - $i1) / ($N2 - $N1) / $pairs_per:.1f}')")"
    done
    echo
done
