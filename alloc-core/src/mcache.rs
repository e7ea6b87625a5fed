//! `mcache`: the per-thread cache (Go's `mcache.go`).
//!
//! Each thread allocates from its own mcache: one span per span class, from which
//! [`Span::next_free_fast`] takes slots with no lock and no atomic read-modify-write, and
//! into which the same thread frees without either. When a span's slots run out,
//! [`refill`] first looks further in the span, then takes the remote frees other threads
//! left on it, and only then swaps it for another span from the class's mcentral.
//!
//! A span whose slots ran out stays the thread's too, on a per-class list of *retained*
//! spans, so that the thread's frees into it need no atomic operation either; see
//! [`refill`].
//!
//! Thread life cycle:
//! * the thread-local slot is const-initialised with no destructor, so it is a plain TLS
//!   word usable before any constructor ran (a `thread_local!` with a destructor, inside a
//!   preloaded library, registers it through glibc's `__cxa_thread_atexit_impl`, which
//!   calls `calloc`, and recurses); it starts pointing at [`EMPTY_CACHE`], whose
//!   spans are all the static empty span, so the fast path needs no null check;
//! * the first slow-path allocation gives the thread a real mcache and registers it with a
//!   pthread key whose destructor flushes it when the thread exits (threads created by C
//!   included);
//! * after the flush the thread is *dead*: it frees through the remote path and allocates
//!   through the shared, locked orphan cache; it never gets a cache again. Threads whose
//!   cache is being set up, or that run before the global initialisation finished, use the
//!   orphan cache too.

use crate::arena::ArenaHint;
use crate::fixalloc::FixAlloc;
use crate::lock::SpinLock;
use crate::mcentral::{central, SpanList};
use crate::sizeclass::{SizeClass, SpanClass, NUM_SPAN_CLASSES, PAGE_SHIFT};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::{Span, NO_WINDOW};
use crate::sync::{AtomicUsize, Ordering};
use core::cell::{Cell, UnsafeCell};
use core::ptr;

/// A thread's cache of spans.
///
/// Invariants: `alloc[spc]` is [`EMPTY_SPAN`] or an in-use span of class `spc` whose
/// `owner` is this cache; entries of size class 0 are always [`EMPTY_SPAN`]. Every span of
/// `retained[spc]` is an in-use span of class `spc` owned by this cache, in the retained
/// state (`Span::retain`: a single-window span's one window loaded; a larger span with no
/// window, or with one loaded for frees by `Span::load_window_for_frees`), in no other
/// list, and not `alloc[spc]`; `free_hint[spc]` is [`EMPTY_SPAN`], `alloc[spc]` or one of
/// `retained[spc]`; `retained_pages` is the sum of the pages of all retained spans, at most
/// [`RETAIN_TOTAL_BYTES`] worth.
#[repr(C, align(64))]
pub struct MCache {
    /// Bytes left before this thread's next heap-profile sample (feature `profile`,
    /// `profile::sample`): the allocation fast path subtracts each size from it, so it
    /// comes first, on the line the fast path reads. 0 in [`EMPTY_CACHE`].
    #[cfg(feature = "profile")]
    pub next_sample: Cell<usize>,
    /// The arena C's `free` last found a span of this cache in (a hint for the arena map:
    /// [`crate::malloc::free_fast`]). First, on the line of the first span classes. Never
    /// set in [`EMPTY_CACHE`].
    pub arena_hint: ArenaHint,
    /// The span each span class allocates from (hot).
    pub alloc: [Cell<*mut Span>; NUM_SPAN_CLASSES],
    /// Links in the pool's active or free list.
    next: Cell<*mut MCache>,
    prev: Cell<*mut MCache>,
    /// Times this cache swapped a span with its mcentral.
    pub refills: Cell<usize>,
    /// Per span class, the span the thread's layout-aware frees of that class last went
    /// to: the first place [`crate::malloc::free_sized`] looks (its window, then the whole
    /// span), before the class's `alloc` span and the arena map. `alloc[spc]` after every
    /// refill, so that a free of an object just allocated finds its window here; a
    /// retained span while frees run through it (a batch freed in allocation order, one
    /// retained span after another). C's `free_fast` does not use it (see there).
    /// Invariant: [`EMPTY_SPAN`] or a span of the class this cache owns; a span leaving the
    /// cache (`uncache`) clears its entry, so the hint never names a record that another
    /// thread may be reusing.
    pub free_hint: [Cell<*mut Span>; NUM_SPAN_CLASSES],
    /// Spans this cache filled and still owns, oldest first (see [`refill`]), so that the
    /// thread's frees into them stay local. Only the owning thread touches the lists.
    retained: [UnsafeCell<SpanList>; NUM_SPAN_CLASSES],
    /// Pages of all retained spans (at most [`RETAIN_TOTAL_BYTES`]).
    retained_pages: Cell<usize>,
    /// The [`request_trim`] epoch this cache last answered.
    trim_epoch: Cell<usize>,
    /// The rest of the thread's sampling state (feature `profile`).
    #[cfg(feature = "profile")]
    pub prof: crate::profile::ThreadState,
}

