//! The C allocation API as the `c_api` target calls it: the real entry points of
//! `libgomalloc.so` (`shim-c/src/stdc.rs`, `aliases.rs`, `glibc.rs`), linked into the
//! fuzzer as an rlib (`fuzz/shim-rlib`, feature `rust-api`) and called by Rust path.
//!
//! Why not the exported symbols: linking them under their C names would make them the
//! `malloc` of the whole fuzzer process (libFuzzer's corpus, the model's `Vec`s and
//! `BTreeMap`s, std), so a heap bug would first corrupt the fuzzer's own state and every
//! input would run on a heap that the harness keeps changing. By path, the functions are
//! the same compiled code (the symbols only lose `#[no_mangle]`), instrumented for
//! coverage with the rest of the target, on the same core instance as `gomalloc::*`
//! (so the model can ask `gomalloc::owns`), while the fuzzer keeps glibc's allocator.
//! docs/FUZZING.md has the comparison with `dlopen` and with interposing.

use libc::c_int;

pub use gomalloc_shim::api::*;

/// Largest size any call may succeed with (glibc: `PTRDIFF_MAX`).
pub const MAX_SIZE: usize = isize::MAX as usize;
/// Alignment of `malloc` results (`alignof(max_align_t)`), for sizes of at least that.
pub const MAX_ALIGN: usize = 16;

/// The current errno.
pub fn errno() -> c_int {
    // SAFETY: errno is the calling thread's.
    unsafe { *libc::__errno_location() }
}

/// Sets errno (for the model to see what a call leaves alone).
pub fn put_errno(e: c_int) {
    // SAFETY: errno is the calling thread's.
    unsafe { *libc::__errno_location() = e };
}
