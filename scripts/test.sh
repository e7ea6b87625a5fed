#!/usr/bin/env bash
# The test command: everything CI runs (`.ci/run` calls this), from a fresh machine.
#
#   bash scripts/test.sh           all stages: the run CI makes
#   bash scripts/test.sh --quick   skip the slow ones (Miri, loom, sanitizers, fuzzing, soak,
#                                  real programs under LD_PRELOAD)
#   bash scripts/test.sh --full    all stages, with the long versions of four: a 30 s soak
#                                  (10 s in CI), 45 s of each fuzz target (20 s), the Miri
#                                  tests CI leaves out for time, and CPython's test modules
#                                  run without the preload too (CI: only what failed with it)
#
# Each stage prints its name and the time; the first failure stops the run.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
FULL=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --full) FULL=1 ;;
        *) echo "usage: bash scripts/test.sh [--quick | --full]" >&2; exit 2 ;;
    esac
done
# The long versions (--full) and CI's short ones.
SOAK_SECS=$((FULL ? 30 : 10))
FUZZ_SECS=$((FULL ? 45 : 20))

START=$SECONDS
stage() { printf '\n== %s  (%ds)\n' "$1" "$((SECONDS - START))"; }

# A full run builds about a dozen configurations of the workspace; the debug builds' incremental
# state is the largest part and nothing here rebuilds after an edit, so it is off. A run that
# fills the disk fails in the linker ("Bus error", "No space left on device"): the free space
# is printed first.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | tail -1 | awk '{ print "disk: " $4 " free of " $2 }'

# --- set-up ------------------------------------------------------------------------------
# Debian packages the tests use; installed only when missing (needs root, as on CI).
# C suite and real programs under LD_PRELOAD (shim-c/tests/run-all.sh):
# CPython's own test modules under LD_PRELOAD (scripts/cpython-tests.sh): libpython3.11-testsuite.
# Heap profiles read back with `go tool pprof` (shim-c/tests/run-profile.sh): golang-go.
APT_PACKAGES=(build-essential python3 sqlite3 git perl coreutils xz-utils openssl nodejs bc
    libpython3.11-testsuite golang-go)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    stage "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ((!QUICK)); then
    if ! cargo +nightly miri --version >/dev/null 2>&1; then
        stage "rustup component add miri rust-src (nightly)"
        rustup component add --toolchain nightly miri rust-src
    fi
    if ! command -v cargo-fuzz >/dev/null; then
        stage "cargo install cargo-fuzz (crates.io)"
        cargo install cargo-fuzz --locked --quiet
    fi
fi
# The checked and hardened configuration (docs/HARDENING.md).
CHECKED_FEATURES="check,check-heap,poison,guard-pages"

# --- static checks -----------------------------------------------------------------------
stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

stage "cargo clippy -D warnings (checked, hardened and asan-forward builds; the GC's checkroots feature)"
cargo clippy -p gomalloc --all-targets --quiet --features "$CHECKED_FEATURES" -- -D warnings
cargo clippy -p gomalloc --all-targets --quiet --features asan-forward -- -D warnings
cargo clippy -p gomalloc-gc --all-targets --quiet --features checkroots -- -D warnings
cargo clippy -p gomalloc -p gomalloc-shim -p gomalloc-gc --all-targets --quiet \
    --features gomalloc/profile,gomalloc-shim/profile,gomalloc-gc/profile -- -D warnings
stage "cargo clippy -D warnings (the fuzz workspace, with the same lints)"
(cd fuzz && cargo clippy --all-targets --quiet -- -D warnings)

stage "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# --- tests -------------------------------------------------------------------------------
stage "cargo test --release (the optimised build users get)"
cargo test --workspace --release --quiet

stage "cargo test (checked build: debug assertions and heap invariant checks)"
cargo test --workspace --quiet

stage "cargo test: the GC's precise mode natively (precise.rs, barrier_halves.rs; Miri runs precise.rs)"
cargo test -p gomalloc-gc --features precise --test precise --test barrier_halves --quiet

