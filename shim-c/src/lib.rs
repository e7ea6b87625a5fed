//! `libgomalloc.so`: the C allocation ABI over the gomalloc heap, for `LD_PRELOAD`.
//!
//! ```text
//!   C program / libc / libstdc++            LD_PRELOAD=libgomalloc.so
//!        │ malloc, free, posix_memalign, __libc_malloc, mallinfo2, ...
//!        ▼
//!   stdc.rs    ISO C, POSIX and C23 functions: the C contract (errno, NULL,
//!              alignment rules, overflow checks), then one call into the core
//!   aliases.rs glibc's second names for the same functions (__libc_*, cfree, ...)
//!   glibc.rs   malloc_trim, mallinfo2/mallinfo, malloc_stats, malloc_info, mallopt
//!        │
//!        ▼
//!   gomalloc (crate `heap` here): alloc, alloc_zeroed, free, realloc, usable_size, ...
//! ```
//!
//! Rules that hold on every path (see README.md for the reasons and the measurements):
//!
//! 1. Nothing here allocates, formats, takes a lock or panics. Text (`malloc_stats`,
//!    `malloc_info`) is built with the core's `report::Line`, a stack buffer flushed with
//!    `write(2)`.
//! 2. No thread-local storage in this crate: per-thread state (the mcache) and thread-exit
//!    and fork handling belong to the core.
//! 3. Exported functions never call each other: each one calls the `#[inline]` function
//!    that implements it (`stdc::malloc_impl`, ...), so no call goes through the PLT. The
//!    library is also linked with `-Bsymbolic-functions` (build.rs).
//! 4. The library links `std`, but nothing here uses std's allocating or locking parts.
//!    The core's one TLS slot has no destructor and, with the `initial-exec-tls` feature
//!    this crate enables, is read with two instructions and no `__tls_get_addr` call
//!    (`alloc-core/src/tls.rs`). Release builds use `panic = "abort"` (workspace profile); no code
//!    on a malloc path can panic (the core reports misuse and impossible states through
//!    `gomalloc::report::fatal`, which writes one line with `write(2)` and aborts), so the
//!    panic hook, which formats and allocates, is never reached from inside malloc.
//!
//! With the feature `rust-api` (off in `libgomalloc.so`), every C function is compiled
//! without `#[no_mangle]` and is public as `api::malloc`, ...: a Rust program can link
//! this code and call the real entry points by path without replacing its own `malloc`.
//! The `c_api` fuzz target does (`fuzz/shim-rlib`, docs/FUZZING.md).

mod aliases;
mod errno;
mod glibc;
mod stdc;

/// The C functions by Rust path (feature `rust-api`, for the `c_api` fuzz target): the
/// same code as the exported symbols of `libgomalloc.so`, without the unprefixed names.
#[cfg(feature = "rust-api")]
pub mod api {
    pub use crate::aliases::*;
    pub use crate::glibc::*;
    pub use crate::stdc::{
        aligned_alloc, calloc, free, free_aligned_sized, free_sized, malloc, malloc_usable_size,
        memalign, posix_memalign, pvalloc, realloc, reallocarray, valloc,
    };
}
