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

tsan() {
    # global_alloc: cross-thread frees, ping-pong, short-lived threads whose blocks outlive
    # them, all through GoMalloc as the global allocator; hardening: remote frees.
    # The release profile says panic = "abort" (for the preload library); a test harness
    # unwinds, and with -Zbuild-std two panic strategies mean two builds of core (E0152).
    CARGO_PROFILE_RELEASE_PANIC=unwind RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        cargo +nightly test -Zbuild-std --target "$TARGET" --target-dir target/tsan \
        -p gomalloc --release --quiet --test global_alloc -- --test-threads=2
}

asan() {
    local out status
    set +e
    out=$(RUSTFLAGS="-Zsanitizer=address" cargo +nightly run --quiet --target "$TARGET" \
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
    out=$(RUSTFLAGS="-Zsanitizer=address" cargo +nightly run --quiet --target "$TARGET" \
        --target-dir target/asan -p gomalloc --release --example asan_overflow 2>&1) || true
    echo "without asan-forward: $(tail -1 <<<"$out")"
}

case "${1:-}" in
    tsan) tsan ;;
    asan) asan ;;
    *) echo "usage: bash scripts/sanitizers.sh tsan|asan" >&2; exit 2 ;;
esac
