//! ISO C, POSIX and C23 allocation functions, with glibc 2.36's semantics.
//!
//! Each exported function is a thin wrapper around an `#[inline(always)]` `*_impl`
//! function; the `__libc_*` aliases in [`crate::aliases`] call the same `*_impl`s. The
//! `*_impl`s translate the C contract and make exactly one call into the core:
//!
//! | C rule (glibc 2.36)                                   | where                  |
//! |-------------------------------------------------------|------------------------|
//! | `malloc(0)`, `calloc(0, n)`, `realloc(NULL, 0)` give a unique non-NULL pointer | core (size 0 is a minimum object) |
//! | every failure returns NULL and sets `errno = ENOMEM`  | [`fail`]               |
//! | sizes above `PTRDIFF_MAX` fail                        | [`MAX_SIZE`]           |
//! | `calloc`/`reallocarray`/`pvalloc` size overflow fails | `checked_*` below      |
//! | `realloc(p, 0)` frees `p` and returns NULL            | [`realloc_impl`]       |
//! | `free` keeps `errno`                                  | [`free_impl`]          |
//! | `malloc(n)` is aligned for every type of size <= n    | [`malloc_align`]       |
//! | `memalign`/`aligned_alloc`: alignment rounded up to a power of two; above `SIZE_MAX/2+1` EINVAL | [`memalign_impl`] |
//! | `posix_memalign`: EINVAL *returned* unless a power-of-two multiple of `sizeof(void*)` | [`posix_memalign_impl`] |

use crate::errno::{errno_slot, set_errno};
use core::ffi::c_void;
use libc::{c_int, size_t};

/// The largest object size C can have (`PTRDIFF_MAX`); glibc fails larger requests with
/// ENOMEM before trying, and so do we (the core never sees a size that overflows when it
/// adds an alignment to it).
pub(crate) const MAX_SIZE: usize = isize::MAX as usize;

/// `alignof(max_align_t)`: 16 on x86-64 and aarch64.
const MAX_ALIGN: usize = core::mem::align_of::<libc::max_align_t>();
// `heap::alloc_malloc` (malloc's fast path) aligns to this from 16 bytes up.
const _: () = assert!(MAX_ALIGN == heap::MALLOC_ALIGN);

/// The alignment `malloc(size)` guarantees. C17 7.22.3: the pointer is suitably aligned for
/// any type with a fundamental alignment *whose size fits in the request*. A type's size is
/// a multiple of its alignment, so a request below `MAX_ALIGN` bytes needs only 8 (no type
/// of alignment 16 fits), while anything from 16 up may hold a `long double` or
/// `max_align_t` and needs 16. (Go's 24-byte class is only 8-aligned: asking for 16 moves
/// 17..=24-byte requests to the 32-byte class.)
#[inline(always)]
pub(crate) const fn malloc_align(size: usize) -> usize {
    if size >= MAX_ALIGN { MAX_ALIGN } else { 8 }
}

/// The failure path of every allocating function: `errno = ENOMEM`, NULL.
#[cold]
#[inline(never)]
pub(crate) fn fail() -> *mut c_void {
    set_errno(libc::ENOMEM);
    core::ptr::null_mut()
}

/// Returns `p`, or [`fail`]s if it is NULL.
#[inline(always)]
fn checked(p: *mut u8) -> *mut c_void {
    if p.is_null() { fail() } else { p.cast() }
}

/// The system page size (for `valloc`/`pvalloc`), read once.
fn page_size() -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions; it neither allocates nor locks.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

// ---------------------------------------------------------------------------------------
// The implementations, shared by the exported names and their aliases.

#[inline(always)]
pub(crate) fn malloc_impl(size: size_t) -> *mut c_void {
    let p = heap::alloc_malloc_fast(size);
    if !p.is_null() {
        return p.cast();
    }
    malloc_slow_impl(size)
}

/// Everything [`malloc_impl`]'s fast path leaves (refills, large blocks, impossible sizes,
/// `errno` on failure), in a function of its own so that the fast path makes no call and
/// needs no stack frame.
#[cold]
#[inline(never)]
fn malloc_slow_impl(size: size_t) -> *mut c_void {
    if size > MAX_SIZE {
        return fail();
    }
    checked(heap::alloc_malloc_slow(size))
}

