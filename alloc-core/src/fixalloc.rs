//! A free-list allocator for fixed-size metadata objects (Go's `mfixalloc.go`).
//!
//! `Span` and `MCache` records are carved from 64 KiB chunks of OS memory and recycled
//! through a free list; they are never returned to the OS. The allocator is not
//! synchronised: its owner (the page heap, or the cache pool) guards it with its lock.
//!
//! Layer: primitives (the crate root's module map, `lib.rs`).

use core::ptr;

/// Bytes requested from the OS per chunk.
const CHUNK: usize = 64 << 10;

/// A fixed-size object allocator.
pub struct FixAlloc {
    size: usize,
    /// Recycled objects; each holds the next pointer in its first word.
    free: *mut u8,
    /// Unused tail of the current chunk.
    chunk: *mut u8,
    nchunk: usize,
    /// Bytes obtained from the OS (for statistics).
    pub sys: usize,
    /// Objects currently handed out.
    pub inuse: usize,
}

// SAFETY: the raw pointers refer to memory owned by this allocator; the owner's lock
// serialises all access.
unsafe impl Send for FixAlloc {}

impl FixAlloc {
    /// An allocator of `size`-byte objects (a multiple of 64, so objects stay cache-line
    /// aligned).
    pub const fn new(size: usize) -> Self {
        assert!(size % 64 == 0 && size <= CHUNK);
        FixAlloc {
            size,
            free: ptr::null_mut(),
            chunk: ptr::null_mut(),
            nchunk: 0,
            sys: 0,
            inuse: 0,
        }
    }

    /// Returns uninitialised storage for one object, or null if the OS refuses memory.
    pub fn alloc(&mut self) -> *mut u8 {
        if !self.free.is_null() {
            let p = self.free;
            // SAFETY: every free-list entry stores the next entry in its first word.
            self.free = unsafe { p.cast::<*mut u8>().read() };
            self.inuse += 1;
            return p;
        }
        if self.nchunk < self.size {
            // SAFETY: CHUNK is a multiple of the OS page size.
            let c = unsafe { crate::os::sys_alloc(CHUNK) };
            if c.is_null() {
                return ptr::null_mut();
            }
            self.sys += CHUNK;
            self.chunk = c;
            self.nchunk = CHUNK;
        }
        let p = self.chunk;
        // SAFETY: `nchunk >= size`, so the object lies inside the chunk.
        self.chunk = unsafe { p.add(self.size) };
        self.nchunk -= self.size;
        self.inuse += 1;
        p
    }

    /// Returns an object to the free list.
    ///
    /// # Safety
    /// `p` came from this allocator's [`FixAlloc::alloc`] and is no longer used.
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: `p` is an object of at least 8 bytes owned by this allocator.
        unsafe { p.cast::<*mut u8>().write(self.free) };
        self.free = p;
        self.inuse -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_objects() {
        let mut f = FixAlloc::new(128);
        let a = f.alloc();
        let b = f.alloc();
        assert_eq!(b as usize - a as usize, 128);
        // SAFETY: `a` came from `f` and is dead.
        unsafe { f.free(a) };
        assert_eq!(f.alloc(), a);
        assert_eq!(f.inuse, 2);
        assert_eq!(f.sys, CHUNK);
    }
}
