//! The C allocation API over gomalloc with glibc 2.36's semantics, as the `c_api` target
//! exercises it.
//!
//! TODO(shim): the shim crate (`shim-c/`) exports these functions as the real `malloc`,
//! `free`, ...; it reached main (merged into this branch) only after this target was
//! written and fuzzed. Next step: call its exported functions here instead (build
//! `libgomalloc.so`, load it with `dlopen(RTLD_LOCAL)` and `dlsym`, so the fuzzer's own
//! allocator stays the system one; the block model then asks the shim's
//! `malloc_usable_size` instead of `gomalloc::owns`), and keep `fuzz_targets/c_api.rs`'s
//! model of glibc unchanged: it is the specification both must meet. Until then this layer
//! translates the C contract as the shim's README describes (errno, NULL,
//! alignment rules) and the target checks the result against that model.

use core::ffi::c_void;
use libc::{c_int, size_t};

/// Largest size any call may succeed with (glibc: `PTRDIFF_MAX`).
pub const MAX_SIZE: usize = isize::MAX as usize;
/// Alignment of `malloc` results (`alignof(max_align_t)`), for sizes of at least that.
pub const MAX_ALIGN: usize = 16;

fn set_errno(e: c_int) {
    // SAFETY: errno is the calling thread's.
    unsafe { *libc::__errno_location() = e };
}

/// The current errno.
pub fn errno() -> c_int {
    // SAFETY: errno is the calling thread's.
    unsafe { *libc::__errno_location() }
}

/// Sets errno (for the model to see what a call leaves alone).
pub fn put_errno(e: c_int) {
    set_errno(e)
}

fn malloc_align(size: usize) -> usize {
    if size >= MAX_ALIGN {
        MAX_ALIGN
    } else {
        8
    }
}

fn fail() -> *mut c_void {
    set_errno(libc::ENOMEM);
    core::ptr::null_mut()
}

fn checked(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        fail()
    } else {
        p.cast()
    }
}

/// `malloc`.
pub fn malloc(size: size_t) -> *mut c_void {
    if size > MAX_SIZE {
        return fail();
    }
    checked(gomalloc::alloc(size, malloc_align(size)))
}

/// `calloc`.
pub fn calloc(n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        Some(t) if t <= MAX_SIZE => checked(gomalloc::alloc_zeroed(t, malloc_align(t))),
        _ => fail(),
    }
}

/// `free`: preserves errno.
///
/// # Safety
/// `p` is null or a live block of this layer.
pub unsafe fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let saved = errno();
    // SAFETY: caller contract.
    unsafe { gomalloc::free(p.cast()) };
    set_errno(saved);
}

/// `realloc`: `realloc(NULL, n)` is `malloc(n)`, `realloc(p, 0)` frees and returns NULL.
///
/// # Safety
/// `p` is null or a live block of this layer.
pub unsafe fn realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: caller contract.
        unsafe { free(p) };
        return core::ptr::null_mut();
    }
    if size > MAX_SIZE {
        return fail();
    }
    // SAFETY: caller contract. Blocks of this layer are at least `malloc_align` aligned;
    // the result needs only that.
    checked(unsafe { gomalloc::realloc(p.cast(), size, malloc_align(size)) })
}

/// `reallocarray`.
///
/// # Safety
/// As [`realloc`].
pub unsafe fn reallocarray(p: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: caller contract.
        Some(t) => unsafe { realloc(p, t) },
        None => fail(),
    }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    if size > MAX_SIZE {
        return fail();
    }
    checked(gomalloc::alloc(size, align.max(malloc_align(size))))
}

/// `memalign` (and glibc 2.36's `aligned_alloc`): a non-power-of-two alignment is
/// rounded up to the next power of two.
pub fn memalign(align: size_t, size: size_t) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => aligned(a, size),
        None => {
            set_errno(libc::EINVAL);
            core::ptr::null_mut()
        }
    }
}

/// `posix_memalign`: EINVAL (as the return value, errno untouched) unless `align` is a
/// power of two and a multiple of `sizeof(void *)`; ENOMEM when out of memory.
///
/// # Safety
/// `out` is writable.
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: size_t, size: size_t) -> c_int {
    if align < size_of::<*mut c_void>() || !align.is_power_of_two() {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller contract.
    unsafe { *out = p };
    0
}

/// `valloc`: page-aligned.
pub fn valloc(size: size_t) -> *mut c_void {
    aligned(4096, size)
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (at least one).
pub fn pvalloc(size: size_t) -> *mut c_void {
    match size.checked_next_multiple_of(4096) {
        Some(r) => aligned(4096, r.max(4096)),
        None => fail(),
    }
}

/// `malloc_usable_size`: 0 for NULL.
///
/// # Safety
/// `p` is null or a live block of this layer.
pub unsafe fn malloc_usable_size(p: *mut c_void) -> size_t {
    if p.is_null() {
        0
    } else {
        // SAFETY: caller contract.
        unsafe { gomalloc::usable_size(p.cast()) }
    }
}
