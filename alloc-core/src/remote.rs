//! The two lock-free structures of the heap, kept apart so loom can check them alone.
//!
//! * [`RemoteFrees`]: per span, the objects freed by threads that do not own the span. A
//!   remote free sets the object's bit in the span's *remote-free bitmap* (one atomic
//!   `fetch_or`) and then makes sure the span's [`PENDING`] flag is up; the one consumer
//!   (the span's owner, or the holder of its mcentral lock) clears the flag and takes the
//!   bitmap's words with a swap each. The flag word also carries [`DELAYED`]: an unowned
//!   span parked in its mcentral carries it, and the remote free that clears it must tell
//!   the mcentral ([`IntrusiveStack`]).
//! * [`IntrusiveStack`]: a Treiber stack of nodes with a `next` field, again with one
//!   consumer that takes everything at once.
//!
//! Why a bitmap, not a list linked through the dead objects (mimalloc's `xthread_free`):
//! the consumer of a list must read every object to follow the links, pulling each line
//! the freeing thread has just written into its own cache, so that the next remote free
//! of that object waits for the line to come back before its CAS can complete (the
//! cross-thread benchmark of `docs/BENCHMARKS.md`, section 3, measures a remote free).
//! The bitmap never
//! touches the objects: the consumer reads two words for a span of 128 objects, a double
//! free between two collections is caught exactly (the bit is already set), and a heap
//! overflow into a dead object has no link to redirect.
//!
//! Layer: spans (the crate root's module map, `lib.rs`).

use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use core::ptr;

/// Flag of [`RemoteFrees`]: the span's remote-free bitmap may hold bits the consumer has
/// not taken. Raised by each remote free after its bit, lowered by the consumer before it
/// reads the bitmap.
pub const PENDING: usize = 1;
/// Flag of [`RemoteFrees`]: the span is parked in its mcentral; the remote free that
/// clears this flag (raising [`PENDING`]) must hand the span to its mcentral.
pub const DELAYED: usize = 2;

/// What [`RemoteFrees::push`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Push {
    /// The object's bit is set and announced.
    Done,
    /// As `Done`, and this free cleared [`DELAYED`]: the caller must hand the span to its
    /// mcentral (`MCentral::pending`).
    Woke,
    /// The object's bit was set already: a second free of it since the consumer last
    /// collected. Nothing was changed.
    Twice,
}

/// A full `SeqCst` fence under loom only. The remote-free protocol is a Dekker pattern
/// (a free writes its bit, then reads the flag; the consumer writes the flag, then reads
/// the bits), which `SeqCst` operations on both sides make correct in the C++ memory
/// model; loom treats `SeqCst` accesses as `AcqRel` (a documented limitation: it would
/// report false races), but models `SeqCst` fences exactly, so its builds add one between
/// the two halves. (On x86 the `lock`-prefixed read-modify-write before each fence point
/// is a full barrier already; an `mfence` there would cost the free path ~20 cycles.)
#[inline(always)]
fn loom_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// The remote frees of one span: a flag word here, bits in the span's remote-free bitmap
/// (one bit per slot, in its arena's `HeapArena::xfree_bits`).
///
/// Invariants:
/// 1. `state` is 0, [`PENDING`] or [`DELAYED`], never both flags.
/// 2. Every bit set in the bitmap is *announced*: `state` has [`PENDING`], or the remote
///    free that set it has yet to read `state` (and will raise [`PENDING`], or clear
///    [`DELAYED`] and wake the span).
/// 3. [`DELAYED`] is set only while the span is parked: unowned, listed in its mcentral
///    or full, and not on its mcentral's pending stack (`mcentral.rs`).
///
/// A remote free reads `state` *after* its bit is visible, so by then the consumer may
/// have taken the bit, found the span empty and freed it, and the record may describe
/// another span. Its read (and the CAS it may make) then acts on the new span: at worst a
/// spurious [`PENDING`] (the next collection finds no bit) or a spurious wake of a parked
/// span (its mcentral settles it again and finds nothing new). Both are harmless, and
/// records are never unmapped, so the access itself is sound.
pub struct RemoteFrees {
    state: AtomicUsize,
}

