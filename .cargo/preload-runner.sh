#!/bin/sh
# cargo `runner` that runs a test binary with libgomalloc.so preloaded, so the workspace's
# own Rust tests also exercise the C shim (issue 3). Only the binary cargo hands us is
# preloaded: cargo and rustc themselves never are (they bundle jemalloc and crash, see
# ../shared/ALLOCATOR-NOTES.md). Use it per invocation, never as a default in config.toml:
#
#   cargo build --release -p gomalloc-shim
#   cargo test --workspace --config "target.x86_64-unknown-linux-gnu.runner='$PWD/.cargo/preload-runner.sh'"
#
# (run from the workspace root; shim-c/tests/run-all.sh does this). GOMALLOC_SO overrides
# the library; GOMALLOC_RUNNER_LOG names a file that gets one line per binary run.
here=$(cd "$(dirname "$0")" && pwd)
so=${GOMALLOC_SO:-$here/../target/release/libgomalloc.so}
if [ ! -f "$so" ]; then
    echo "preload-runner: $so does not exist (cargo build --release -p gomalloc-shim)" >&2
    exit 101
fi
# Leave a trace that the preload was in effect, for run-all.sh to check.
if [ -n "${GOMALLOC_RUNNER_LOG:-}" ]; then
    echo "$*" >> "$GOMALLOC_RUNNER_LOG"
fi
exec env LD_PRELOAD="$so" "$@"
