# Sourced by the shim's test scripts: sets `so` to the absolute path of the library under
# test: $GOMALLOC_SO if set, else target/release/libgomalloc.so, built first (cargo is
# never run with a preload). Needs `root` (the workspace) and `me` (the script's name, for
# messages); on failure prints the scripts' summary line and exits.
if [ -n "${GOMALLOC_SO:-}" ]; then
    so=$GOMALLOC_SO
else
    (cd "$root" && env -u LD_PRELOAD cargo build --release -p gomalloc-shim) || exit 1
    so=$root/target/release/libgomalloc.so
fi
so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so")
[ -f "$so" ] || { echo "$me: $so does not exist"; echo "0 passed, 1 failed"; exit 1; }
