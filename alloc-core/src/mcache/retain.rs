//! A thread cache's *retained* spans: the full spans it keeps after allocating them out,
//! oldest first per class, so that the thread's own frees into them stay local (no atomic
//! operation), within a budget for all classes together ([`RETAIN_TOTAL_BYTES`]). A refill
//! takes one up again when frees emptied it a little ([`take_retained`]); a free into a
//! span the thread gave up takes it back ([`adopt_for_free`]); a trim request, thread exit
//! and [`crate::release_memory`] give them all back ([`release_retained`]).
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use super::{current, enough_free, evict, MCache, ACTIVE, EMPTY_CACHE_PTR};
use crate::mcentral::central;
use crate::tls;
use crate::sizeclass::{SizeClass, PAGE_SHIFT};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::{Span, SpanList, NO_WINDOW};
use crate::sync::{AtomicUsize, Ordering};
use core::ptr;

/// Bumped by [`request_trim`]; each cache compares it with its own at every refill.
pub(super) static TRIM_EPOCH: AtomicUsize = AtomicUsize::new(0);

/// Asks every thread to give its retained spans back to the mcentrals at its next refill
/// ([`crate::release_memory`] does, and the scavenger when memory it cannot release stays
/// over its goal). A thread that never allocates again keeps them (at most
/// [`RETAIN_TOTAL_BYTES`]) until it exits: no other thread may touch its spans.
pub fn request_trim() {
    TRIM_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// How many times [`request_trim`] was called (tests use it to tell a trim from a bug).
#[cfg(any(test, feature = "test-internals"))]
pub fn trim_requests() -> usize {
    TRIM_EPOCH.load(Ordering::Relaxed)
}

/// Bytes of full spans a cache may retain in all, in one class or several, so that a
/// thread's cache holds at most this plus one span per size class (67) whatever it does. There
/// is no cap per class: one class can be a thread's whole working set, and a per-class cap
/// sends a batch of large-ish blocks (a few to a span) through the mcentral and the page
/// heap, its objects freed as remote frees. 16 MiB holds the working set of a thread that
/// allocates a few MB of blocks of every class, so that its refills rarely go to the
/// mcentral, at a cost in resident memory that [`request_trim`] and thread exit bound.
pub const RETAIN_TOTAL_BYTES: usize = 16 << 20;
/// Retained spans [`refill`] looks at before asking the mcentral: each probe that finds
/// nothing costs a cache miss, and a span worth taking up is almost always among the
/// oldest two.
const RETAIN_PROBES: usize = 2;

/// The retained spans of `class`.
///
/// # Safety
/// The caller owns `c` and holds no other reference to this list.
#[allow(clippy::mut_from_ref)]
pub(super) unsafe fn retained(c: &MCache, class: SizeClass) -> &mut SpanList {
    // SAFETY: only the owner touches the lists, and the caller holds no other reference.
    unsafe { &mut *c.retained[class.index()].get() }
}

/// Retains `s`, which the cache just stopped allocating from. If the cache's total would
/// pass [`RETAIN_TOTAL_BYTES`], the oldest span of the class goes to the mcentral first,
/// and `s` too if that is not enough.
///
/// # Safety
/// The caller owns `c` and `s` (in use, of `class`, no longer in `alloc`, window committed).
pub(super) unsafe fn retire(c: &MCache, class: SizeClass, s: *mut Span) -> bool {
    let np = class.npages();
    let max_pages = RETAIN_TOTAL_BYTES >> PAGE_SHIFT;
    // SAFETY: the caller owns `c` and `s`, an in-use span of `class` out of `alloc`
    // with its window committed (# Safety); the retained list holds only `c`'s spans.
    unsafe {
        let list = retained(c, class);
        if c.retained_pages.get() + np > max_pages {
            let old = list.pop_front();
            if !old.is_null() {
                c.retained_pages.set(c.retained_pages.get() - np);
                (*old).settle_retained();
                evict(c, class, old);
            }
            if c.retained_pages.get() + np > max_pages {
                evict(c, class, s);
                return false;
            }
        }
        (*s).retain();
        list.push_back(s);
        c.retained_pages.set(c.retained_pages.get() + np);
    }
    true
}

/// Whether [`retire`] would keep a span of `class` now: the budget has room for it, or
/// the class has a retained span to send to the mcentral in its place.
///
/// # Safety
/// The caller owns `c`.
unsafe fn retire_keeps(c: &MCache, class: SizeClass) -> bool {
    let np = class.npages();
    // SAFETY: the caller owns `c` (# Safety), so its counters are ours to read.
    c.retained_pages.get() + np <= RETAIN_TOTAL_BYTES >> PAGE_SHIFT
        || !unsafe { retained(c, class) }.is_empty()
}

/// Takes the parked span `s` back into the calling thread's cache, as a retained span, if
/// that cache was the last to give it up ([`Span::last_owner`]); true if the thread now
/// owns `s`, whose free may then be a local one.
///
/// A thread that fills more than [`RETAIN_TOTAL_BYTES`] of spans and then frees their
/// objects (a program building a big structure and tearing it down) would otherwise free
/// into spans it gave to the mcentrals as remote frees: a CAS per object and a settle per
/// span under the mcentral's lock, 95 instructions more per free in the suite's `release`
/// workload. mimalloc keeps such pages with their thread for the same reason. Spans another
/// thread filled stay remote frees: a consumer thread would otherwise keep the spans of
/// its producer, which it never allocates from. Nor is a span taken back that `retire`
/// would send straight back to the mcentral (the budget spent by other classes): that
/// would cost two lock round trips and keep nothing.
///
/// # Safety
/// `s` is an in-use small span holding an object the caller is freeing; the caller owns
/// no span list of this thread's cache (it is not inside an allocation).
#[cold]
#[inline(never)]
pub unsafe fn adopt_for_free(s: *mut Span) -> bool {
    let c = current();
    // SAFETY: `s` is an in-use span holding the object being freed (# Safety), so a live
    // record.
    let sr = unsafe { &*s };
    if c == EMPTY_CACHE_PTR || sr.last_owner.load(Ordering::Relaxed) != c {
        return false;
    }
    let class = sr.spanclass.get().size_class();
    // SAFETY: `c` is the calling thread's own cache (not the empty one), which no one
    // else touches; `s` as the caller says. Adopted, `s` is owned by `c`, in no list, with
    // its window committed: what `retire` takes.
    unsafe {
        if !retire_keeps(&*c, class) || !central(class).adopt_parked(s, c) {
            return false;
        }
        let kept = retire(&*c, class, s);
        crate::check!(kept, "adopted span not retained", s as usize);
        if kept {
            ADOPTED.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }
}

/// Spans taken back by [`adopt_for_free`], for [`crate::stats()`].
pub static ADOPTED: AtomicUsize = AtomicUsize::new(0);

/// A retained span with a free slot loaded in its window, taken out of the list; null if
/// none of the oldest [`RETAIN_PROBES`] qualifies (those go to the back, so that the next
/// refill looks at others). Like [`refill`]'s own test, a span qualifies with 1/16 of its
/// slots free, remote frees waiting on it included, so a nearly full one is not taken up
/// for a slot or two at a time. The probe reads the list in place; a failed one moves the
/// probed spans to the back in one step rather than one by one.
///
/// # Safety
/// The caller owns `c`.
pub(super) unsafe fn take_retained(c: &MCache, class: SizeClass) -> *mut Span {
    // SAFETY: the caller owns `c` (# Safety), so its retained lists are ours, and their
    // members are in-use spans `c` owns (`MCache` invariants).
    unsafe {
        let list = retained(c, class);
        let mut s = list.front();
        let mut last = ptr::null_mut();
        for _ in 0..list.len().min(RETAIN_PROBES) {
            let sr = &*s;
            let nelems = sr.nelems.get();
            let enough = enough_free(nelems);
            let mut free = sr.retained_free();
            let mut settled = false;
            if free < enough && !sr.xfree.is_empty() {
                // Count the remote frees in (they are taken up now or later anyway): a
                // span with a remote free or two is not worth a refill.
                sr.settle_retained();
                settled = true;
                sr.collect_remote();
                free = nelems - sr.alloc_count.get();
            }
            if free >= enough {
                // A single-window span that kept its window (and had no remote frees
                // counted in) is ready as it is: the window holds exactly its free slots.
                // Any other is loaded from its bitmap, remote frees applied first.
                let ready = !settled && sr.window() != NO_WINDOW;
                if !ready {
                    sr.set_window(0);
                    sr.collect_remote();
                }
                if ready || sr.load_window_from(0) {
                    sr.check_invariants();
                    list.remove(s);
                    c.retained_pages
                        .set(c.retained_pages.get() - class.npages());
                    return s;
                }
                settled = true;
            }
            if settled {
                sr.retain();
            }
            last = s;
            s = list.next(s);
        }
        if !last.is_null() {
            list.rotate_through(last);
        }
    }
    ptr::null_mut()
}

/// Gives every retained span of `c` back to the mcentrals ([`crate::release_memory`],
/// thread exit).
///
/// # Safety
/// The caller owns `c`, and nobody allocates from it concurrently.
pub unsafe fn release_retained(c: &MCache) {
    for class in 1..NUM_SIZE_CLASSES {
        let class = SizeClass(class as u8);
        // SAFETY: the caller owns `c` and nobody allocates from it (# Safety), so its
        // retained lists and their spans are ours.
        unsafe {
            let list = retained(c, class);
            loop {
                let s = list.pop_front();
                if s.is_null() {
                    break;
                }
                c.retained_pages
                    .set(c.retained_pages.get() - class.npages());
                (*s).settle_retained();
                evict(c, class, s);
            }
        }
    }
}

/// Gives the calling thread's retained spans back to the mcentrals, so that
/// [`crate::release_memory`] can return their pages if they are empty.
pub fn release_own_retained() {
    if tls::state() == ACTIVE {
        // SAFETY: an active thread owns its cache and is not inside an allocation.
        unsafe { release_retained(&*current()) };
    }
}

/// Bytes in the spans the calling thread's cache retains (0 for a thread without one).
#[cfg(any(test, feature = "test-internals"))]
pub fn own_retained_bytes() -> usize {
    if tls::state() == ACTIVE {
        // SAFETY: an active thread owns its cache.
        unsafe { retained_pages(&*current()) << PAGE_SHIFT }
    } else {
        0
    }
}

/// Pages of the spans `c` retains (its own count, checked against the lists by
/// [`crate::check::check_whole_heap`]).
///
/// # Safety
/// The caller owns `c`.
pub(crate) unsafe fn retained_pages(c: &MCache) -> usize {
    c.retained_pages.get()
}

/// Calls `f` on every span `c` retains.
///
/// # Safety
/// The caller owns `c`; `f` does not change the lists.
pub(crate) unsafe fn for_each_retained(c: &MCache, mut f: impl FnMut(SizeClass, *mut Span)) {
    for class in 0..NUM_SIZE_CLASSES {
        let class = SizeClass(class as u8);
        // SAFETY: the caller owns `c` and `f` does not change the lists (# Safety).
        unsafe { retained(c, class) }.for_each(|s| f(class, s));
    }
}
