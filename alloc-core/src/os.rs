//! Memory from the operating system: the only module that calls `mmap`, `mprotect`,
//! `madvise` and `munmap`.
//!
//! Address ranges move through Go's states (`mem.go`):
//!
//! | state    | meaning                                   | entered by            |
//! |----------|-------------------------------------------|-----------------------|
//! | None     | not ours                                  | (never unmapped)      |
//! | Reserved | address space only, `PROT_NONE`, no commit | [`sys_reserve`]       |
//! | Prepared | readable and writable, contents undefined  | [`sys_map`], [`sys_unused`] |
//! | Ready    | in use (Linux: Prepared memory is Ready at its first touch) | -  |
//!
//! Reserving with `PROT_NONE` and committing with `mprotect` (rather than `MAP_NORESERVE`,
//! which `vm.overcommit_memory=2` ignores) keeps untouched arena space off the commit
//! charge. Released memory ([`sys_unused`]) uses `MADV_DONTNEED`: RSS drops at once and the
//! pages read as zero afterwards, which the page heap relies on to skip clearing them.
//!
//! Under Miri (which supports neither `PROT_NONE`, partial `munmap` nor `madvise`), the
//! same functions are built on `std::alloc::System`.
//!
//! Layer: the OS (the crate root's module map, `lib.rs`).

/// Reserves `size` bytes of address space aligned to `align` (a power of two, at least the
/// OS page size). If `hint` is non-zero and that exact aligned range is free, it is used.
/// Returns null when the address space is exhausted.
///
/// # Safety
/// `size` and `align` are multiples of the OS page size; `align` is a power of two.
#[cfg(not(miri))]
pub unsafe fn sys_reserve(hint: usize, size: usize, align: usize) -> *mut u8 {
    const PROT: libc::c_int = libc::PROT_NONE;
    const FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if hint != 0 && hint % align == 0 {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                hint as *mut _,
                size,
                PROT,
                FLAGS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            if p as usize == hint {
                return p.cast();
            }
            // An old kernel treated the flag as a plain hint; give the range back.
            // SAFETY: `p` is the mapping just created, of `size` bytes.
            unsafe { libc::munmap(p, size) };
        }
    }
    let Some(over) = size.checked_add(align) else {
        return core::ptr::null_mut();
    };
    // SAFETY: anonymous PROT_NONE mapping at a kernel-chosen address.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), over, PROT, FLAGS, -1, 0) };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let start = p as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = over - head - size;
    // SAFETY: head and tail lie inside the mapping just created and are page-multiples.
    unsafe {
        if head != 0 {
            libc::munmap(p, head);
        }
        if tail != 0 {
            libc::munmap((aligned + size) as *mut _, tail);
        }
    }
    aligned as *mut u8
}

/// Reserved -> Prepared: makes `[addr, addr+size)` readable and writable. The first touch
/// of each page reads zero. Returns false when the system refuses the commit.
///
/// # Safety
/// The range lies inside a reservation made by [`sys_reserve`]; page-aligned.
#[cfg(not(miri))]
pub unsafe fn sys_map(addr: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the reserved range.
    unsafe { libc::mprotect(addr.cast(), size, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Ready -> Prepared: gives the physical pages back. With `MADV_DONTNEED` (`lazy ==
/// false`) resident memory drops at once and the pages read as zero on the next touch;
/// with `MADV_FREE` (`lazy`) the kernel takes them only under memory pressure and until
/// then they keep their old bytes.
///
/// # Safety
/// The range is mapped read-write, page-aligned, and holds no live data.
#[cfg(not(miri))]
pub unsafe fn sys_unused(addr: *mut u8, size: usize, lazy: bool) {
    let advice = if lazy {
        libc::MADV_FREE
    } else {
        libc::MADV_DONTNEED
    };
    // SAFETY: the caller guarantees the range is ours and dead. A raw system call: the
    // scavenger thread calls this, and it may not enter libc (`crate::sys`).
    unsafe {
        crate::sys::madvise(addr, size, advice);
    }
}

/// Makes `[addr, addr+size)` inaccessible (`access == false`: a guard page, the
/// `guard-pages` feature) or readable and writable again. Returns false when the system
/// refuses (typically `ENOMEM`: the process has too many mappings, `vm.max_map_count`).
///
/// # Safety
/// The range is mapped, page-aligned, and holds no data anyone will read while it is
/// inaccessible.
#[cfg(not(miri))]
pub unsafe fn sys_protect(addr: *mut u8, size: usize, access: bool) -> bool {
    let prot = if access {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_NONE
    };
    // SAFETY: the caller owns the range.
    unsafe { libc::mprotect(addr.cast(), size, prot) == 0 }
}

/// Reserved or Prepared -> None: unmaps a range this module mapped, whole or in part
/// (failure paths only: the heap never unmaps arenas it is using).
///
/// # Safety
/// The range was mapped by [`sys_reserve`] or [`sys_alloc`], is page-aligned, and nothing
/// refers to it any more.
#[cfg(not(miri))]
pub unsafe fn sys_free(addr: *mut u8, size: usize) {
    // SAFETY: the range is a page-aligned mapping of ours that nothing refers to (# Safety).
    unsafe {
        libc::munmap(addr.cast(), size);
    }
}

/// None -> Ready: zeroed read-write memory for the allocator's own metadata.
/// Returns null on failure.
///
/// # Safety
/// `size` is a multiple of the OS page size.
#[cfg(not(miri))]
pub unsafe fn sys_alloc(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping at a kernel-chosen address.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        core::ptr::null_mut()
    } else {
        p.cast()
    }
}

// ---- Miri twin, built on the system allocator ----

#[cfg(miri)]
fn layout(size: usize, align: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(size, align).expect("bad layout")
}

/// Miri twin of the reservation: zeroed memory from `System`.
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_reserve(_hint: usize, size: usize, align: usize) -> *mut u8 {
    use std::alloc::GlobalAlloc;
    // SAFETY: non-zero size.
    unsafe { std::alloc::System.alloc_zeroed(layout(size, align)) }
}

/// Miri twin: memory from `System` is already usable.
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_map(_addr: *mut u8, _size: usize) -> bool {
    true
}

/// Miri twin: emulates `MADV_DONTNEED` by zeroing.
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_unused(addr: *mut u8, size: usize, _lazy: bool) {
    // SAFETY: the caller owns the range.
    unsafe { core::ptr::write_bytes(addr, 0, size) }
}

/// Miri twin: Miri has no `PROT_NONE`; guard pages are not enforced.
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_protect(_addr: *mut u8, _size: usize, _access: bool) -> bool {
    true
}

/// Miri twin: memory from `System` cannot be given back in part; it is leaked (failure
/// paths only).
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_free(_addr: *mut u8, _size: usize) {}

/// Miri twin of metadata allocation.
///
/// # Safety
/// As for the real version.
#[cfg(miri)]
pub unsafe fn sys_alloc(size: usize) -> *mut u8 {
    use std::alloc::GlobalAlloc;
    // SAFETY: non-zero size.
    unsafe { std::alloc::System.alloc_zeroed(layout(size, 4096)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_aligned_and_commit_reads_zero() {
        const A: usize = 64 << 20;
        // SAFETY: sizes are page multiples; we touch only the committed part.
        unsafe {
            let p = sys_reserve(0, A, A);
            assert!(!p.is_null());
            assert_eq!(p as usize % A, 0);
            assert!(sys_map(p, 1 << 20));
            assert_eq!(*p.add(4096), 0);
            *p.add(4096) = 7;
            sys_unused(p, 1 << 20, false);
            assert_eq!(*p.add(4096), 0);
        }
    }
}