#[inline(always)]
pub(crate) fn calloc_impl(n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) if total <= MAX_SIZE => checked(heap::alloc_zeroed(total, malloc_align(total))),
        _ => fail(),
    }
}

/// # Safety
/// `ptr` is NULL or a live pointer from this allocator (anything else aborts in the core).
#[inline(always)]
pub(crate) unsafe fn free_impl(ptr: *mut c_void) {
    // The common case (a slot of a span this thread's cache owns) makes no system call, so
    // errno needs no saving. NULL is not tested here: it is never such a slot, and
    // `free_slow_impl` ignores it.
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety), dead once
    // freed.
    if unsafe { heap::free_fast(ptr.cast()) } {
        return;
    }
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { free_slow_impl(ptr) }
}

/// Everything [`free_impl`]'s fast path leaves: NULL, large objects, frees into other
/// threads' spans, and the diagnosis of foreign pointers.
///
/// # Safety
/// As for [`free_impl`].
#[cold]
#[inline(never)]
unsafe fn free_slow_impl(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // One `__errno_location` call for the save and the restore (the slot is per thread
    // and never moves). The core's slow paths may call munmap/madvise, which set errno.
    let slot = errno_slot();
    // SAFETY: `slot` is this thread's errno, valid for the thread's lifetime.
    let saved = unsafe { *slot };
    // SAFETY: `ptr` is a live pointer from this allocator (# Safety), dead once freed;
    // the core aborts on pointers it does not own.
    unsafe { heap::free(ptr.cast()) };
    // SAFETY: `slot` is this thread's errno, valid for the thread's lifetime.
    unsafe { *slot = saved };
}

/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[inline(always)]
pub(crate) unsafe fn realloc_impl(ptr: *mut c_void, size: size_t) -> *mut c_void {
    if ptr.is_null() {
        return malloc_impl(size);
    }
    if size == 0 {
        // glibc (REALLOC_ZERO_BYTES_FREES): free and return NULL, errno untouched.
        // SAFETY: `ptr` is a live pointer from this allocator (# Safety).
        unsafe { free_impl(ptr) };
        return core::ptr::null_mut();
    }
    if size > MAX_SIZE {
        return fail();
    }
    // SAFETY: `ptr` is live (caller); the core aborts on pointers it does not own and
    // leaves the old block untouched when it returns NULL.
    checked(unsafe { heap::realloc(ptr.cast(), size, malloc_align(size)) })
}

/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[inline(always)]
pub(crate) unsafe fn reallocarray_impl(ptr: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
        Some(total) => unsafe { realloc_impl(ptr, total) },
        None => fail(),
    }
}

/// `memalign`/`aligned_alloc` (identical in glibc 2.36): any alignment is accepted and
/// rounded up to a power of two (24 -> 32; 0 -> malloc's); one above `SIZE_MAX / 2 + 1`
/// cannot be rounded and fails with EINVAL.
#[inline(always)]
pub(crate) fn memalign_impl(align: size_t, size: size_t) -> *mut c_void {
    let align = match align.checked_next_power_of_two() {
        Some(a) => a,
        None => {
            set_errno(libc::EINVAL);
            return core::ptr::null_mut();
        }
    };
    aligned_impl(align, size)
}

/// Allocation at a power-of-two `align`, never less than `malloc`'s.
#[inline(always)]
fn aligned_impl(align: usize, size: usize) -> *mut c_void {
    if size > MAX_SIZE {
        return fail();
    }
    let align = if align > malloc_align(size) {
        align
    } else {
        malloc_align(size)
    };
    checked(heap::alloc(size, align))
}

/// # Safety
/// `memptr` is valid for a write of one pointer.
#[inline(always)]
pub(crate) unsafe fn posix_memalign_impl(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    // POSIX: a power of two multiple of sizeof(void *). EINVAL is returned, errno untouched.
    if align < size_of::<*mut c_void>() || !align.is_power_of_two() {
        return libc::EINVAL;
    }
    let p = aligned_impl(align, size);
    if p.is_null() {
        // glibc's errno also reads ENOMEM here (set by `fail`); *memptr is left alone.
        return libc::ENOMEM;
    }
    // SAFETY: the caller guarantees `memptr` is writable.
    unsafe { *memptr = p };
    0
}