/// A `Sync` wrapper for the static empty span and cache. They are never written: every
/// allocation attempt on them fails (`alloc_cache == 0`) and no span is owned by them.
#[repr(transparent)]
pub struct Static<T>(T);
// SAFETY: the wrapped values are never mutated (see above).
unsafe impl<T> Sync for Static<T> {}

/// The span every empty cache slot points at.
pub static EMPTY_SPAN: Static<Span> = Static(Span::empty());
pub(crate) const EMPTY_SPAN_PTR: *mut Span =
    &EMPTY_SPAN as *const Static<Span> as *const Span as *mut Span;

/// The cache of threads that have none (new, initialising or dead threads).
pub static EMPTY_CACHE: Static<MCache> = Static(MCache::empty());
/// Pointer to [`EMPTY_CACHE`].
pub const EMPTY_CACHE_PTR: *mut MCache =
    &EMPTY_CACHE as *const Static<MCache> as *const MCache as *mut MCache;

impl MCache {
    const fn empty() -> MCache {
        MCache {
            #[cfg(feature = "profile")]
            next_sample: Cell::new(0),
            arena_hint: ArenaHint::new(),
            alloc: [const { Cell::new(EMPTY_SPAN_PTR) }; NUM_SPAN_CLASSES],
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            refills: Cell::new(0),
            free_hint: [const { Cell::new(EMPTY_SPAN_PTR) }; NUM_SPAN_CLASSES],
            retained: [const { UnsafeCell::new(SpanList::new()) }; NUM_SPAN_CLASSES],
            retained_pages: Cell::new(0),
            trim_epoch: Cell::new(0),
            #[cfg(feature = "profile")]
            prof: crate::profile::ThreadState::new(),
        }
    }

    /// The span of class `spc`.
    #[inline(always)]
    pub fn span(&self, spc: usize) -> &Span {
        debug_assert!(spc < NUM_SPAN_CLASSES);
        // SAFETY: `spc < NUM_SPAN_CLASSES` (span classes come from the size-class table);
        // entries always point to a live span record.
        unsafe { &*self.alloc.get_unchecked(spc).get() }
    }

    /// The span class `spc`'s frees went to last (`free_hint[spc]`).
    #[inline(always)]
    pub fn free_span(&self, spc: usize) -> &Span {
        debug_assert!(spc < NUM_SPAN_CLASSES);
        // SAFETY: as in `span`.
        unsafe { &*self.free_hint.get_unchecked(spc).get() }
    }

    /// Makes `s`, a span of class `spc` this cache allocates from, the class's free hint.
    #[inline(always)]
    fn set_alloc(&self, spc: SpanClass, s: *mut Span) {
        self.alloc[spc.index()].set(s);
        self.free_hint[spc.index()].set(s);
    }
}

/// Bytes of one cache record.
pub const MCACHE_BYTES: usize = core::mem::size_of::<MCache>();
const _: () = assert!(MCACHE_BYTES % 64 == 0);

// ---- thread-local state ----

/// Thread has not asked for a cache yet (the slot's initial value: see `tls.rs`).
const NEW: u8 = 0;
/// Thread is getting its cache (re-entrant allocations go to the orphan cache).
const INITIALIZING: u8 = 1;
/// Thread owns `cache`.
const ACTIVE: u8 = 2;
/// Thread's cache was flushed at exit.
const DEAD: u8 = 3;

