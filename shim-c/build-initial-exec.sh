#!/bin/sh
# Builds libgomalloc.so with the initial-exec TLS model (no __tls_get_addr on any path), for
# hosts with glibc 2.39 or later. Needs the nightly toolchain with rust-src; std is rebuilt
# with the same model (-Zbuild-std), which takes about 2 minutes on 2 cores. See README.md,
# "TLS model". The result is
#   target/initial-exec/x86_64-unknown-linux-gnu/release/libgomalloc.so
# and can be tested with GOMALLOC_SO=<that path> shim-c/tests/run-all.sh.
# Only for LD_PRELOAD: a library built so cannot always be dlopen'ed (static TLS).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
unset LD_PRELOAD
RUSTFLAGS="${RUSTFLAGS:-} -Ztls-model=initial-exec" cargo +nightly build --release -p gomalloc-shim \
    -Zbuild-std=std,panic_abort --target x86_64-unknown-linux-gnu --target-dir target/initial-exec
so=target/initial-exec/x86_64-unknown-linux-gnu/release/libgomalloc.so
calls=$(objdump -d "$so" | grep -c 'call.*__tls_get_addr' || true)
echo "$so: $calls calls of __tls_get_addr"
[ "$calls" -eq 0 ]
