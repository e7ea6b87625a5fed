//! The two lock-free structures of the heap, kept apart so loom can check them alone.
//!
//! * [`RemoteFreeList`]: per span, the objects freed by threads that do not own the span.
//!   Many producers push with a CAS; the one consumer (the span's owner, or the holder of
//!   its mcentral lock) takes the whole list with one swap, so there is no ABA problem.
//!   Its low bit is the *delayed* flag: an unowned span parked in its mcentral carries it,
//!   and the first remote free that clears it must tell the mcentral ([`IntrusiveStack`]).
//! * [`IntrusiveStack`]: a Treiber stack of nodes with a `next` field, again with one
//!   consumer that takes everything at once.

use crate::harden::{decode_link, encode_link};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use core::ptr;

/// Tag bit of [`RemoteFreeList`]: the span is parked full; the pusher that clears this
/// bit must hand the span to its mcentral.
pub const DELAYED: usize = 1;

/// A lock-free list of remotely freed objects, linked through each object's first word
/// (XOR-encoded with the `encoded-free-lists` feature: [`crate::harden::encode_link`]; the
/// consumer validates every element it takes, see `Span::collect_remote`).
///
/// Invariant: `head & !DELAYED` is null or the first of a null-terminated chain of objects
/// of the span; `DELAYED` is set only while the span is parked: unowned, holding no remote
/// free, and not on its mcentral's pending stack (see `mcentral.rs`). So `head` is either
/// `DELAYED` alone or has the flag clear.
pub struct RemoteFreeList {
    head: AtomicUsize,
}

impl RemoteFreeList {
    /// An empty list.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RemoteFreeList {
            head: AtomicUsize::new(0),
        }
    }
    /// An empty list.
    #[cfg(loom)]
    pub fn new() -> Self {
        RemoteFreeList {
            head: AtomicUsize::new(0),
        }
    }

    /// Pushes `obj`. Returns true if this push cleared the [`DELAYED`] flag, in which case
    /// the caller must hand the span to its mcentral.
    ///
    /// A double free is caught here when it is cheap to: if `obj` is the list's head (the
    /// value the CAS compares against), it was pushed already and not yet taken, so the
    /// process ends with `double free of 0x...` (the message of a local double free). Only
    /// the head *value* is compared, never dereferenced: the elements behind it belong to
    /// the consumer, which may be taking and reusing them concurrently. So a double free
    /// with other remote frees of the span in between is not caught here; the consumer
    /// catches it when it collects the list (`Span::collect_remote` finds the slot's bit
    /// already clear), or the slot is handed out twice if the owner reused it first. The
    /// test runs before `obj`'s link word is written, so the list is never made cyclic.
    ///
    /// # Safety
    /// `obj` is a dead object of at least 8 bytes, 8-aligned, that nobody else will touch
    /// until the consumer takes it.
    #[inline]
    pub unsafe fn push(&self, obj: *mut u8) -> bool {
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // A plain comparison of the value just loaded (or returned by the failed CAS):
            // no extra atomic access, so the loom models see the same interleavings.
            if old & !DELAYED == obj as usize {
                crate::report::double_free(obj as usize);
            }
            // SAFETY: the caller owns `obj` until the CAS below publishes it.
            unsafe { obj.cast::<usize>().write(encode_link(obj, old & !DELAYED)) };
            match self.head.compare_exchange_weak(
                old,
                obj as usize,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return old & DELAYED != 0,
                Err(cur) => old = cur,
            }
        }
    }

    /// Takes every object pushed so far. Only the consumer calls it, on a list that is not
    /// parked (a parked list holds no object, and stays parked).
    #[inline]
    pub fn take_all(&self) -> *mut u8 {
        if self.head.load(Ordering::Relaxed) & !DELAYED == 0 {
            return ptr::null_mut();
        }
        (self.head.swap(0, Ordering::Acquire) & !DELAYED) as *mut u8
    }

    /// Unparks an empty parked list (clears [`DELAYED`]). Fails when a remote free cleared
    /// the flag first: that pusher is handing the span to its mcentral.
    #[inline]
    pub fn try_unpark(&self) -> bool {
        self.head
            .compare_exchange(DELAYED, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Parks the list: sets [`DELAYED`] if it is empty. Fails (returns false) when remote
    /// frees arrived; the consumer then takes them and tries again.
    #[inline]
    pub fn try_park(&self) -> bool {
        self.head
            .compare_exchange(0, DELAYED, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// True if the list holds no object (racy unless called by the consumer).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) & !DELAYED == 0
    }

    /// True while parked.
    #[inline]
    pub fn is_parked(&self) -> bool {
        self.head.load(Ordering::Relaxed) & DELAYED != 0
    }
}

impl Default for RemoteFreeList {
    fn default() -> Self {
        Self::new()
    }
}

/// The next object after `obj` in a chain taken with [`RemoteFreeList::take_all`]
/// (decoded; the caller validates it before use).
///
/// # Safety
/// `obj` is an element of such a chain, not yet reused.
#[inline]
pub unsafe fn chain_next(obj: *mut u8) -> *mut u8 {
    // SAFETY: chain elements store their (encoded) successor in their first word.
    decode_link(obj, unsafe { obj.cast::<usize>().read() }) as *mut u8
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
        let l = RemoteFreeList::new();
        let mut a = [0usize; 2];
        let mut b = [0usize; 2];
        // One raw pointer each, taken once, so no later borrow invalidates them.
        let (pa, pb): (*mut u8, *mut u8) = (a.as_mut_ptr().cast(), b.as_mut_ptr().cast());
        assert!(l.try_park());
        assert!(l.is_parked());
        // SAFETY: `a` and `b` are dead 16-byte objects owned by this test.
        unsafe {
            assert!(l.push(pa));
            assert!(!l.push(pb));
        }
        assert!(!l.try_park());
        let h = l.take_all();
        assert_eq!(h, pb);
        // SAFETY: `h` is a chain of the two objects above.
        unsafe {
            assert_eq!(chain_next(h), pa);
            assert!(chain_next(chain_next(h)).is_null());
        }
        assert!(l.is_empty() && !l.is_parked());
        // A parked, empty list stays parked through take_all and unparks only by CAS.
        assert!(l.try_park());
        assert!(l.take_all().is_null());
        assert!(l.is_parked());
        assert!(l.try_unpark());
        assert!(!l.is_parked() && !l.try_unpark());
    }
}