stage "cargo test: the GC's off-heap misuse checker (feature checkroots: checkroots.rs)"
# With the heap profile's fast-path countdown too (the default build's sampling runs in
# the release stages): samples give the report its allocation sites.
cargo test -p gomalloc-gc --features checkroots,profile --test checkroots --quiet

stage "GC examples, debug build, GOMALLOC_GOGC=1 (self-checking; a missed root aborts)"
# lisp checks its results itself and roots through handles, so it runs in the precise mode
# too; binary_trees must print the Benchmarks Game's output for depth 10; gcbench checks
# its trees and exits 1 on a wrong one.
GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --quiet --example lisp >/dev/null
GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --quiet --features precise --example lisp >/dev/null
trees=$(GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --quiet --example binary_trees 10)
diff <(printf '%s\n' "$trees") - <<'EOF'
stretch tree of depth 11	 check: 4095
1024	 trees of depth 4	 check: 31744
256	 trees of depth 6	 check: 32512
64	 trees of depth 8	 check: 32704
16	 trees of depth 10	 check: 32752
long lived tree of depth 10	 check: 2047
EOF
GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --quiet --example gcbench 10 | tail -1
# The pause benchmark (docs/GC-BENCHMARKS.md) at 8 MiB live for 1 s, replacing pieces of 3
# levels: the heap scatters and the mark's prefetch queue goes on; it checks its subtrees.
cargo run -p gomalloc-gc --quiet --example pause 8 1 3 | tail -1

stage "GC multi-threaded tests and examples in the checkmark mode (GOMALLOC_GCCHECKMARK=1)"
# Every mark is followed by a re-mark from the roots that aborts if the mark missed a
# reachable object (docs/gc-design.md section 9). Release builds, made by the
# `cargo test --release` stage.
GOMALLOC_GCCHECKMARK=1 cargo test -p gomalloc-gc --release --quiet --test threads \
    --test back_to_back --test barrier --test barrier_halves --test barrier_buffer
GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example lisp >/dev/null
GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example binary_trees 12 | tail -1
GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example gcbench 10 | tail -1
GOMALLOC_GCCHECKMARK=1 cargo run -p gomalloc-gc --release --quiet --example pause 8 1 3 | tail -1
# Every frame of an 8 MiB stack holds the only pointer to its object: the thread's own scan
# of its stack, outside the stop, must find them all.
GOMALLOC_GCCHECKMARK=1 cargo run -p gomalloc-gc --release --quiet --example stack_pause 256 1 | tail -1
# The span-queued mark (docs/gc-design.md section 8) over the same multi-threaded tests.
GOMALLOC_GCGREENTEA=1 GOMALLOC_GCCHECKMARK=1 cargo test -p gomalloc-gc --release --quiet \
    --test threads --test back_to_back --test barrier --test barrier_halves --test concurrent
GOMALLOC_GCGREENTEA=1 GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example binary_trees 12 | tail -1
GOMALLOC_GCGREENTEA=1 GOMALLOC_GCCHECKMARK=1 cargo run -p gomalloc-gc --release --quiet --example pause 8 1 3 | tail -1

stage "GC tests and examples with the stopped mark (GOMALLOC_GCCONCURRENT=0), checkmark on"
# Every test of the collector, and the examples, with the world stopped for the whole mark
# (the concurrent mark, docs/gc-design.md section 8, is the default that the other stages
# run; tests/concurrent.rs turns it on itself); the checkmark re-mark after each cycle
# aborts if the mark missed a reachable object.
GOMALLOC_GCCONCURRENT=0 GOMALLOC_GCCHECKMARK=1 cargo test -p gomalloc-gc --release --quiet
GOMALLOC_GCCONCURRENT=0 GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example lisp >/dev/null
GOMALLOC_GCCONCURRENT=0 GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example binary_trees 12 | tail -1
GOMALLOC_GCCONCURRENT=0 GOMALLOC_GCCHECKMARK=1 GOMALLOC_GOGC=1 cargo run -p gomalloc-gc --release --quiet --example gcbench 10 | tail -1
GOMALLOC_GCCONCURRENT=0 GOMALLOC_GCCHECKMARK=1 cargo run -p gomalloc-gc --release --quiet --example pause 8 1 3 | tail -1

