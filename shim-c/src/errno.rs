//! The calling thread's `errno`, read and written without going through anything that
//! could allocate (`__errno_location` returns a pointer into the thread's TCB).

/// The calling thread's `errno` slot, valid for as long as the thread lives.
#[inline(always)]
pub(crate) fn errno_slot() -> *mut libc::c_int {
    // SAFETY: `__errno_location` has no preconditions.
    unsafe { libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline(always)]
pub(crate) fn set_errno(e: libc::c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e }
}
