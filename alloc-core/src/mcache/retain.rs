//! A thread cache's *retained* spans: the full spans it keeps after allocating them out,
//! oldest first per class, so that the thread's own frees into them stay local (no atomic
//! operation), within a budget for all classes together ([`RETAIN_TOTAL_BYTES`]). A refill
//! takes one up again when frees emptied it a little ([`take_retained`]); a free into a
//! span the thread gave up takes it back ([`adopt_for_free`]); a trim request, thread exit
//! and [`crate::release_memory`] give them all back ([`release_retained`]).
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use super::{current, evict, MCache, ACTIVE, EMPTY_CACHE_PTR, ENOUGH_BY_CLASS};
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
/// Retained spans a refill looks at when the class has room to spare but none of the oldest
/// [`RETAIN_PROBES`] has enough free slots ([`take_retained`]).
const DEEP_PROBES: usize = 8;

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

/// Notes `free`, the free slots a refill found in the oldest retained span of `class`, in
/// the class's slack ([`MCache`]'s `slack`: a moving average over the last eight or so
/// refills, in sixteenths of a slot), and returns it.
///
/// The oldest span is the one the thread's frees have had longest to empty, so its free
/// slots say whether the class's retained spans have room: a refill that finds too few in
/// the spans it probes takes a fresh span only when the slack is low too ([`take_retained`]).
/// Noted once per refill that probes the list.
///
/// # Safety
/// The caller owns `c`.
#[inline(always)]
pub(super) unsafe fn note_slack(c: &MCache, class: SizeClass, free: u32) -> u32 {
    let cell = &c.slack[class.index()];
    let old = cell.get() as i32;
    // A span has at most 1024 slots, so 16 * free fits in a u16, and so does every
    // average of such samples.
    let sample = free as i32 * 16;
    cell.set((old + ((sample - old) >> 3)) as u16);
    free
}

/// A retained span with a free slot loaded in its window, taken out of the list; null if
/// the class's retained spans are short of room, and a fresh span is wanted.
///
/// A span qualifies as [`refill`]'s own test says, with 1/16 of its slots free (remote
/// frees waiting on it included), so that a nearly full one is not taken up for a slot or
/// two at a time; the oldest [`RETAIN_PROBES`] are looked at. When none qualifies, the
/// class's slack decides ([`note_slack`]):
/// - the oldest spans have had at least half that many free slots on average: this refill
///   found a dip, not a shortage. It looks further, up to [`DEEP_PROBES`] spans, and takes
///   the first that qualifies, else the one with the most free slots, if any has one;
/// - otherwise the spans are short of room, and null sends the refill to the mcentral.
///
/// A fresh span stays retained for as long as the thread runs, so taking one at every dip
/// would ratchet the class's spans up until dips became rare: with random frees into spans
/// of eight slots, 38% of the slots would stay free, where 16% do (the test
/// `random_replacement_keeps_retained_spans_mostly_full`; `parked` in the bench suite).
///
/// The probe reads the list in place; the probed spans that are not taken go to the back
/// in one step rather than one by one, so that the next refill looks at others.
///
/// # Safety
/// The caller owns `c`; `front_noted`: the caller noted the oldest span's free slots
/// already ([`refill`]'s fast path).
pub(super) unsafe fn take_retained(c: &MCache, class: SizeClass, front_noted: bool) -> *mut Span {
    // SAFETY: the caller owns `c` (# Safety), so its retained lists are ours, and their
    // members are in-use spans `c` owns (`MCache` invariants), in the retained state.
    unsafe {
        let list = retained(c, class);
        let enough = ENOUGH_BY_CLASS[class.index()] as u32;
        let dip = c.slack[class.index()].get() as u32 >= enough * 8;
        let (mut last, mut prev_of_best): (*mut Span, *mut Span) = (ptr::null_mut(), ptr::null_mut());
        let (mut best, mut best_free): (*mut Span, u32) = (ptr::null_mut(), 0);
        let mut s = list.front();
        let mut n = 0;
        while !s.is_null() && (n < RETAIN_PROBES || dip && n < DEEP_PROBES) {
            let mut free = free_with_remote(&*s, enough);
            if n == 0 && !front_noted {
                free = note_slack(c, class, free);
            }
            if free >= enough || dip && free > best_free {
                (best, best_free, prev_of_best) = (s, free, last);
            }
            last = s;
            n += 1;
            if free >= enough {
                break;
            }
            s = list.next(s);
        }
        if !best.is_null() && !load_for_refill(&*best) {
            best = ptr::null_mut();
        }
        // The probed spans not taken go to the back, in one step, so that the next refill
        // looks at others.
        if !best.is_null() {
            list.remove(best);
            c.retained_pages
                .set(c.retained_pages.get() - class.npages());
            if last == best {
                last = prev_of_best;
            }
        }
        if !last.is_null() {
            list.rotate_through(last);
        }
        best
    }
}

/// The free slots of the retained span `s`, with the remote frees waiting on it counted in
/// (collected now: they are taken up now or later anyway) when the span's own are fewer than
/// `enough`, so that a span with a remote free or two is not passed over.
///
/// # Safety
/// The caller owns `s`, which is in the retained state, and stays so.
unsafe fn free_with_remote(s: &Span, enough: u32) -> u32 {
    // SAFETY: the caller owns `s`, a retained span (# Safety).
    unsafe {
        let free = s.retained_free();
        if free >= enough || s.xfree.is_empty() {
            return free;
        }
        s.settle_retained();
        s.collect_remote();
        let free = s.nelems.get() - s.allocated();
        s.retain();
        free
    }
}

/// Makes the retained span `s` ready to allocate from: a window with a free slot loaded.
/// A span whose loaded window has free slots is ready as it is (a single-window span's
/// window holds exactly its free slots: [`Span::retain`]); any other is loaded from its
/// bitmap, remote frees applied first. False, with `s` left retained, if it has no free slot.
///
/// # Safety
/// The caller owns `s`, which is in the retained state.
unsafe fn load_for_refill(s: &Span) -> bool {
    // SAFETY: the caller owns `s`, a retained span (# Safety).
    unsafe {
        if s.window() != NO_WINDOW && s.window_free() != 0 {
            s.check_invariants();
            return true;
        }
        s.settle_retained();
        s.set_window(0);
        s.collect_remote();
        if s.load_window_from(0) {
            s.check_invariants();
            return true;
        }
        s.retain();
        false
    }
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
