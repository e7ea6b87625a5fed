//! `mcache`: the per-thread cache (Go's `mcache.go`).
//!
//! Each thread allocates from its own mcache: one span per size class, from which
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
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use crate::arena::ArenaHint;
use crate::list::Links;
use crate::mcentral::central;
use crate::sizeclass::{SizeClass, PAGE_SHIFT};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::{Span, SpanList};
use crate::sync::{AtomicUsize, Ordering};
use core::cell::{Cell, UnsafeCell};

/// A thread's cache of spans.
///
/// Invariants: `alloc[class]` is [`EMPTY_SPAN`] or an in-use span of `class` whose
/// `owner` is this cache; entries of size class 0 are always [`EMPTY_SPAN`]. Between
/// allocation calls, `fast[class]` is `alloc[class]`, or, while `sampling` is set, the
/// class's proxy span (`profile::lend`; [`EMPTY_SPAN`] for class 0 and after a flush).
/// Every span of
/// `retained[class]` is an in-use span of `class` owned by this cache, in the retained
/// state (`Span::retain`: a single-window span's one window loaded; a larger span with no
/// window, or with one loaded for frees by `Span::load_window_for_frees`), in no other
/// list, and not `alloc[class]`; `free_hint[class]` is [`EMPTY_SPAN`], `alloc[class]` or one of
/// `retained[class]`; `retained_pages` is the sum of the pages of all retained spans, at most
/// [`RETAIN_TOTAL_BYTES`] worth.
#[repr(C, align(64))]
pub struct MCache {
    /// Bytes left before this thread's next heap-profile sample (`profile::sample`): with
    /// the feature `profile` the allocation fast path subtracts each size from it, so it
    /// comes first, on the line the fast path reads. 0 in [`EMPTY_CACHE`].
    pub next_sample: Cell<usize>,
    /// The arena C's `free` last found a span of this cache in (a hint for the arena map:
    /// [`crate::malloc::free_fast`]). First, on the line of the first size classes. Never
    /// set in [`EMPTY_CACHE`].
    pub arena_hint: ArenaHint,
    /// The span each size class's allocation fast path takes slots from (hot): `alloc`'s,
    /// or, while the thread samples for the heap profile (`sampling`), a proxy holding as
    /// many of that span's free slots as the countdown has room for (`profile::lend`), so
    /// that the fast path has no test of its own.
    pub fast: [Cell<*mut Span>; NUM_SIZE_CLASSES],
    /// The span each size class allocates from.
    pub alloc: [Cell<*mut Span>; NUM_SIZE_CLASSES],
    /// The thread samples its allocations for the heap profile: `fast` is its proxy spans
    /// (without the feature `profile`, `profile::lend`).
    pub sampling: Cell<bool>,
    /// Links in the pool's active or free list.
    links: Links<MCache>,
    /// Times this cache swapped a span with its mcentral.
    pub refills: Cell<usize>,
    /// Per size class, the span the thread's layout-aware frees of that class last went
    /// to: the first place [`crate::malloc::free_sized`] looks (its window, then the whole
    /// span), before the class's `alloc` span and the arena map. `alloc[class]` after every
    /// refill, so that a free of an object just allocated finds its window here; a
    /// retained span while frees run through it (a batch freed in allocation order, one
    /// retained span after another). C's `free_fast` does not use it (see there).
    /// Invariant: [`EMPTY_SPAN`] or a span of the class this cache owns; a span leaving the
    /// cache (`uncache`) clears its entry, so the hint never names a record that another
    /// thread may be reusing.
    pub free_hint: [Cell<*mut Span>; NUM_SIZE_CLASSES],
    /// Spans this cache filled and still owns, oldest first (see [`refill`]), so that the
    /// thread's frees into them stay local. Only the owning thread touches the lists.
    retained: [UnsafeCell<SpanList>; NUM_SIZE_CLASSES],
    /// Pages of all retained spans (at most [`RETAIN_TOTAL_BYTES`]).
    retained_pages: Cell<usize>,
    /// Per size class, the free slots refills found in the oldest retained span, a moving
    /// average in sixteenths of a slot (`retain::note_slack`): whether the class's retained
    /// spans have room to spare, which decides what a refill does when the spans it
    /// probes have too few free slots.
    slack: [Cell<u16>; NUM_SIZE_CLASSES],
    /// The [`request_trim`] epoch this cache last answered.
    trim_epoch: Cell<usize>,
    /// The rest of the thread's sampling state.
    pub prof: crate::profile::ThreadState,
}