// The thread's cache pointer and state live in `tls.rs` (initial-exec TLS with the
// `initial-exec-tls` feature, a const `thread_local!` otherwise).
use crate::tls;

/// The calling thread's cache ([`EMPTY_CACHE`] if it has none).
#[inline(always)]
pub fn current() -> *mut MCache {
    tls::cache()
}

/// The calling thread's real cache, setting it up on first use; `None` if the thread must
/// use the orphan cache (dead, initialising, or the heap is not initialised yet).
#[cold]
pub fn current_or_init() -> Option<*mut MCache> {
    let state = tls::state();
    match state {
        ACTIVE => Some(current()),
        NEW => {
            if !crate::runtime::ensure_init() {
                return None;
            }
            tls::set_state(INITIALIZING);
            let c = POOL.lock().get();
            if c.is_null() {
                tls::set_state(NEW);
                return None;
            }
            crate::runtime::register_thread(c);
            tls::set_cache(c);
            tls::set_state(ACTIVE);
            Some(c)
        }
        _ => None,
    }
}

/// Called by the pthread-key destructor when a thread exits.
///
/// # Safety
/// `c` is the calling thread's cache, registered by [`current_or_init`].
pub unsafe fn thread_exit(c: *mut MCache) {
    tls::set_state(DEAD);
    tls::set_cache(EMPTY_CACHE_PTR);
    // SAFETY: the thread owned `c` and gave it up above.
    unsafe { flush(&*c) };
    // SAFETY: `c` is active and now flushed.
    unsafe { POOL.lock().put(c) };
}

// ---- refill and flush ----

/// Bumped by [`request_trim`]; each cache compares it with its own at every refill.
static TRIM_EPOCH: AtomicUsize = AtomicUsize::new(0);

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
/// thread's cache holds at most this plus one span per class (136) whatever it does. There
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

/// Makes `alloc[spc]` a span with a free slot in its window: Go's `mcache.refill`.
/// Returns null when out of memory.
///
/// Where Go hands a full span back to its mcentral at once, the cache *retains* it (up
/// to [`RETAIN_TOTAL_BYTES`] of spans in all, oldest first per class, like mimalloc's
/// per-thread full page queue): the thread's own frees into it then stay local, with no
/// atomic operation, which is what allocate-many-then-free-many patterns do. A refill
/// first looks at the oldest retained spans for one that the thread's frees or remote
/// frees emptied a little; the oldest span of the class goes to the mcentral when the
/// budget is spent, and every one does when the thread exits or calls
/// [`crate::release_memory`]. Remote frees into a retained span wait
/// in its remote-free bitmap until the owner takes the span up again.
///
/// # Safety
/// The caller owns `c` (it is the thread's cache, or the orphan lock is held).
#[inline(never)]
pub unsafe fn refill(c: &MCache, spc: SpanClass) -> *mut Span {
    let s = c.alloc[spc.index()].get();
    // SAFETY: the caller owns `c`, so the spans it holds are its own.
    unsafe {
        // The common case, a fraction of the general path's work (larson's steady state):
        // the span has at most 64 slots, so its exhausted window was its only one, and
        // no remote frees wait on it, so it is full. It is retained as it is, and the
        // oldest retained span is taken up if its frees gave it enough free slots.
        if s != EMPTY_SPAN_PTR
            && (*s).single_window()
            && (*s).alloc_cache.get() == 0
            && (*s).xfree.is_empty()
            && TRIM_EPOCH.load(Ordering::Relaxed) == c.trim_epoch.get()
        {
            let list = retained(c, spc);
            let oldest = list.front();
            let enough = ENOUGH_BY_CLASS[spc.size_class().0 as usize] as u32;
            if !oldest.is_null() && (*oldest).retained_free() >= enough {
                // A retained single-window span keeps its window loaded with exactly its
                // free slots (`Span::retain`): ready as it is. Remote frees waiting on it
                // are collected at its next refill. The two spans swap places, so the
                // retained bytes do not change.
                crate::check!((*oldest).window() == 0, "retained window", oldest as usize);
                (*oldest).check_invariants();
                (*s).commit_exhausted_single();
                list.pop_front();
                list.push_back(s);
                c.set_alloc(spc, oldest);
                return oldest;
            }
            let np = spc.size_class().npages();
            if c.retained_pages.get() + np <= RETAIN_TOTAL_BYTES >> PAGE_SHIFT {
                (*s).commit_exhausted_single();
                list.push_back(s);
                c.retained_pages.set(c.retained_pages.get() + np);
                c.alloc[spc.index()].set(EMPTY_SPAN_PTR);
                return refill_from_retained_or_central(c, spc);
            }
        }
        refill_general(c, spc)
    }
}

