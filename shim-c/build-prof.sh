#!/bin/sh
# Builds target/release/libgomalloc-prof.so: libgomalloc.so with the heap profile's
# countdown on the allocation fast paths (feature `profile`; README.md, "Heap profiles"):
# cheaper than the default library while sampling, dearer with sampling off. A target
# directory of its own (target/prof) keeps the default library's build as it is. Prints
# the library's path.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
unset LD_PRELOAD
cargo build --release -q -p gomalloc-shim --features profile --target-dir target/prof
mkdir -p target/release
cp target/prof/release/libgomalloc.so target/release/libgomalloc-prof.so
echo "$root/target/release/libgomalloc-prof.so"
