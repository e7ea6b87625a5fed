//! The Rust workloads (`gomalloc_benches::rustload`) with `tikv_jemallocator::Jemalloc` as the global allocator.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    gomalloc_benches::rustload::main()
}
