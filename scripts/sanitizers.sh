#!/usr/bin/env bash
# Sanitizer runs (nightly):
#
#   bash scripts/sanitizers.sh tsan    ThreadSanitizer over the multi-threaded tests
#                                      (std rebuilt with -Zbuild-std so its atomics and
#                                      locks are instrumented too)
#   bash scripts/sanitizers.sh asan    the asan-forward mode: a 1-byte overflow in a
#                                      program whose global allocator is GoMalloc is
#                                      reported by ASan; without the feature it is not
#
# Needs the nightly toolchain with rust-src (`rustup component add --toolchain nightly
# rust-src`). Builds go to target/tsan and target/asan.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu

# `cargo test` of the arguments, instrumented by ThreadSanitizer.
tsan_test() {
    CARGO_PROFILE_RELEASE_PANIC=unwind RUSTFLAGS="-Zsanitizer=thread --cfg gomalloc_pthread_scavenger" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        cargo +nightly test -Zbuild-std --target "$TARGET" --target-dir target/tsan \
        --release --quiet "$@"
}

tsan() {
    # The tests where threads meet (plus the unit tests, which include the lock-free
    # lists): for gomalloc, cross-thread frees, ping-pong, short-lived threads whose blocks
    # outlive them, retention and trim requests, remote frees with hardening, the background
    # scavenger; for the collector, mutators sharing graphs while collecting, back-to-back
    # cycles, parallel marking (tests/threads.rs forces it on small heaps with
    # gc::debug::set_parallel_mark_min(0) and 4 markers, and checks that the helpers
    # marked objects), each half of the write barrier, four threads pushing into one
    # GcVec (tests/slices.rs; its single-threaded tests come along), mutators writing
    # shared graphs and a RefLock while the concurrent mark traces them (tests/concurrent.rs;
    # the concurrent mark is the default in the others too).
    # Left out: the out-of-memory tests (TSan needs memory of its own), the RSS measurement
    # (TSan's shadow memory is resident too), the model test (single-threaded and slow
    # under TSan), the GC's basic tests (single-threaded; and the instrumented frames keep
    # stale words that a conservative scan rightly retains), and the compile-fail tests.
    # The scavenger thread is a pthread here (gomalloc_pthread_scavenger): TSan must see
    # every thread start, and keeps its state in TLS, which the clone-started thread lacks.
    # The release profile says panic = "abort" (for the preload library); a test harness
    # unwinds, and with -Zbuild-std two panic strategies mean two builds of core (E0152).
    tsan_test \
        -p gomalloc --lib --test global_alloc --test hardening --test free_fast --test misuse \
        --test config --test scavenge \
        -p gomalloc-gc --test threads --test back_to_back --test barrier --test barrier_halves \
        --test pacer --test stats --test slices --test concurrent --test greentea \
        -- --test-threads=2 --skip most_of_a_gib_of_small_objects
    # The collector's tests again with the stopped mark (the same build).
    GOMALLOC_GCCONCURRENT=0 tsan_test \
        -p gomalloc-gc --test threads --test back_to_back --test barrier --test barrier_halves \
        --test pacer --test stats --test slices \
        -- --test-threads=2
}

asan() {
    # The scavenger thread is a pthread here too: ASan's runtime keeps per-thread state.
    local out status
    set +e
    out=$(RUSTFLAGS="-Zsanitizer=address --cfg gomalloc_pthread_scavenger" cargo +nightly run --quiet --target "$TARGET" \
        --target-dir target/asan -p gomalloc --release --example asan_overflow \
        --features asan-forward 2>&1)
    status=$?
    set -e
    if ((status == 0)) || ! grep -q "ERROR: AddressSanitizer: heap-buffer-overflow" <<<"$out"; then
        echo "asan-forward: the overflow was NOT reported (exit $status):"
        echo "$out" | tail -20
        return 1
    fi
    echo "asan-forward: ASan reported the 1-byte overflow:"
    grep -m1 "ERROR: AddressSanitizer" <<<"$out"
    # The contrast: gomalloc's own arenas have no redzones, so ASan cannot see the bug.
    out=$(RUSTFLAGS="-Zsanitizer=address --cfg gomalloc_pthread_scavenger" cargo +nightly run --quiet --target "$TARGET" \
        --target-dir target/asan -p gomalloc --release --example asan_overflow 2>&1) || true
    echo "without asan-forward: $(tail -1 <<<"$out")"
}

case "${1:-}" in
    tsan) tsan ;;
    asan) asan ;;
    *) echo "usage: bash scripts/sanitizers.sh tsan|asan" >&2; exit 2 ;;
esac
