//! `mcentral`: the spans of one size class that no thread cache owns (Go's `mcentral.go`,
//! which has one per span class: `malloc`'s spans are all noscan, `SpanClass::malloc`).
//!
//! * `partial`: unowned spans with free slots, FIFO, under the mcentral's own lock, so
//!   contention is limited to one size class.
//! * `pending`: a lock-free stack of spans that received a remote free since they were
//!   parked. The next refill (or the scavenger's [`MCentral::reclaim`]) takes their frees,
//!   frees the empty ones to the page heap and lists the others as partial.
//!
//! The parking protocol: every unowned span is *parked*: its remote-free flags carry
//! [`DELAYED`](crate::remote::DELAYED), and the one thread whose free clears it pushes the
//! span onto `pending`. A full unowned span is in no list at all. So a span whose
//! objects were all freed by other threads is always found, without scanning the lists.
//!
//! * parked and listed: unowned, `DELAYED` set, in `partial` iff not full, not on `pending`;
//! * notified: unowned, `DELAYED` clear, on `pending` (or about to be) exactly once;
//! * owned: `DELAYED` clear, in no list. A span leaves `partial` for a cache only through
//!   [`RemoteFrees::try_unpark`](crate::remote::RemoteFrees::try_unpark), which fails
//!   for a notified span.
//!
//! A notified span may have no remote free to take: a free that read the record after its
//! span was freed may wake the span the record describes now (`RemoteFrees`' doc). Its
//! handling then finds nothing new and parks it again.
//!
//! While an unowned span sits in `partial` or is being handled, the holder of this lock is
//! its owner: it alone may touch the span's bitmap.
//!
//! Layer: central lists (the crate root's module map, `lib.rs`).

use crate::lock::SpinLock;
use crate::mcache::MCache;
use crate::mheap::HEAP;
use crate::remote::IntrusiveStack;
use crate::sizeclass::{SizeClass, SpanClass, PAGE_SHIFT};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::{Span, SpanList};
use crate::sync::{AtomicUsize, Ordering};
use core::ptr;
use crossbeam_utils::CachePadded;

/// The central list of one size class.
///
/// Statistics, as Go counts them (`heapStats`): a span's slots count as allocated while a
/// cache owns it, so the fast paths count nothing:
/// `objects == sum(allocated() of unowned in-use spans) + sum(nelems of owned spans)`.
pub struct MCentral {
    /// Unowned spans with free slots.
    pub partial: SpinLock<SpanList>,
    /// Parked-full spans that received a remote free.
    pub pending: IntrusiveStack<Span>,
    /// In-use spans of this class.
    pub spans: AtomicUsize,
    /// Allocated objects, counting every slot of a cached span.
    pub objects: AtomicUsize,
    /// Empty spans kept in `partial` rather than freed to the page heap (changed under
    /// the partial lock; see [`MCentral::settle`]).
    kept_empty: AtomicUsize,
}

/// Bytes of empty spans one mcentral keeps for reuse (at least [`KEEP_EMPTY_MIN`] spans).
pub const KEEP_EMPTY_BYTES: usize = 1 << 20;
/// Spans an mcentral may keep empty whatever their size.
pub const KEEP_EMPTY_MIN: usize = 4;
/// Bytes of empty spans all mcentrals together keep.
pub const KEEP_EMPTY_TOTAL_BYTES: usize = 8 << 20;
/// Bytes of empty spans kept now, all mcentrals together.
static KEPT_EMPTY_BYTES: AtomicUsize = AtomicUsize::new(0);

impl MCentral {
    const fn new() -> Self {
        MCentral {
            partial: SpinLock::new(SpanList::new()),
            pending: IntrusiveStack::new(),
            spans: AtomicUsize::new(0),
            objects: AtomicUsize::new(0),
            kept_empty: AtomicUsize::new(0),
        }
    }