/// [`refill`]'s general path: the current span may have more windows, remote frees, or
/// enough free slots to keep; the trim epoch may have moved; the retain budget may be
/// spent.
///
/// # Safety
/// As for [`refill`].
#[cold]
#[inline(never)]
unsafe fn refill_general(c: &MCache, spc: SpanClass) -> *mut Span {
    let epoch = TRIM_EPOCH.load(Ordering::Relaxed);
    if epoch != c.trim_epoch.get() {
        c.trim_epoch.set(epoch);
        // SAFETY: the caller owns `c`.
        unsafe { release_retained(c) };
    }
    let s = c.alloc[spc.index()].get();
    if s != EMPTY_SPAN_PTR {
        // SAFETY: the cache owns `s`.
        unsafe {
            let sr = &*s;
            sr.commit_window();
            if sr.load_window_from(sr.window() + 64) {
                return s;
            }
            sr.collect_remote();
            let nelems = sr.nelems.get();
            let free = nelems - sr.allocated();
            sr.check_invariants();
            // Keep the span if enough slots came free; a nearly full one would be
            // rescanned for a slot or two at a time.
            if free > 0 && free >= enough_free(nelems) && sr.load_window_from(0) {
                return s;
            }
            c.alloc[spc.index()].set(EMPTY_SPAN_PTR);
            retire(c, spc, s);
        }
    }
    // SAFETY: the caller owns `c`.
    unsafe { refill_from_retained_or_central(c, spc) }
}

/// The end of a refill, once `alloc[spc]` is empty: a retained span, else one from the
/// mcentral.
///
/// # Safety
/// As for [`refill`]; `alloc[spc]` is the empty span.
#[cold]
#[inline(never)]
unsafe fn refill_from_retained_or_central(c: &MCache, spc: SpanClass) -> *mut Span {
    // SAFETY: the caller owns `c`.
    let s = unsafe { take_retained(c, spc) };
    if !s.is_null() {
        c.set_alloc(spc, s);
        return s;
    }
    refill_from_central(c, spc)
}

/// The end of a refill that found no retained span: a span from the mcentral (null when
/// out of memory).
fn refill_from_central(c: &MCache, spc: SpanClass) -> *mut Span {
    c.refills.set(c.refills.get() + 1);
    let s = central(spc).cache_span(spc, c as *const MCache as *mut MCache);
    if !s.is_null() {
        c.set_alloc(spc, s);
    }
    s
}

/// Free slots that make a span worth allocating from again: 1/16 of its slots, but at
/// least a few (up to a quarter of a small span), so that a span of 8 or 16 large objects
/// is not taken up, at the cost of a refill, for a single slot.
#[inline]
const fn enough_free(nelems: u32) -> u32 {
    let (sixteenth, quarter) = (nelems / 16, nelems / 4);
    let few = if quarter < ENOUGH_MIN {
        quarter
    } else {
        ENOUGH_MIN
    };
    let e = if sixteenth > few { sixteenth } else { few };
    if e == 0 {
        1
    } else {
        e
    }
}
const ENOUGH_MIN: u32 = 4;

/// [`enough_free`] of each size class's span, for [`refill`]'s fast path.
static ENOUGH_BY_CLASS: [u8; NUM_SIZE_CLASSES] = {
    let mut t = [0u8; NUM_SIZE_CLASSES];
    let mut c = 1;
    while c < NUM_SIZE_CLASSES {
        t[c] = enough_free(SizeClass(c as u8).nelems() as u32) as u8;
        c += 1;
    }
    t
};

/// The retained spans of class `spc`.
///
/// # Safety
/// The caller owns `c` and holds no other reference to this list.
#[allow(clippy::mut_from_ref)]
unsafe fn retained(c: &MCache, spc: SpanClass) -> &mut SpanList {
    // SAFETY: only the owner touches the lists, and the caller holds no other reference.
    unsafe { &mut *c.retained[spc.index()].get() }
}

