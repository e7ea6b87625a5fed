#!/usr/bin/env bash
# The heap profile end to end (README.md, "Heap profiles"): two allocation sites of known
# sizes, in C under the default libgomalloc.so and in Rust with GoMalloc, read back with
# `go tool pprof` (package golang-go), which symbolizes from the binaries named in the
# profile's mappings. Nothing here has frame pointers but the C program: the stack walk
# goes through the allocator's own frames (and the Rust programs') by their call-frame
# information.
#
#   C sites       inuse_space: keep_big first (8 MB); alloc_space: churn_small first (20 MB)
#   C leaks       GOMALLOC_PROFILE=leaks names keep_big, and not churn_small
#   C threads     churn_small in 4 threads: alloc_space 80 MB
#   C fork        a forked child's profile (GOMALLOC_PROFILE with %p) has its own sites
#   C prof lib    libgomalloc-prof.so (the fast-path countdown, feature `profile`): as C sites
#   CLI           `gomalloc run --heap-profile FILE -- sites`: as the C sites
#   Rust sites    as the C sites, written by gomalloc::profile::write
#   Rust leaks    GOMALLOC_PROFILE=leaks:PATH at exit: keep_big alone
#   GC            gc/examples/profile_gc.rs after gc::collect(): inuse_space has the
#                 reachable site (kept) alone, alloc_space the garbage one (dropped) first
#
# Sizes are checked within 5 standard deviations of the sampling error at the rate used
# (32 KiB): each object of s bytes is sampled with probability p = 1 - exp(-s/rate), so
# the estimate of n objects has relative deviation sqrt((1-p)/(n p)) (check.py prints it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GOMALLOC_TEST_BUILD:-$root/target/c-tests}/profile
mkdir -p "$build"
rm -f "$build"/*.pb.gz "$build"/*.txt
command -v go >/dev/null || { echo "run-profile: go not found (apt-get install golang-go)" >&2; exit 1; }
unset LD_PRELOAD

cargo build --release -q -p gomalloc-shim
cargo build --release -q -p gomalloc --example profile_sites -p gomalloc-gc --example profile_gc
so=$root/target/release/libgomalloc.so
prof_so=$("$root/shim-c/build-prof.sh")
gcc -O1 -g -fno-omit-frame-pointer -fno-builtin -rdynamic -pthread \
    -o "$build/sites" "$here/profile/sites.c"

rate=32768
export GOMALLOC_PROFILE_RATE=$rate
sd() { # objects size -> relative standard deviation of the estimate
    python3 -c "import math; n,s=$1,$2; p=1-math.exp(-s/$rate); print(math.sqrt((1-p)/(n*p)))"
}
top() { # index profile -> listing file
    go tool pprof -top -sample_index="$1" "$2" >"$2.$1.txt" 2>&1
    echo "$2.$1.txt"
}
check() { python3 "$here/profile/check.py" "$@"; }
big=$((2000 * 4096)); small=$((200000 * 100))
sd_big=$(sd 2000 4096); sd_small=$(sd 200000 100)

echo "== C sites"
GOMALLOC_PROFILE="$build/c.pb.gz" LD_PRELOAD="$so" "$build/sites"
check "$(top inuse_space "$build/c.pb.gz")" keep_big $big "$sd_big" churn_small
check "$(top alloc_space "$build/c.pb.gz")" churn_small $small "$sd_small"

echo "== C leaks"
GOMALLOC_PROFILE=leaks LD_PRELOAD="$so" "$build/sites" 2>"$build/leaks.txt"
cat "$build/leaks.txt"
grep -q "keep_big" "$build/leaks.txt"
! grep -q "churn_small" "$build/leaks.txt"
[ "$(grep -c '^gomalloc: leak:' "$build/leaks.txt")" -eq 1 ]

echo "== C threads"
GOMALLOC_PROFILE="$build/t.pb.gz" LD_PRELOAD="$so" "$build/sites" threads
check "$(top alloc_space "$build/t.pb.gz")" churn_small $((4 * small)) "$(sd 800000 100)"

echo "== C fork"
GOMALLOC_PROFILE="$build/f.%p.pb.gz" LD_PRELOAD="$so" "$build/sites" fork
profiles=("$build"/f.*.pb.gz)
[ ${#profiles[@]} -eq 1 ] # the parent never allocated: only the child wrote one
check "$(top inuse_space "${profiles[0]}")" keep_big $big "$sd_big" churn_small

echo "== C sites under libgomalloc-prof.so"
GOMALLOC_PROFILE="$build/cp.pb.gz" LD_PRELOAD="$prof_so" "$build/sites"
check "$(top inuse_space "$build/cp.pb.gz")" keep_big $big "$sd_big" churn_small
check "$(top alloc_space "$build/cp.pb.gz")" churn_small $small "$sd_small"

echo "== gomalloc run --heap-profile (cli/)"
cargo run --release -q -p gomalloc-cli -- run --heap-profile "$build/cli.pb.gz" --profile-rate 32KiB \
    -- "$build/sites"
check "$(top inuse_space "$build/cli.pb.gz")" keep_big $big "$sd_big" churn_small

echo "== Rust sites"
"$root/target/release/examples/profile_sites" "$build/r.pb.gz"
check "$(top inuse_space "$build/r.pb.gz")" keep_big $big "$sd_big" churn_small
check "$(top alloc_space "$build/r.pb.gz")" churn_small $small "$sd_small"
echo "== Rust leak profile at exit (GOMALLOC_PROFILE=leaks:PATH, the core's exit hook)"
GOMALLOC_PROFILE="leaks:$build/rl.pb.gz" "$root/target/release/examples/profile_sites" "$build/r2.pb.gz"
check "$(top inuse_space "$build/rl.pb.gz")" keep_big $big "$sd_big" churn_small
echo "== GC: the live collected heap by site after gc::collect() (gc/examples/profile_gc.rs)"
"$root/target/release/examples/profile_gc" "$build/g.pb.gz"
check "$(top inuse_space "$build/g.pb.gz")" kept $((16000 * 512)) "$(sd 16000 512)" dropped
check "$(top alloc_space "$build/g.pb.gz")" dropped $((64000 * 256)) "$(sd 64000 256)"
echo "run-profile: all passed"