    /// Counts a span leaving the class for the page heap.
    fn count_freed_span(&self) {
        self.spans.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts `n` objects returned by frees collected on an unowned span.
    fn count_collected(&self, before: u32, after: u32) {
        self.objects
            .fetch_sub((before - after) as usize, Ordering::Relaxed);
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const NEW_CENTRAL: CachePadded<MCentral> = CachePadded::new(MCentral::new());

/// One mcentral per size class, each on its own cache lines.
pub static CENTRAL: [CachePadded<MCentral>; NUM_SIZE_CLASSES] = [NEW_CENTRAL; NUM_SIZE_CLASSES];

/// The mcentral of `class`.
#[inline]
pub fn central(class: SizeClass) -> &'static MCentral {
    &CENTRAL[class.index()]
}

impl MCentral {
    /// Hands `cache` a span of `class` with at least one free slot loaded in its
    /// window: a partial span, or a fresh one from the page heap. Null when out of memory.
    pub fn cache_span(&self, class: SizeClass, cache: *mut MCache) -> *mut Span {
        let s = {
            let mut partial = self.partial.lock();
            self.take_pending(&mut partial);
            self.take_partial(&mut partial)
        };
        let s = if s.is_null() {
            crate::scavenge::before_grow();
            let s = HEAP
                .lock()
                .alloc_span(class.npages(), 0, SpanClass::malloc(class));
            if s.is_null() {
                return s;
            }
            self.spans.fetch_add(1, Ordering::Relaxed);
            self.objects.fetch_add(class.nelems(), Ordering::Relaxed);
            s
        } else {
            // SAFETY: the span was unowned and unparked by `take_partial`: ours alone; its
            // window is committed.
            unsafe {
                let sr = &*s;
                sr.collect_remote();
                let n = sr.allocated();
                self.objects
                    .fetch_add((sr.nelems.get() - n) as usize, Ordering::Relaxed);
                let found = sr.load_window_from(0);
                crate::check!(found, "span in mcentral without a free slot", s as usize);
            }
            s
        };
        // SAFETY: `s` is a valid in-use record that we now own.
        unsafe { (*s).owner.store(cache, Ordering::Relaxed) };
        s
    }

    /// Takes the first partial span that can be unparked. A span whose park flag a
    /// remote free just cleared is on its way to `pending` and stays for [`Self::take_pending`].
    fn take_partial(&self, partial: &mut SpanList) -> *mut Span {
        for _ in 0..partial.len() {
            let s = partial.pop_front();
            // SAFETY: members of `partial` are valid unowned records, ours under the lock.
            unsafe {
                if (*s).xfree.try_unpark() {
                    (*s).in_partial.set(false);
                    if (*s).allocated() == 0 {
                        self.unkeep(s);
                    }
                    return s;
                }
                partial.push_back(s);
            }
        }
        ptr::null_mut()
    }

    /// Handles the spans remote frees have notified: takes their frees, then frees the
    /// empty ones to the page heap (Go's sweeper does likewise), lists the others as
    /// partial, and parks each again. Returns how many spans went to the page heap.
    fn take_pending(&self, partial: &mut SpanList) -> usize {
        let mut freed = 0;
        let mut p = self.pending.take_all();
        while !p.is_null() {
            // SAFETY: a notified span is unowned and on no other thread's hands (see the
            // parking protocol in the module header); ours under the partial lock. Read
            // the link first.
            unsafe {
                let next = (*p).pending_next.load(Ordering::Relaxed);
                if self.settle(partial, p) {
                    freed += 1;
                }
                p = next;
            }
        }
        freed
    }

    /// Takes an unowned, unparked span's remote frees and puts it where it belongs: the
    /// page heap if empty, else `partial` (if not full) and parked. Returns whether it was
    /// freed to the page heap.
    ///
    /// An empty span is kept in `partial` instead, parked like the others, while the
    /// mcentral keeps fewer than [`KEEP_EMPTY_BYTES`] of them (at least [`KEEP_EMPTY_MIN`])
    /// and all mcentrals fewer than [`KEEP_EMPTY_TOTAL_BYTES`]: a program that frees a
    /// batch and allocates the next one reuses it without the page heap's lock, coalescing
    /// and span set-up, a large share of such a program's instructions. Handing
    /// one to a cache counts it out; [`Self::reclaim`] (the scavenger, every
    /// [`crate::scavenge::RECLAIM_EVERY_NS`], and [`crate::release_memory`]) frees them.
    ///
    /// # Safety
    /// `s` is an unowned in-use span of this class, not parked, in `partial` iff its
    /// `in_partial` flag says so; the caller holds the partial lock.
    unsafe fn settle(&self, partial: &mut SpanList, s: *mut Span) -> bool {
        // SAFETY: `s` is an unowned, unparked in-use span of this class and the caller holds
        // the partial lock (# Safety), so the span is ours to change.
        unsafe {
            let sr = &*s;
            loop {
                let freed = sr.collect_remote();
                let n = sr.allocated();
                let before = n + freed;
                self.count_collected(before, n);
                if n == 0 && !sr.in_partial.get() && self.keep(s) {
                    // Kept for reuse: listed and parked below like any partial span (it
                    // can receive no remote free: it holds no object).
                } else if n == 0 {
                    if sr.in_partial.get() {
                        if before == 0 {
                            // A kept empty span, woken by a stale remote free.
                            self.unkeep(s);
                        }
                        partial.remove(s);
                        sr.in_partial.set(false);
                    }
                    self.count_freed_span();
                    HEAP.lock().free_span(s);
                    return true;
                }
                if n < sr.nelems.get() && !sr.in_partial.get() {
                    partial.push_back(s);
                    sr.in_partial.set(true);
                }
                if sr.xfree.try_park() {
                    return false;
                }
                // More remote frees arrived: take them too.
            }
        }
    }

    /// Hands `cache` the parked span `s` (a free by the thread of the cache that last gave
    /// it up found it so): out of `partial` if listed there, unparked, owned by `cache`,
    /// its window committed, as [`Self::uncache_span`] left it.
    /// False, and nothing changed, if `s` is not parked: a cache owns it, a remote free
    /// has notified it, or it is on its way into or out of this mcentral.
    ///
    /// # Safety
    /// `s` is an in-use small span of this class holding an object the caller is freeing
    /// (so it cannot go to the page heap meanwhile).
    pub unsafe fn adopt_parked(&self, s: *mut Span, cache: *mut MCache) -> bool {
        let mut partial = self.partial.lock();
        // SAFETY: `s` holds an object being freed, so it stays an in-use record (# Safety);
        // under the lock a parked span is the lock holder's (see the parking protocol
        // above), and unparking it makes it ours alone.
        unsafe {
            let sr = &*s;
            if !sr.owner.load(Ordering::Relaxed).is_null() || !sr.xfree.try_unpark() {
                return false;
            }
            if sr.in_partial.get() {
                partial.remove(s);
                sr.in_partial.set(false);
            }
            drop(partial);
            // Its free slots count as allocated while a cache owns it.
            self.objects.fetch_add(
                (sr.nelems.get() - sr.allocated()) as usize,
                Ordering::Relaxed,
            );
            sr.owner.store(cache, Ordering::Relaxed);
        }
        true
    }

    /// Takes back a span its cache no longer allocates from. The window must be
    /// committed.
    ///
    /// # Safety
    /// `s` is an in-use small span owned by the caller's cache, which forgets it.
    pub unsafe fn uncache_span(&self, s: *mut Span) {
        // SAFETY: `s` is an in-use span our cache owns (# Safety), so ours; it is not
        // parked (owned spans never are: `RemoteFrees` invariant 3).
        unsafe {
            let sr = &*s;
            sr.owner.store(ptr::null_mut(), Ordering::Relaxed);
            // Its slots counted as allocated while cached; from now on only the real ones.
            self.count_collected(sr.nelems.get(), sr.allocated());
            let mut partial = self.partial.lock();
            self.settle(&mut partial, s);
        }
    }

    /// Handles notified spans now, so that those whose objects were all freed by other
    /// threads go back to the page heap (the scavenger calls this). Returns how many did.
    pub fn reclaim(&self) -> usize {
        if self.pending.is_empty() && self.kept_empty.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut partial = self.partial.lock();
        self.take_pending(&mut partial) + self.free_kept(&mut partial)
    }

    /// Empty spans kept in `partial` now (exact under the partial lock).
    pub fn kept_empty(&self) -> usize {
        self.kept_empty.load(Ordering::Relaxed)
    }

    /// Keeps the empty span `s` for reuse if under the bounds; the caller then lists it
    /// in `partial` (an empty span is not full). Called with the partial lock held.
    fn keep(&self, s: *mut Span) -> bool {
        // SAFETY: `s` is a valid record the caller handles under the lock.
        let bytes = unsafe { (*s).npages.get() } << PAGE_SHIFT;
        let cap = (KEEP_EMPTY_BYTES / bytes).max(KEEP_EMPTY_MIN);
        if self.kept_empty.load(Ordering::Relaxed) >= cap
            || KEPT_EMPTY_BYTES.load(Ordering::Relaxed) + bytes > KEEP_EMPTY_TOTAL_BYTES
        {
            return false;
        }
        self.kept_empty.fetch_add(1, Ordering::Relaxed);
        KEPT_EMPTY_BYTES.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    /// Counts a kept empty span out (it leaves `partial`). Under the partial lock.
    ///
    /// # Safety
    /// `s` is a valid record that [`Self::keep`] counted in.
    unsafe fn unkeep(&self, s: *mut Span) {
        // SAFETY: `s` is a valid record (# Safety).
        let bytes = unsafe { (*s).npages.get() } << PAGE_SHIFT;
        self.kept_empty.fetch_sub(1, Ordering::Relaxed);
        KEPT_EMPTY_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Frees every kept empty span to the page heap. Returns how many.
    fn free_kept(&self, partial: &mut SpanList) -> usize {
        let mut freed = 0;
        for _ in 0..partial.len() {
            if self.kept_empty.load(Ordering::Relaxed) == 0 {
                break;
            }
            let s = partial.pop_front();
            // SAFETY: members of `partial` are valid unowned records, ours under the lock;
            // an empty one holds no object, so no remote free can notify it meanwhile.
            unsafe {
                let sr = &*s;
                if sr.allocated() == 0 && sr.xfree.try_unpark() {
                    sr.in_partial.set(false);
                    self.unkeep(s);
                    self.count_freed_span();
                    HEAP.lock().free_span(s);
                    freed += 1;
                } else {
                    partial.push_back(s);
                }
            }
        }
        freed
    }
}
