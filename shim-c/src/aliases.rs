//! glibc's second names for the allocation functions.
//!
//! Programs and libraries call these directly (`__libc_malloc` from code that wraps
//! `malloc`, `__libc_memalign` from old dynamic linkers, `cfree` from old binaries). A
//! preloaded malloc that leaves any of them to glibc lets a glibc pointer reach our `free`
//! or ours reach glibc's (`munmap_chunk(): invalid pointer`), so every one is defined here
//! with exactly the semantics of its plain name.

use crate::stdc::*;
use core::ffi::c_void;
use libc::{c_int, size_t};

/// `malloc`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_malloc(size: size_t) -> *mut c_void {
    malloc_impl(size)
}

/// `calloc`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_calloc(n: size_t, size: size_t) -> *mut c_void {
    calloc_impl(n, size)
}

/// `realloc`.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: `ptr` is NULL or live (# Safety), what `realloc_impl` requires.
    unsafe { realloc_impl(ptr, size) }
}

/// `free`.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: `ptr` is NULL or live (# Safety), what `free_impl` requires.
    unsafe { free_impl(ptr) }
}

/// `free` (removed from glibc's API in 2.26; old binaries still call it).
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: `ptr` is NULL or live (# Safety), what `free_impl` requires.
    unsafe { free_impl(ptr) }
}

/// `memalign`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_memalign(align: size_t, size: size_t) -> *mut c_void {
    memalign_impl(align, size)
}

/// `valloc`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_valloc(size: size_t) -> *mut c_void {
    valloc_impl(size)
}

/// `pvalloc`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_pvalloc(size: size_t) -> *mut c_void {
    pvalloc_impl(size)
}

/// `posix_memalign`.
///
/// # Safety
/// `memptr` is valid for writing one pointer.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn __posix_memalign(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    // SAFETY: `memptr` is writable (# Safety), what `posix_memalign_impl` requires.
    unsafe { posix_memalign_impl(memptr, align, size) }
}
