//! The Rust workloads (`gomalloc_benches::rustload`) with `std::alloc::System` as the global allocator.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() -> std::process::ExitCode {
    gomalloc_benches::rustload::main()
}