#[inline(always)]
pub(crate) fn valloc_impl(size: size_t) -> *mut c_void {
    aligned_impl(page_size(), size)
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (0 -> one page).
#[inline(always)]
pub(crate) fn pvalloc_impl(size: size_t) -> *mut c_void {
    let page = page_size();
    match size.checked_next_multiple_of(page) {
        Some(rounded) => aligned_impl(page, if rounded == 0 { page } else { rounded }),
        None => fail(),
    }
}

/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[inline(always)]
pub(crate) unsafe fn usable_size_impl(ptr: *mut c_void) -> size_t {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` is a live pointer from this allocator (# Safety; NULL returned
    // above); the core aborts on pointers it does not own.
    unsafe { heap::usable_size(ptr.cast()) }
}

// ---------------------------------------------------------------------------------------
// The exported functions. Each is documented in README.md; `man 3 malloc` for the rest.

/// `malloc(3)`: `size` bytes aligned for any type that fits; `malloc(0)` is a unique
/// non-NULL pointer. NULL with `errno = ENOMEM` on failure.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn malloc(size: size_t) -> *mut c_void {
    malloc_impl(size)
}

/// `calloc(3)`: zeroed `n * size` bytes; NULL/ENOMEM when the product overflows.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    calloc_impl(n, size)
}

/// `free(3)`: NULL is a no-op; `errno` is preserved. A double free, an interior or a
/// foreign pointer prints one line on stderr and aborts.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { free_impl(ptr) }
}

/// `realloc(3)`: NULL `ptr` is `malloc(size)`; size 0 frees `ptr` and returns NULL; on
/// failure NULL/ENOMEM and `ptr` is untouched.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { realloc_impl(ptr, size) }
}

/// `reallocarray(3)`: `realloc(ptr, n * size)`, NULL/ENOMEM (and `ptr` untouched) when the
/// product overflows.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { reallocarray_impl(ptr, n, size) }
}

/// `posix_memalign(3)`: returns EINVAL (errno untouched) unless `align` is a power-of-two
/// multiple of `sizeof(void *)`, ENOMEM on failure (`*memptr` untouched), else 0.
///
/// # Safety
/// `memptr` is valid for writing one pointer.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    // SAFETY: `memptr` is valid for writing one pointer (# Safety).
    unsafe { posix_memalign_impl(memptr, align, size) }
}

/// `aligned_alloc(3)` as glibc 2.36 has it (the same function as `memalign`): the
/// alignment is rounded up to a power of two and `size` need not be a multiple of it.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    memalign_impl(align, size)
}

/// `memalign(3)`: alignment rounded up to a power of two (24 -> 32); NULL/EINVAL above
/// `SIZE_MAX / 2 + 1`; NULL/ENOMEM on failure.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    memalign_impl(align, size)
}

/// `valloc(3)`: page-aligned `size` bytes.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn valloc(size: size_t) -> *mut c_void {
    valloc_impl(size)
}

/// `pvalloc(3)`: page-aligned, `size` rounded up to whole pages (`pvalloc(0)` is one page);
/// NULL/ENOMEM when rounding overflows.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    pvalloc_impl(size)
}

/// `malloc_usable_size(3)`: the bytes usable at `ptr` (>= the size asked for); 0 for NULL.
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator (anything else aborts).
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> size_t {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { usable_size_impl(ptr) }
}

/// C23 `free_sized`: `free(ptr)` (the size is not needed by the heap and not checked).
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: size_t) {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { free_impl(ptr) }
}

/// C23 `free_aligned_sized`: `free(ptr)` (alignment and size are not checked).
///
/// # Safety
/// `ptr` is NULL or a live pointer from this allocator.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: size_t, _size: size_t) {
    // SAFETY: `ptr` is NULL or a live pointer from this allocator (# Safety).
    unsafe { free_impl(ptr) }
}
