//! The Rust workloads (`gomalloc_benches::rustload`) with `mimalloc::MiMalloc` as the global allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gomalloc_benches::rustload::main()
}