/// A `Sync` wrapper for the static empty span and cache. They are never written: every
/// allocation attempt on them fails (the span's window has no free slot) and no span is
/// owned by them.
#[repr(transparent)]
pub struct Static<T>(T);
// SAFETY: the wrapped values are never written (every allocation on them fails, as the
// span's window has no free slot, and no span is owned by them), so sharing them across
// threads only shares reads.
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
            next_sample: Cell::new(0),
            arena_hint: ArenaHint::new(),
            fast: [const { Cell::new(EMPTY_SPAN_PTR) }; NUM_SIZE_CLASSES],
            alloc: [const { Cell::new(EMPTY_SPAN_PTR) }; NUM_SIZE_CLASSES],
            sampling: Cell::new(false),
            links: Links::new(),
            refills: Cell::new(0),
            free_hint: [const { Cell::new(EMPTY_SPAN_PTR) }; NUM_SIZE_CLASSES],
            retained: [const { UnsafeCell::new(SpanList::new()) }; NUM_SIZE_CLASSES],
            retained_pages: Cell::new(0),
            slack: [const { Cell::new(0) }; NUM_SIZE_CLASSES],
            trim_epoch: Cell::new(0),
            prof: crate::profile::ThreadState::new(),
        }
    }

    /// The span of `class`.
    #[inline(always)]
    pub fn span(&self, class: usize) -> &Span {
        crate::check!(class < NUM_SIZE_CLASSES, "size class out of range", class);
        // SAFETY: `class < NUM_SIZE_CLASSES` (classes come from the size-class tables);
        // entries always point to a live span record.
        unsafe { &*self.alloc.get_unchecked(class).get() }
    }

    /// The span the allocation fast path of `class` takes slots from (`fast[class]`).
    #[inline(always)]
    pub fn fast_span(&self, class: usize) -> &Span {
        crate::check!(class < NUM_SIZE_CLASSES, "size class out of range", class);
        // SAFETY: `class < NUM_SIZE_CLASSES` (classes come from the size-class tables);
        // entries always point to a live span record (`alloc`'s or the empty span).
        unsafe { &*self.fast.get_unchecked(class).get() }
    }

    /// Sets `alloc[class]` and `fast[class]`. A thread that samples (`sampling`) points
    /// `fast[class]` back at its proxy before the allocation that refilled returns
    /// (`malloc::alloc_small`, the one caller of `malloc::alloc_after_refill` that a
    /// sampling thread reaches), so that the refill of a thread that does not sample has
    /// no test of it.
    #[inline(always)]
    fn put_alloc(&self, class: usize, s: *mut Span) {
        self.alloc[class].set(s);
        self.fast[class].set(s);
    }

    /// Points the thread's fast path at its proxy spans, where the heap profile's
    /// countdown is carried (`profile::lend`), or back at its own spans, the loans repaid
    /// (default build). Returns whether the thread now samples: not if the OS refused the
    /// proxies' memory.
    ///
    /// # Safety
    /// The caller owns the cache.
    #[cfg(not(feature = "profile"))]
    pub(crate) unsafe fn set_sampling(&self, on: bool) -> bool {
        if on {
            if crate::profile::lend::loans(self).is_null() {
                return false;
            }
            for class in 1..NUM_SIZE_CLASSES {
                self.fast[class].set(crate::profile::lend::proxy(self, class));
            }
        } else {
            // SAFETY: the caller owns the cache (# Safety).
            unsafe { crate::profile::lend::repay_all(self) };
            for (f, a) in self.fast.iter().zip(&self.alloc) {
                f.set(a.get());
            }
        }
        self.sampling.set(on);
        on
    }

    /// The span the frees of `class` went to last (`free_hint[class]`).
    #[inline(always)]
    pub fn free_span(&self, class: usize) -> &Span {
        crate::check!(class < NUM_SIZE_CLASSES, "size class out of range", class);
        // SAFETY: `class < NUM_SIZE_CLASSES`; the hint is always a live span record (the
        // `free_hint` invariant: `EMPTY_SPAN` or a span this cache owns).
        unsafe { &*self.free_hint.get_unchecked(class).get() }
    }

    /// Makes `s`, a span of `class` this cache allocates from, the class's free hint.
    #[inline(always)]
    fn set_alloc(&self, class: SizeClass, s: *mut Span) {
        self.put_alloc(class.index(), s);
        self.free_hint[class.index()].set(s);
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
            // The heap profile's rate, taken up now rather than at the first refill, which a
            // thread that frees what it allocates may never reach.
            #[cfg(all(not(loom), not(feature = "profile")))]
            // SAFETY: the thread's own cache, just installed.
            unsafe { crate::profile::sample::settle(&*c) };
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

/// Makes `alloc[class]` a span with a free slot in its window: Go's `mcache.refill`.
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
pub unsafe fn refill(c: &MCache, class: SizeClass) -> *mut Span {
    let s = c.alloc[class.index()].get();
    // SAFETY: the caller owns `c`, so the spans it holds are its own.
    unsafe {
        // The common case, a fraction of the general path's work (larson's steady state):
        // the span has at most 64 slots, so its exhausted window was its only one, and
        // no remote frees wait on it, so it is full. It is retained as it is, and the
        // oldest retained span is taken up if its frees gave it enough free slots.
        if s != EMPTY_SPAN_PTR
            && (*s).single_window()
            && (*s).window_free() == 0
            && (*s).xfree.is_empty()
            && TRIM_EPOCH.load(Ordering::Relaxed) == c.trim_epoch.get()
        {
            let list = retained(c, class);
            let oldest = list.front();
            let enough = ENOUGH_BY_CLASS[class.index()] as u32;
            // A retained span of this class has one window, which it keeps loaded with
            // exactly its free slots (`Span::retain`): their count is its cache's.
            if !oldest.is_null()
                && note_slack(c, class, crate::cpu::popcount((*oldest).window_free()))
                    >= enough
            {
                // Ready as it is. Remote frees waiting on it are collected at its next
                // refill. The two spans swap places, so the retained bytes do not change.
                crate::check!((*oldest).window() == 0, "retained window", oldest as usize);
                debug_assert_eq!(
                    crate::cpu::popcount((*oldest).window_free()),
                    (*oldest).retained_free()
                );
                (*oldest).check_invariants();
                (*s).commit_exhausted_single();
                list.swap_front_to_back(s);
                c.set_alloc(class, oldest);
                return oldest;
            }
            let np = class.npages();
            if c.retained_pages.get() + np <= RETAIN_TOTAL_BYTES >> PAGE_SHIFT {
                (*s).commit_exhausted_single();
                list.push_back(s);
                c.retained_pages.set(c.retained_pages.get() + np);
                c.put_alloc(class.index(), EMPTY_SPAN_PTR);
                // The oldest span's free slots were noted above; with no oldest span, the
                // front is now `s`, whose none say nothing of the class's room.
                return refill_from_retained_or_central(c, class, true);
            }
        }
        refill_general(c, class)
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
unsafe fn refill_general(c: &MCache, class: SizeClass) -> *mut Span {
    let epoch = TRIM_EPOCH.load(Ordering::Relaxed);
    if epoch != c.trim_epoch.get() {
        c.trim_epoch.set(epoch);
        // SAFETY: the caller owns `c`.
        unsafe { release_retained(c) };
    }
    let s = c.alloc[class.index()].get();
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
            c.put_alloc(class.index(), EMPTY_SPAN_PTR);
            retire(c, class, s);
        }
    }
    // SAFETY: the caller owns `c`.
    unsafe { refill_from_retained_or_central(c, class, false) }
}

/// The end of a refill, once `alloc[class]` is empty: a retained span, else one from the
/// mcentral.
///
/// # Safety
/// As for [`refill`]; `alloc[class]` is the empty span; `front_noted`: the oldest retained
/// span's free slots were noted already ([`take_retained`]).
#[cold]
#[inline(never)]
unsafe fn refill_from_retained_or_central(
    c: &MCache,
    class: SizeClass,
    front_noted: bool,
) -> *mut Span {
    // SAFETY: the caller owns `c`.
    let s = unsafe { take_retained(c, class, front_noted) };
    if !s.is_null() {
        c.set_alloc(class, s);
        return s;
    }
    refill_from_central(c, class)
}

/// The end of a refill that found no retained span: a span from the mcentral (null when
/// out of memory).
fn refill_from_central(c: &MCache, class: SizeClass) -> *mut Span {
    c.refills.set(c.refills.get() + 1);
    let s = central(class).cache_span(class, c as *const MCache as *mut MCache);
    if !s.is_null() {
        c.set_alloc(class, s);
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
pub(super) static ENOUGH_BY_CLASS: [u8; NUM_SIZE_CLASSES] = {
    let mut t = [0u8; NUM_SIZE_CLASSES];
    let mut c = 1;
    while c < NUM_SIZE_CLASSES {
        t[c] = enough_free(SizeClass(c as u8).nelems() as u32) as u8;
        c += 1;
    }
    t
};

/// Gives a span the cache no longer allocates from (a retained one out of its list and
/// settled, or one with its window committed) to its mcentral.
///
/// # Safety
/// `c` owns `s`, which is in no list and has no window, or a committed one
/// ([`Span::settle_retained`] for a retained span).
unsafe fn evict(c: &MCache, class: SizeClass, s: *mut Span) {
    // SAFETY: `c` owns `s`, which is in no list and has no window or a committed one
    // (# Safety); window 0 with an empty cache is the committed state `uncache` expects.
    unsafe {
        (*s).set_window(0);
        uncache(c, class, s);
    }
}

/// Gives `s` up to its mcentral, first clearing the class's free hint if it names `s`:
/// once the mcentral has it, the span may be freed and its record reused by another
/// thread, which the hint must then not read.
///
/// # Safety
/// `c` owns `s`, whose window is committed and which is in no list.
unsafe fn uncache(c: &MCache, class: SizeClass, s: *mut Span) {
    let hint = &c.free_hint[class.index()];
    if hint.get() == s {
        hint.set(EMPTY_SPAN_PTR);
    }
    // SAFETY: `c` owns `s`, whose window is committed and which is in no list (# Safety):
    // what `uncache_span` requires.
    unsafe {
        (*s).last_owner
            .store(c as *const MCache as *mut MCache, Ordering::Relaxed);
        central(class).uncache_span(s);
    }
}

/// Returns every span of `c` to its mcentral (thread exit, fork child, orphan reset).
///
/// # Safety
/// The caller owns `c`, and nobody allocates from it concurrently.
pub unsafe fn flush(c: &MCache) {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
    // The spans leave the cache: the loans of a thread that samples go back first.
    #[cfg(not(feature = "profile"))]
    if c.sampling.get() {
        // SAFETY: the caller owns `c` (# Safety).
        unsafe { crate::profile::lend::repay_all(c) };
    }
    // SAFETY: the caller owns `c` and nobody allocates from it (# Safety).
    unsafe { release_retained(c) };
    for class in 1..NUM_SIZE_CLASSES {
        let s = c.alloc[class].get();
        if s == EMPTY_SPAN_PTR {
            continue;
        }
        c.put_alloc(class, EMPTY_SPAN_PTR);
        // SAFETY: the cache owned `s`; after `uncache_span` it does not touch it again.
        unsafe {
            let sr = &*s;
            sr.commit_window();
            sr.collect_remote();
            uncache(c, SizeClass(class as u8), s);
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

/// Cache flushes since start (thread exits), for [`crate::stats()`].
pub static FLUSHES: AtomicUsize = AtomicUsize::new(0);


mod pool;
mod retain;

pub use pool::{abandon_after_fork, with_orphan, ABANDONED, ORPHAN, POOL};
pub(crate) use retain::{for_each_retained, retained_pages};
#[cfg(any(test, feature = "test-internals"))]
pub use retain::{own_retained_bytes, trim_requests};
pub use retain::{
    adopt_for_free, release_own_retained, release_retained, request_trim, ADOPTED,
    RETAIN_TOTAL_BYTES,
};
use retain::{note_slack, retained, retire, take_retained, TRIM_EPOCH};

