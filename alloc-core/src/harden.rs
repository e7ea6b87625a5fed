//! Hardening options, each a Cargo feature, each off by default (`docs/HARDENING.md`);
//! their measured costs are in `docs/BENCHMARKS.md`, section 5.
//!
//! * `poison`: every free slot of a small span holds [`POISON`] bytes: spans are filled
//!   when they are carved, each free fills the object (a remote free re-poisons the link
//!   word when it is collected), and each allocation verifies the whole slot
//!   ([`verify_poison`]), so a write after free is reported at the next reuse. Freed
//!   large blocks are filled too (not verified: their pages go back to the page heap).
//! * `guard-pages`: each large object gets one more page, made `PROT_NONE`
//!   ([`GUARD_PAGES`]), so a linear overflow past its last page faults. Overflows within
//!   the last page's slack are not caught (the object starts at the span's base).
//! * `encoded-free-lists`: the link word a remote free writes into the dead object is
//!   `next ^ object address ^ key` with a per-process random key ([`encode_link`]), and is
//!   validated when collected: a heap overflow that overwrites it (with zeros, or with the
//!   address of a live object) decodes to something that is not a free slot of the span,
//!   and the process ends with "corrupted remote free list".
//!
//! Double-free and invalid-free detection is not an option: it is always on.

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
        // SAFETY: caller contract.
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
        // SAFETY: caller contract.
        unsafe { verify_slow(p, n) }
    }
}

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

// ---- encoded remote-free links ----

/// The per-process key (0 until first needed; never 0 afterwards).
#[cfg(all(feature = "encoded-free-lists", not(loom)))]
static KEY: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The per-process key of the encoded links: from `getrandom(2)` (no allocation, no
/// lock), else from the kernel's `AT_RANDOM` bytes mixed with an address (ASLR).
#[cfg(all(feature = "encoded-free-lists", not(loom)))]
#[inline(always)]
fn key() -> usize {
    use core::sync::atomic::Ordering;
    let k = KEY.load(Ordering::Relaxed);
    if k != 0 {
        return k;
    }
    #[cold]
    fn init() -> usize {
        let mut k: usize = 0;
        #[cfg(not(miri))]
        // SAFETY: getrandom writes at most 8 bytes into `k`; getauxval has no
        // preconditions and AT_RANDOM points at 16 readable bytes when present.
        unsafe {
            let n = libc::syscall(
                libc::SYS_getrandom,
                (&mut k as *mut usize).cast::<u8>(),
                8usize,
                libc::GRND_NONBLOCK,
            );
            if n != 8 {
                let r = libc::getauxval(libc::AT_RANDOM) as *const u8;
                k = if r.is_null() {
                    0
                } else {
                    r.add(8).cast::<usize>().read_unaligned()
                };
                k ^= (&KEY as *const _ as usize).rotate_left(17);
            }
        }
        #[cfg(miri)]
        {
            k = (&KEY as *const _ as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        k |= 1 << 63; // never zero
        match KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => k,
            Err(other) => other,
        }
    }
    init()
}

/// Under loom the key is a constant (the models check the protocol, not the key).
#[cfg(all(feature = "encoded-free-lists", loom))]
#[inline(always)]
fn key() -> usize {
    0x9E37_79B9_7F4A_7C15
}

/// The word stored in dead object `obj` to link it to `next` (a plain pointer without
/// the `encoded-free-lists` feature).
#[inline(always)]
pub fn encode_link(obj: *mut u8, next: usize) -> usize {
    #[cfg(feature = "encoded-free-lists")]
    {
        next ^ (obj as usize) ^ key()
    }
    #[cfg(not(feature = "encoded-free-lists"))]
    {
        let _ = obj;
        next
    }
}

/// Inverse of [`encode_link`]: the successor of `obj` from the word stored in it.
#[inline(always)]
pub fn decode_link(obj: *mut u8, word: usize) -> usize {
    encode_link(obj, word)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_and_null_is_not_zero_when_encoded() {
        let mut a = [0u64; 2];
        let obj = a.as_mut_ptr().cast::<u8>();
        for next in [0usize, 8, 0x7fff_1234_5678] {
            assert_eq!(decode_link(obj, encode_link(obj, next)), next);
        }
        if cfg!(feature = "encoded-free-lists") {
            assert_ne!(
                encode_link(obj, 0),
                0,
                "a zeroed link must not read as the end"
            );
            assert_ne!(decode_link(obj, 0), 0);
        }
    }

    #[test]
    fn poison_fill_and_verify() {
        let mut a = [0u8; 40];
        // SAFETY: `a` is ours.
        unsafe {
            poison(a.as_mut_ptr(), a.len());
            verify_poison(a.as_mut_ptr(), a.len());
        }
        assert!(!POISONING || a.iter().all(|&b| b == POISON));
    }
}
