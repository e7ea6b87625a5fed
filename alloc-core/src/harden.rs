//! Hardening options, each a Cargo feature, each off by default (`docs/HARDENING.md`);
//! their measured costs are in `docs/BENCHMARKS.md`, section 5.
//!
//! * `poison`: every free slot of a small span holds [`POISON`] bytes: spans are filled
//!   when they are carved, each free fills the object, and each allocation verifies the
//!   whole slot ([`verify_poison`]), so a write after free is reported at the next reuse.
//!   Freed large blocks are filled too (not verified: their pages go back to the page
//!   heap).
//! * `guard-pages`: each large object gets one more page, made `PROT_NONE`
//!   ([`GUARD_PAGES`]), so a linear overflow past its last page faults. Overflows within
//!   the last page's slack are not caught (the object starts at the span's base).
//!
//! Freed memory holds no allocator metadata for an overflow to corrupt or redirect: remote
//! frees are bits in a bitmap beside the heap ([`crate::remote::RemoteFrees`]), not links
//! written into dead objects, so free lists need no encoding.
//!
//! Double-free and invalid-free detection is not an option: it is always on.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

/// The byte freed memory is filled with under the `poison` feature.
pub const POISON: u8 = 0xDE;

/// Whether the `poison` feature is on.
pub const POISONING: bool = cfg!(feature = "poison");

/// Guard pages after each large object: 1 with the `guard-pages` feature, else 0.
pub const GUARD_PAGES: usize = if cfg!(feature = "guard-pages") { 1 } else { 0 };

/// Fills `n` bytes at `p` with [`POISON`] (poison feature), else does nothing.
///
/// # Safety
/// `p..p+n` is writable memory the caller owns.
#[inline(always)]
pub unsafe fn poison(p: *mut u8, n: usize) {
    if POISONING {
        // SAFETY: `p..p+n` is writable memory the caller owns (# Safety).
        unsafe { core::ptr::write_bytes(p, POISON, n) }
    }
}

/// Verifies that the free slot `p` of `n` bytes about to be handed out still holds
/// [`POISON`] everywhere (poison feature); ends the process naming the first modified byte
/// otherwise.
///
/// # Safety
/// `p..p+n` is a free slot the caller just took.
#[inline(always)]
pub unsafe fn verify_poison(p: *mut u8, n: usize) {
    if POISONING {
        // SAFETY: `p..p+n` is a free slot the caller just took (# Safety).
        unsafe { verify_slow(p, n) }
    }
}

/// [`verify_poison`]'s check, out of line.
///
/// # Safety
/// `p..p+n` is a free slot the caller just took (slots are 8-byte aligned).
#[cold]
#[inline(never)]
unsafe fn verify_slow(p: *mut u8, n: usize) {
    const WORD: u64 = u64::from_ne_bytes([POISON; 8]);
    let words = n / 8;
    let w = p.cast::<u64>();
    for i in 0..words {
        // SAFETY: `i < n / 8` and slots are 8-aligned: inside the slot.
        if unsafe { w.add(i).read() } != WORD {
            for b in i * 8..i * 8 + 8 {
                // SAFETY: inside the slot.
                if unsafe { *p.add(b) } != POISON {
                    crate::report::fatal(
                        "write after free: a freed object was modified at",
                        p as usize + b,
                    );
                }
            }
        }
    }
    for b in words * 8..n {
        // SAFETY: inside the slot.
        if unsafe { *p.add(b) } != POISON {
            crate::report::fatal(
                "write after free: a freed object was modified at",
                p as usize + b,
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn poison_fill_and_verify() {
        // Words, so that the buffer has the 8-byte alignment of a heap slot, which the
        // word-wise check relies on.
        let mut w = [0u64; 5];
        let (p, n) = (w.as_mut_ptr().cast::<u8>(), core::mem::size_of_val(&w));
        // SAFETY: `p..p+n` is `w`, ours and 8-aligned.
        unsafe {
            poison(p, n);
            verify_poison(p, n);
        }
        assert!(!POISONING || w.iter().all(|&x| x.to_ne_bytes().iter().all(|&b| b == POISON)));
    }
}
