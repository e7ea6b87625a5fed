//! A deliberate 1-byte heap overflow, for the ASan mode (docs/HARDENING.md).
//!
//! Built with `-Zsanitizer=address` and the `asan-forward` feature, `GoMalloc` forwards to
//! the system allocator, which ASan instruments: the overflow is reported
//! (`heap-buffer-overflow`) and the program stops. Without the feature the write lands in
//! gomalloc's own arena, where ASan has no redzones, and goes unnoticed.
//! `scripts/sanitizers.sh asan` runs both.

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

fn main() {
    let v: Vec<u8> = vec![0; 100];
    let p = v.as_ptr() as *mut u8;
    // SAFETY: none: this writes one byte past the block, on purpose.
    unsafe { p.add(100).write_volatile(1) };
    println!("overflow not detected");
    drop(v);
}