impl RemoteFrees {
    /// No remote free, not parked.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteFrees {
            state: AtomicUsize::new(0),
        }
    }
    /// No remote free, not parked.
    #[cfg(loom)]
    pub fn new() -> Self {
        RemoteFrees {
            state: AtomicUsize::new(0),
        }
    }

    /// Frees slot `idx` remotely: sets its bit in `bits`, the span's remote-free bitmap,
    /// then announces it. One atomic read-modify-write and one load in the common case
    /// (the flag already up).
    ///
    /// A second free of the slot before the consumer takes the first is reported as
    /// [`Push::Twice`] (the caller ends the process); one after the consumer took it is
    /// caught by the consumer, which finds the slot's allocation bit already clear
    /// ([`crate::span::Span::collect_remote`]), unless the slot was handed out again.
    ///
    /// # Safety
    /// `bits` points to the span's remote-free bitmap and `idx` is a slot of the span
    /// (inside the bitmap), being freed by its user.
    #[inline(always)]
    pub unsafe fn push(&self, bits: *const AtomicU64, idx: usize) -> Push {
        let m = 1u64 << (idx & 63);
        // SAFETY: `idx` is a slot of the span, inside its remote-free bitmap `bits`
        // (# Safety), so word `idx / 64` lies in it.
        let w = unsafe { &*bits.add(idx >> 6) };
        // Release (within SeqCst): the user's writes to the object happen before the
        // consumer's Acquire swap that takes the bit, hence before the slot's reuse.
        if w.fetch_or(m, Ordering::SeqCst) & m != 0 {
            return Push::Twice;
        }
        loom_fence();
        if self.state.load(Ordering::SeqCst) == PENDING {
            return Push::Done;
        }
        self.announce()
    }

    /// Raises [`PENDING`] after a bit was set, clearing [`DELAYED`] if the span is parked.
    #[cold]
    #[inline(never)]
    fn announce(&self) -> Push {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old == PENDING {
                return Push::Done;
            }
            match self.state.compare_exchange_weak(
                old,
                PENDING,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) if old == DELAYED => return Push::Woke,
                Ok(_) => return Push::Done,
                Err(cur) => old = cur,
            }
        }
    }

    /// Takes every announced remote free: lowers [`PENDING`], then swaps each non-zero
    /// word of `bits` (`words` words) with zero and calls `f(word index, bits taken)`.
    /// Returns false, calling nothing, when nothing was announced. Only the consumer calls
    /// it, on a span that is not parked.
    ///
    /// # Safety
    /// `bits` points to the span's remote-free bitmap of `words` words.
    #[inline]
    pub unsafe fn take(
        &self,
        bits: *const AtomicU64,
        words: usize,
        mut f: impl FnMut(usize, u64),
    ) -> bool {
        if self.state.load(Ordering::Relaxed) != PENDING {
            return false;
        }
        self.state.fetch_and(!PENDING, Ordering::SeqCst);
        loom_fence();
        for i in 0..words {
            // SAFETY: `i < words`, and `bits` has `words` words (# Safety).
            let w = unsafe { &*bits.add(i) };
            if w.load(Ordering::SeqCst) != 0 {
                // Acquire: the freeing threads' writes to the objects happen before.
                f(i, w.swap(0, Ordering::Acquire));
            }
        }
        true
    }

    /// Unparks a parked span (clears [`DELAYED`]). Fails when a remote free cleared the
    /// flag first: that thread is handing the span to its mcentral.
    #[inline]
    pub fn try_unpark(&self) -> bool {
        self.state
            .compare_exchange(DELAYED, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Parks the span: sets [`DELAYED`] if no remote free is announced. Fails (returns
    /// false) when one is; the consumer then takes it and tries again. (A free whose bit
    /// is set but not yet announced finds [`DELAYED`] and wakes the span.)
    #[inline]
    pub fn try_park(&self) -> bool {
        self.state
            .compare_exchange(0, DELAYED, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// True if no remote free is announced (a hint unless the span is parked or its
    /// remote frees are all taken and no thread is freeing into it).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.state.load(Ordering::Relaxed) & PENDING == 0
    }

    /// True while parked. (For the unit tests and loom models only: the heap reads the
    /// state through `try_unpark`.)
    #[inline]
    #[cfg_attr(not(any(test, feature = "test-internals")), allow(dead_code))]
    pub fn is_parked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & DELAYED != 0
    }

    /// Forgets a spurious [`PENDING`] left by a remote free that read the record after its
    /// span was freed (see the type's doc). Called when the record becomes a new span,
    /// before it is published; a stale free may still raise the flag afterwards, which is
    /// as harmless.
    #[inline]
    pub fn reset(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

impl Default for RemoteFrees {
    fn default() -> Self {
        Self::new()
    }
}

/// A node of an [`IntrusiveStack`].
pub trait Linked {
    /// The node's link field, used only by the stack.
    fn link(&self) -> &AtomicPtr<Self>
    where
        Self: Sized;
}

/// A multi-producer, single-consumer lock-free stack of `T` nodes.
pub struct IntrusiveStack<T: Linked> {
    head: AtomicPtr<T>,
}

impl<T: Linked> IntrusiveStack<T> {
    /// An empty stack.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        IntrusiveStack {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }
    /// An empty stack.
    #[cfg(loom)]
    pub fn new() -> Self {
        IntrusiveStack {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `node`.
    ///
    /// # Safety
    /// `node` is valid, stays valid until popped, and is not in any stack.
    pub unsafe fn push(&self, node: *mut T) {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller guarantees `node` is valid and exclusively ours.
            unsafe { (*node).link().store(old, Ordering::Relaxed) };
            match self
                .head
                .compare_exchange_weak(old, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => old = cur,
            }
        }
    }

    /// True if nothing was pushed since the last [`Self::take_all`] (racy: a hint).
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes the whole stack (newest first). Only the consumer calls it.
    pub fn take_all(&self) -> *mut T {
        if self.head.load(Ordering::Relaxed).is_null() {
            return ptr::null_mut();
        }
        self.head.swap(ptr::null_mut(), Ordering::Acquire)
    }
}

impl<T: Linked> Default for IntrusiveStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn push_take_park() {
        let r = RemoteFrees::new();
        let bits = [AtomicU64::new(0), AtomicU64::new(0)];
        let b = bits.as_ptr();
        assert!(r.try_park());
        assert!(r.is_parked() && r.is_empty());
        // SAFETY: slots 3 and 70 lie in the two-word bitmap.
        unsafe {
            assert_eq!(r.push(b, 3), Push::Woke);
            assert_eq!(r.push(b, 70), Push::Done);
            assert_eq!(r.push(b, 70), Push::Twice);
        }
        assert!(!r.is_parked() && !r.is_empty());
        assert!(!r.try_park() && !r.try_unpark());
        let mut got = Vec::new();
        // SAFETY: `bits` has two words.
        assert!(unsafe { r.take(b, 2, |i, x| got.push((i, x))) });
        assert_eq!(got, vec![(0, 1 << 3), (1, 1 << 6)]);
        assert!(r.is_empty());
        // SAFETY: `bits` has two words.
        assert!(!unsafe { r.take(b, 2, |_, _| panic!("nothing announced")) });
        // A parked span stays parked through take and unparks only by CAS.
        assert!(r.try_park());
        // SAFETY: `bits` has two words.
        assert!(!unsafe { r.take(b, 2, |_, _| panic!("nothing announced")) });
        assert!(r.is_parked());
        assert!(r.try_unpark());
        assert!(!r.is_parked() && !r.try_unpark());
        // A spurious flag (a stale free) is forgotten by `reset`.
        // SAFETY: slot 0 lies in the two-word bitmap.
        unsafe { assert_eq!(r.push(b, 0), Push::Done) };
        bits[0].store(0, Ordering::Relaxed);
        r.reset();
        assert!(r.is_empty() && !r.is_parked());
    }
}