/// Retains `s`, which the cache just stopped allocating from. If the cache's total would
/// pass [`RETAIN_TOTAL_BYTES`], the oldest span of the class goes to the mcentral first,
/// and `s` too if that is not enough.
///
/// # Safety
/// The caller owns `c` and `s` (in use, class `spc`, no longer in `alloc`, window committed).
unsafe fn retire(c: &MCache, spc: SpanClass, s: *mut Span) -> bool {
    let np = spc.size_class().npages();
    let max_pages = RETAIN_TOTAL_BYTES >> PAGE_SHIFT;
    // SAFETY: the caller owns `c` and `s`, an in-use span of class `spc` out of `alloc`
    // with its window committed (# Safety); the retained list holds only `c`'s spans.
    unsafe {
        let list = retained(c, spc);
        if c.retained_pages.get() + np > max_pages {
            let old = list.pop_front();
            if !old.is_null() {
                c.retained_pages.set(c.retained_pages.get() - np);
                (*old).settle_retained();
                evict(c, spc, old);
            }
            if c.retained_pages.get() + np > max_pages {
                evict(c, spc, s);
                return false;
            }
        }
        (*s).retain();
        list.push_back(s);
        c.retained_pages.set(c.retained_pages.get() + np);
    }
    true
}

/// Whether [`retire`] would keep a span of class `spc` now: the budget has room for it, or
/// the class has a retained span to send to the mcentral in its place.
///
/// # Safety
/// The caller owns `c`.
unsafe fn retire_keeps(c: &MCache, spc: SpanClass) -> bool {
    let np = spc.size_class().npages();
    // SAFETY: the caller owns `c` (# Safety), so its counters are ours to read.
    c.retained_pages.get() + np <= RETAIN_TOTAL_BYTES >> PAGE_SHIFT
        || unsafe { retained(c, spc) }.len > 0
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
    // SAFETY: caller contract: `s` is a live in-use record.
    let sr = unsafe { &*s };
    if c == EMPTY_CACHE_PTR || sr.last_owner.load(Ordering::Relaxed) != c {
        return false;
    }
    let spc = sr.spanclass.get();
    // SAFETY: `c` is the calling thread's own cache (not the empty one), which no one
    // else touches; `s` as the caller says. Adopted, `s` is owned by `c`, in no list, with
    // its window committed: what `retire` takes.
    unsafe {
        if !retire_keeps(&*c, spc) || !central(spc).adopt_parked(s, c) {
            return false;
        }
        let kept = retire(&*c, spc, s);
        crate::check!(kept, "adopted span not retained", s as usize);
        if kept {
            ADOPTED.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }
}

/// Spans taken back by [`adopt_for_free`], for [`crate::stats()`].
pub static ADOPTED: AtomicUsize = AtomicUsize::new(0);

/// Gives a span the cache no longer allocates from (a retained one out of its list and
/// settled, or one with its window committed) to its mcentral.
///
/// # Safety
/// `c` owns `s`, which is in no list and has no window, or a committed one
/// ([`Span::settle_retained`] for a retained span).
unsafe fn evict(c: &MCache, spc: SpanClass, s: *mut Span) {
    // SAFETY: caller contract; window 0 with an empty cache is the committed state the
    // mcentral expects.
    unsafe {
        (*s).set_window(0);
        uncache(c, spc, s);
    }
}

/// Gives `s` up to its mcentral, first clearing the class's free hint if it names `s`:
/// once the mcentral has it, the span may be freed and its record reused by another
/// thread, which the hint must then not read.
///
/// # Safety
/// `c` owns `s`, whose window is committed and which is in no list.
unsafe fn uncache(c: &MCache, spc: SpanClass, s: *mut Span) {
    let hint = &c.free_hint[spc.index()];
    if hint.get() == s {
        hint.set(EMPTY_SPAN_PTR);
    }
    // SAFETY: `c` owns `s`, whose window is committed and which is in no list (# Safety):
    // what `uncache_span` requires.
    unsafe {
        (*s).last_owner
            .store(c as *const MCache as *mut MCache, Ordering::Relaxed);
        central(spc).uncache_span(s);
    }
}

/// A retained span with a free slot loaded in its window, taken out of the list; null if
/// none of the oldest [`RETAIN_PROBES`] qualifies (those go to the back, so that the next
/// refill looks at others). Like [`refill`]'s own test, a span qualifies with 1/16 of its
/// slots free, remote frees waiting on it included, so a nearly full one is not taken up
/// for a slot or two at a time. The probe reads the list in place; a failed one moves the
/// probed spans to the back in one step rather than one by one.
///
/// # Safety
/// The caller owns `c`.
unsafe fn take_retained(c: &MCache, spc: SpanClass) -> *mut Span {
    // SAFETY: caller contract; list members are spans this cache owns.
    unsafe {
        let list = retained(c, spc);
        let mut s = list.front();
        let mut last = ptr::null_mut();
        for _ in 0..list.len.min(RETAIN_PROBES) {
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
                        .set(c.retained_pages.get() - spc.size_class().npages());
                    return s;
                }
                settled = true;
            }
            if settled {
                sr.retain();
            }
            last = s;
            s = sr.next.get();
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
    for spc in 2..NUM_SPAN_CLASSES {
        let spc = SpanClass(spc as u8);
        // SAFETY: the caller owns `c` and nobody allocates from it (# Safety), so its
        // retained lists and their spans are ours.
        unsafe {
            let list = retained(c, spc);
            loop {
                let s = list.pop_front();
                if s.is_null() {
                    break;
                }
                c.retained_pages
                    .set(c.retained_pages.get() - spc.size_class().npages());
                (*s).settle_retained();
                evict(c, spc, s);
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
pub(crate) unsafe fn for_each_retained(c: &MCache, mut f: impl FnMut(SpanClass, *mut Span)) {
    for spc in 0..NUM_SPAN_CLASSES {
        let spc = SpanClass(spc as u8);
        // SAFETY: the caller owns `c` and `f` does not change the lists (# Safety).
        unsafe { retained(c, spc) }.for_each(|s| f(spc, s));
    }
}

/// Returns every span of `c` to its mcentral (thread exit, fork child, orphan reset).
///
/// # Safety
/// The caller owns `c`, and nobody allocates from it concurrently.
pub unsafe fn flush(c: &MCache) {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the caller owns `c` and nobody allocates from it (# Safety).
    unsafe { release_retained(c) };
    for spc in 2..NUM_SPAN_CLASSES {
        let s = c.alloc[spc].get();
        if s == EMPTY_SPAN_PTR {
            continue;
        }
        c.alloc[spc].set(EMPTY_SPAN_PTR);
        // SAFETY: the cache owned `s`; after `uncache_span` it does not touch it again.
        unsafe {
            let sr = &*s;
            sr.commit_window();
            sr.collect_remote();
            uncache(c, SpanClass(spc as u8), s);
        }
    }
    for hint in &c.free_hint {
        crate::check!(
            hint.get() == EMPTY_SPAN_PTR,
            "free hint names a span the cache gave up",
            hint.get() as usize
        );
    }
}

// ---- the pool of cache records, and the orphan cache ----

/// Cache flushes since start (thread exits), for [`crate::stats()`].
pub static FLUSHES: AtomicUsize = AtomicUsize::new(0);

/// All cache records: the active ones (owned by a live thread) and recycled ones.
pub struct Pool {
    fix: FixAlloc,
    active: *mut MCache,
    free: *mut MCache,
    /// Caches owned by live threads.
    pub nactive: usize,
}

// SAFETY: records are allocator metadata guarded by POOL's lock.
unsafe impl Send for Pool {}

/// The cache pool. Lock order: ORPHAN -> POOL -> mcentral -> mheap.
pub static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    fix: FixAlloc::new(MCACHE_BYTES),
    active: ptr::null_mut(),
    free: ptr::null_mut(),
    nactive: 0,
});

impl Pool {
    /// A clean cache record on the active list, or null if the OS refuses memory.
    pub fn get(&mut self) -> *mut MCache {
        let c = if self.free.is_null() {
            let c = self.fix.alloc().cast::<MCache>();
            if c.is_null() {
                return c;
            }
            // SAFETY: fresh storage of the right size and alignment.
            unsafe { c.write(MCache::empty()) };
            c
        } else {
            let c = self.free;
            // SAFETY: free-list members are valid, flushed records.
            self.free = unsafe { (*c).next.get() };
            c
        };
        // SAFETY: `c` and the list head are valid records.
        unsafe {
            (*c).prev.set(ptr::null_mut());
            (*c).next.set(self.active);
            if !self.active.is_null() {
                (*self.active).prev.set(c);
            }
        }
        self.active = c;
        self.nactive += 1;
        c
    }

    /// Moves a flushed cache from the active list to the free list.
    ///
    /// # Safety
    /// `c` is on this pool's active list and flushed; nobody uses it any more.
    pub unsafe fn put(&mut self, c: *mut MCache) {
        // SAFETY: `c` is on this pool's active list, flushed and unused (# Safety).
        unsafe {
            self.unlink_active(c);
            (*c).next.set(self.free);
        }
        self.free = c;
    }

    /// Takes `c` off the active list (and out of the count), onto no list.
    ///
    /// # Safety
    /// `c` is on this pool's active list.
    unsafe fn unlink_active(&mut self, c: *mut MCache) {
        // SAFETY: `c` is a valid record on the active list; its neighbours are too.
        unsafe {
            let (p, n) = ((*c).prev.get(), (*c).next.get());
            if p.is_null() {
                self.active = n;
            } else {
                (*p).next.set(n);
            }
            if !n.is_null() {
                (*n).prev.set(p);
            }
        }
        self.nactive -= 1;
    }
}

/// Pointer to the orphan cache record (null until first needed).
pub struct OrphanCache(*mut MCache);
// SAFETY: the record is allocator metadata; ORPHAN's lock serialises its use.
unsafe impl Send for OrphanCache {}

/// The shared cache of threads without one, taken with its lock.
pub static ORPHAN: SpinLock<OrphanCache> = SpinLock::new(OrphanCache(ptr::null_mut()));

/// Runs `f` with the orphan cache held, or returns `None` if none could be made.
pub fn with_orphan<R>(f: impl FnOnce(&MCache) -> R) -> Option<R> {
    let mut g = ORPHAN.lock();
    if g.0.is_null() {
        g.0 = POOL.lock().get();
        if g.0.is_null() {
            return None;
        }
    }
    // SAFETY: the orphan cache lives forever and the lock makes us its only user.
    Some(f(unsafe { &*g.0 }))
}

/// In a forked child: abandon the caches of the threads that did not survive the fork.
///
/// The fork copied them at whatever instruction their threads were at: a thread may have
/// been inside `malloc` or `free`, which touch the thread's own cache with no lock (a span
/// list half relinked, a remote-free bitmap half taken), or half way through its exit
/// flush.
/// Flushing such a cache in the child could hang it: shim-c's fork tests caught children
/// spinning in `MCentral::settle` on a span that the dead thread had already handed on
/// (a few forks in 30000), and a half-rotated retained list is a cycle.
/// So, like jemalloc's and mimalloc's children, the child leaves them as they are: their
/// spans stay owned by a record no thread uses (frees into them are remote frees, never
/// collected), and the record is never reused. What is lost is the free space in at most
/// [`RETAIN_TOTAL_BYTES`] plus one span per class, per thread the parent had, and it is
/// memory the child shares with its parent until written. The orphan cache is used only
/// under its lock, which `fork_prepare` took, so it is whole, and it stays in use.
///
/// # Safety
/// Called once in the child, single-threaded, with every allocator lock free.
pub unsafe fn abandon_after_fork() {
    let me = current();
    let orphan = ORPHAN.lock().0;
    let mut pool = POOL.lock();
    let mut c = pool.active;
    while !c.is_null() {
        // SAFETY: active-list members are valid records.
        let next = unsafe { (*c).next.get() };
        if c != me && c != orphan {
            // SAFETY: `c` is on the active list; its owner thread does not exist here.
            unsafe { pool.unlink_active(c) };
            ABANDONED.fetch_add(1, Ordering::Relaxed);
        }
        c = next;
    }
}

/// Caches abandoned in forked children ([`abandon_after_fork`]), for [`crate::stats()`].
pub static ABANDONED: AtomicUsize = AtomicUsize::new(0);
