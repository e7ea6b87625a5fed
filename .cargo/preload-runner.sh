#!/bin/sh
# cargo `runner` that runs a test binary with libgomalloc.so preloaded, so the workspace's
# own Rust tests also exercise the C shim. Only the binary cargo hands us is preloaded:
# cargo and rustc themselves never are (they bundle jemalloc, and crash when another
# malloc is preloaded under it). Use it per invocation, never as a default in config.toml:
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
# Test binaries that run cargo or rustc themselves are not preloaded: gc/tests/compile_fail.rs
# uses trybuild, which runs `cargo` (and so rustc) as child processes, and a preload set
# here would be inherited by them, against the rule above. The binary itself only drives
# those builds, so the preload would exercise nothing of ours; it runs as cargo would run it.
case $(basename "$1") in
    compile_fail-*) mode=not-preloaded ;;
    *) mode=preloaded ;;
esac
# Leave a trace of every binary run and whether the preload was in effect, for run-all.sh
# to check.
if [ -n "${GOMALLOC_RUNNER_LOG:-}" ]; then
    echo "$mode $*" >> "$GOMALLOC_RUNNER_LOG"
fi
if [ $mode = not-preloaded ]; then
    exec env -u LD_PRELOAD "$@"
fi
exec env LD_PRELOAD="$so" "$@"
