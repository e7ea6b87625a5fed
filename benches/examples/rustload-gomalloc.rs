//! The Rust workloads (`gomalloc_benches::rustload`) with `gomalloc::GoMalloc` as the global allocator.

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

fn main() -> std::process::ExitCode {
    gomalloc_benches::rustload::main()
}
