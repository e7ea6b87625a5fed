//! CPU features the heap's slow paths use when the processor has them.
//!
//! The crate is built for baseline x86-64, which has no `popcnt` instruction, so
//! `u64::count_ones` compiles to a dozen shifts, masks and a multiply. A refill counts the
//! free slots of a span's window once or twice ([`crate::span::Span::commit_window`],
//! `Span::retained_free`), and in software that count is a large share of a refill's
//! instructions. Every x86-64 processor since 2008 has `popcnt`, so
//! [`detect`] asks CPUID once at start-up and [`popcount`] then uses the instruction,
//! behind a branch on a flag that never changes. Before detection, under Miri, and on
//! other architectures, it is `count_ones`.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

#[cfg(all(target_arch = "x86_64", not(miri)))]
use crate::sync::{AtomicBool, Ordering};

/// Set once [`detect`] has seen the `popcnt` instruction.
#[cfg(all(target_arch = "x86_64", not(miri)))]
static HAS_POPCNT: AtomicBool = AtomicBool::new(false);

/// Looks the CPU's features up (CPUID leaf 1, ECX bit 23: `popcnt`). Called once by
/// [`crate::runtime`]'s initialisation; allocates nothing, takes no lock.
pub fn detect() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // CPUID exists on every x86-64 processor, and leaf 1 is always supported.
        let ecx = core::arch::x86_64::__cpuid(1).ecx;
        HAS_POPCNT.store(ecx & (1 << 23) != 0, Ordering::Relaxed);
    }
}

/// Whether [`popcount`] uses the `popcnt` instruction.
#[cfg(any(test, feature = "test-internals"))]
pub fn has_popcnt() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        HAS_POPCNT.load(Ordering::Relaxed)
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        false
    }
}

/// Marks the branch that calls it as rarely taken, so that the compiler lays it out off
/// the common path: `core::hint::cold_path`, which is stable only from Rust 1.95 (the
/// crate's minimum is 1.85). A call to an empty `#[cold]` function does the same.
#[cold]
#[inline]
pub fn cold_path() {}

/// Set bits of `x`: `x.count_ones()`, with the `popcnt` instruction where the CPU has it.
#[inline(always)]
pub fn popcount(x: u64) -> u32 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if HAS_POPCNT.load(Ordering::Relaxed) {
        let n: u64;
        // SAFETY: `detect` saw CPUID report `popcnt`; the instruction reads one register
        // and writes another (and the flags), touching no memory.
        unsafe {
            core::arch::asm!(
                "popcnt {n}, {x}",
                x = in(reg) x,
                n = lateout(reg) n,
                options(pure, nomem, nostack),
            );
        }
        return n as u32;
    }
    x.count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_matches_count_ones_before_and_after_detection() {
        let xs = [
            0u64,
            1,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x5555,
            0xdead_beef_f00d,
        ];
        for &x in &xs {
            assert_eq!(popcount(x), x.count_ones(), "{x:#x}");
        }
        detect();
        for &x in &xs {
            assert_eq!(popcount(x), x.count_ones(), "{x:#x}");
        }
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert!(
            has_popcnt(),
            "every x86-64 CPU this runs on since 2008 has popcnt"
        );
    }
}