stage "cargo test --release --features $CHECKED_FEATURES (checked build)"
cargo test -p gomalloc --release --quiet --features "$CHECKED_FEATURES"

if ((QUICK)); then
    stage "C suite and process-life tests under LD_PRELOAD"
    GOMALLOC_PARTS="c life" bash shim-c/tests/run-all.sh
    stage "done (quick)"
    exit 0
fi

# Miri interprets on one core for about 13 minutes, while the stages below leave the second
# one partly idle: it runs beside them at a lower priority (their timeouts are theirs), in
# its own session so that an early exit stops it, and its output is printed at the end.
mkdir -p target
miri_opts=()
((FULL)) && miri_opts=(--full)
setsid -w nice -n 10 bash scripts/miri.sh "${miri_opts[@]}" </dev/null >target/miri-stages.log 2>&1 &
miri_pid=$!
trap '[ -n "${miri_pid:-}" ] && kill -- -"$miri_pid" 2>/dev/null; true' EXIT

stage "shim-c: C suite, real programs and the Rust tests under LD_PRELOAD"
GOMALLOC_REQUIRE_ALL=1 bash shim-c/tests/run-all.sh

stage "heap profiles: records with the fast-path countdown, then C and Rust sites read by go tool pprof"
cargo test -p gomalloc --release --quiet --features profile --test profile
cargo test -p gomalloc-gc --release --quiet --features profile --test profile
bash shim-c/tests/run-profile.sh

stage "CPython's test_threading/os/subprocess/signal/concurrent_futures, preloaded vs plain"
# Issue 16: the preloaded run may fail only where the plain run fails; a hang is a failure.
# CI runs without the preload only what failed with it; --full runs every module both ways.
cpython_opts=()
((FULL)) && cpython_opts=(-- --plain-always)
bash scripts/cpython-tests.sh target/release/libgomalloc.so "${cpython_opts[@]}"

stage "soak: $SOAK_SECS s, 3 threads (examples/soak.rs; docs/SOAK.md)"
cargo run -p gomalloc --release --quiet --example soak -- --secs "$SOAK_SECS" --threads 3 | tail -1

stage "fuzz: heap_actions and c_api, $FUZZ_SECS s each (docs/FUZZING.md)"
(
    cd fuzz
    for t in heap_actions c_api; do
        mkdir -p "corpus/$t"
        cargo +nightly fuzz run -s none -O "$t" -- -max_total_time="$FUZZ_SECS" -len_control=0 \
            -max_len=8192 -print_final_stats=1 2>&1 | grep -E "actions in total|stat::number_of_executed_units"
    done
)

stage "ThreadSanitizer over the multi-threaded tests (nightly, -Zbuild-std)"
bash scripts/sanitizers.sh tsan

stage "AddressSanitizer sees user bugs with the asan-forward feature"
bash scripts/sanitizers.sh asan

stage "loom models of the lock-free structures and the mark's handshake"
RUSTFLAGS="--cfg loom" cargo test -p gomalloc --test loom --release --quiet \
    --target-dir target/loom
RUSTFLAGS="--cfg loom" cargo test -p gomalloc-gc --test loom --release --quiet \
    --target-dir target/loom

stage "Miri: the stages started beside the ones above (scripts/miri.sh)"
miri_status=0
wait "$miri_pid" || miri_status=$?
miri_pid=
cat target/miri-stages.log
if ((miri_status)); then
    echo "Miri failed (its output above)"
    exit 1
fi

stage "done"
