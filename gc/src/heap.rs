//! The collector's spans: per-mutator span caches, central lists per (kind, size class),
//! the tiny allocator, large objects, and sweeping (Go's `mcache.go`, `mcentral.go`,
//! `malloc.go` `mallocgc`, `mgcsweep.go`, on [`gomalloc::gcapi`]).
//!
//! Span life cycle within one GC cycle (`sg` = [`SWEEPGEN`]):
//! `unswept` (sweepgen `sg-2`) -> claimed by a sweeper (`sg-1`) -> swept (`sg`) into
//! `partial` / `full` / freed -> cached by a mutator -> released back to `partial`/`full`.
//! Mark termination moves every listed span to `unswept` and adds 2 to `sg`.

use crate::collector::FatalOnUnwind;
use crate::mark::note_span_range;
use crate::ptr::{POISON, VTable};
use crate::stats::COUNTERS;
use gomalloc::gcapi::{self, ObjectKind, OwnedSpan};
use gomalloc::gcapi::{NUM_SIZE_CLASSES, SizeClass, Span};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Go's `mheap_.sweepgen`: +2 per cycle.
pub(crate) static SWEEPGEN: AtomicU32 = AtomicU32::new(2);
/// Bytes of the collector's spans (for the memory limit).
pub(crate) static SPAN_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Number of the collector's spans (allocated minus freed), for [`check_lists`].
static SPAN_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Bytes handed to mutators since the last mark (Go's `heapLive`, counted per span).
pub(crate) static HEAP_LIVE: AtomicUsize = AtomicUsize::new(0);
/// Bytes and objects allocated since start (Go's `TotalAlloc` and `Mallocs`), counted as
/// `HEAP_LIVE` is: a span's free slots when a cache takes it, less those it gives back
/// unused; a large object when it is allocated.
pub(crate) static TOTAL_ALLOC: AtomicU64 = AtomicU64::new(0);
pub(crate) static MALLOCS: AtomicU64 = AtomicU64::new(0);

/// Counts `objects` slots of `bytes` in all as allocated (negative: given back unused).
fn count_alloc(objects: i64, bytes: i64) {
    MALLOCS.fetch_add(objects as u64, Ordering::Relaxed);
    TOTAL_ALLOC.fetch_add(bytes as u64, Ordering::Relaxed);
}
/// Spans taken off an `unswept` list and not yet swept (Go's `sweep.active`): incremented
/// under the list's lock together with the pop, decremented when the sweep is done, so
/// "every `unswept` list empty and this zero" means every span of the cycle is swept.
static SWEEPS_ACTIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Sweeps on this thread that are running destructors now (a destructor may sweep
    /// again, through an allocation on a thread it attached).
    static DESTRUCTORS: Cell<u32> = const { Cell::new(0) };
}

/// True while the calling thread runs a destructor for the sweep.
pub(crate) fn running_destructors() -> bool {
    DESTRUCTORS.with(|d| d.get() != 0)
}

/// Tiny-allocator block size (Go's `maxTinySize`).
pub(crate) const TINY_SIZE: usize = 16;
/// The size class of the tiny blocks.
const TINY_CLASS: SizeClass = gcapi::size_to_class(TINY_SIZE);

/// The collector's kinds of objects: each has central lists and cache slots of its own.
///
/// Three are gomalloc's [`ObjectKind`]s (same discriminants); the fourth, `ScanDrop`, is
/// the collector's own: objects that hold GC pointers *and* have drop glue. They live in
/// [`ObjectKind::Scan`] spans but on lists of their own, so that sweeping a plain `Scan`
/// span never reads a dead object's header to drop it: a dead object with nothing to drop
/// is not touched at all (in release builds), as in Go's sweeper.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Objects holding GC pointers, without drop glue.
    Scan = ObjectKind::Scan as u8,
    /// Pointer-free objects with drop glue.
    NoscanDrop = ObjectKind::NoscanDrop as u8,
    /// Pointer-free objects without drop glue (and tiny blocks).
    Noscan = ObjectKind::Noscan as u8,
    /// Objects holding GC pointers, with drop glue.
    ScanDrop = 4,
}

/// Number of [`Kind`]s.
const NKINDS: usize = 4;

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    const ALL: [Kind; NKINDS] = [Kind::Scan, Kind::NoscanDrop, Kind::Noscan, Kind::ScanDrop];

    /// Row of the kind in the per-kind tables.
    #[inline(always)]
    const fn index(self) -> usize {
        self as usize - 1
    }

    /// The gomalloc object kind of the kind's spans.
    #[inline(always)]
    pub(crate) const fn span_kind(self) -> ObjectKind {
        match self {
            Kind::Scan | Kind::ScanDrop => ObjectKind::Scan,
            Kind::NoscanDrop => ObjectKind::NoscanDrop,
            Kind::Noscan => ObjectKind::Noscan,
        }
    }

    /// True if dead objects of the kind have a destructor to run when swept.
    #[inline(always)]
    const fn drops(self) -> bool {
        matches!(self, Kind::ScanDrop | Kind::NoscanDrop)
    }
}

/// Spans of one (kind, size class) that no mutator caches.
#[derive(Default)]
struct Lists {
    partial: Vec<*mut Span>,
    full: Vec<*mut Span>,
    unswept: Unswept,
}

/// The spans of one list left unswept: last cycle's `partial` and `full` lists, taken
/// whole. Two `Vec`s rather than one so that [`begin_sweep_cycle`], inside the stop, swaps
/// vectors (O(1) per list) instead of copying every span pointer (O(spans)).
#[derive(Default)]
struct Unswept {
    partial: Vec<*mut Span>,
    full: Vec<*mut Span>,
}

impl Unswept {
    const fn new() -> Unswept {
        Unswept {
            partial: Vec::new(),
            full: Vec::new(),
        }
    }

    /// Takes one span, last cycle's partial spans first (they are likelier to keep free
    /// slots for the lazy sweep's caller).
    fn pop(&mut self) -> Option<*mut Span> {
        self.partial.pop().or_else(|| self.full.pop())
    }

    fn is_empty(&self) -> bool {
        self.partial.is_empty() && self.full.is_empty()
    }

    fn len(&self) -> usize {
        self.partial.len() + self.full.len()
    }

    fn iter(&self) -> impl Iterator<Item = &*mut Span> {
        self.partial.iter().chain(self.full.iter())
    }

    /// Makes `partial` and `full` the unswept lists and leaves them empty (keeping the
    /// capacity of the emptied unswept vectors). O(1): the caller checked `self` is empty.
    fn take_lists(&mut self, partial: &mut Vec<*mut Span>, full: &mut Vec<*mut Span>) {
        debug_assert!(self.is_empty(), "sweep did not finish before marking");
        std::mem::swap(&mut self.partial, partial);
        std::mem::swap(&mut self.full, full);
    }
}

struct Central(Mutex<Lists>);
// SAFETY: the span pointers are heap metadata guarded by the mutex.
unsafe impl Sync for Central {}

static CENTRALS: [[Central; NUM_SIZE_CLASSES]; NKINDS] = [const {
    [const {
        Central(Mutex::new(Lists {
            partial: Vec::new(),
            full: Vec::new(),
            unswept: Unswept::new(),
        }))
    }; NUM_SIZE_CLASSES]
}; NKINDS];

/// Large-object spans.
struct Large(Mutex<LargeLists>);
#[derive(Default)]
struct LargeLists {
    swept: Vec<*mut Span>,
    unswept: Unswept,
}
// SAFETY: the span pointers are heap metadata guarded by the mutex.
unsafe impl Sync for Large {}
static LARGE: Large = Large(Mutex::new(LargeLists {
    swept: Vec::new(),
    unswept: Unswept::new(),
}));

fn central(kind: Kind, class: SizeClass) -> &'static Mutex<Lists> {
    &CENTRALS[kind.index()][class.0 as usize].0
}

/// A mutator's span cache (Go's `mcache`), owned by its `Mutator`.
///
/// Invariant: `spans[k][c]` is the static empty span or a span of kind `k+1`, size class
/// `c`, that no central list holds and that only this cache allocates from; `tiny` is 0 or
/// the address of a 16-byte block of such a span with `tiny_off <= 16`.
pub(crate) struct Cache {
    spans: [[OwnedSpan; NUM_SIZE_CLASSES]; NKINDS],
    tiny: usize,
    tiny_off: usize,
    /// While the thread samples for gomalloc's heap profile (default build): each class's
    /// countdown and the slots held back from its window ([`Sampling`]).
    #[cfg(not(feature = "profile"))]
    sampling: Option<Box<Sampling>>,
}

/// How the collector's allocations count down for the heap profile (default build),
/// keeping the allocation fast path as it is: each `(kind, class)` counts down on its
/// own (as gomalloc's loans do: Poisson processes of one rate over disjoint sets of bytes
/// make one over their union), and its window holds no more free slots than its
/// countdown has room for; the others are held back (`OwnedSpan::hold_back`). A cached
/// window receives no frees, so when the fast path finds it empty every slot left in it
/// was taken, and the slow path counts them, decides the sample, and limits the window
/// again. Held-back slots go back into the window before it is committed.
///
/// Tiny objects and the tiny blocks' class (16-byte pointer-free slots) count down one
/// object at a time on the thread's countdown, as before: the tiny block is hidden from
/// the fast path and that class's window holds nothing back for it, so each of those
/// allocations takes the slow path.
#[cfg(not(feature = "profile"))]
pub(crate) struct Sampling {
    classes: [[ClassSampling; NUM_SIZE_CLASSES]; NKINDS],
    /// `gomalloc::profile::rate_epoch` the countdowns were drawn in.
    epoch: u32,
    /// The tiny block and offset, hidden from the fast path (`tiny` is 0 meanwhile).
    tiny: (usize, usize),
}

/// One class's part of [`Sampling`].
#[cfg(not(feature = "profile"))]
#[derive(Clone, Copy, Default)]
struct ClassSampling {
    /// Free slots of the window held back from the fast path.
    held: u64,
    /// Bytes before the class's next sample, less the slots the window was left with.
    countdown: usize,
}

/// What the allocation slow path does for a sampling thread ([`Cache::sample_before`]).
#[cfg(not(feature = "profile"))]
pub(crate) enum SampleStep {
    /// Allocate this object as a sample, charged this many bytes.
    Sample(usize),
    /// Allocate as usual, then call [`Cache::sample_after`] with this.
    Then(Option<(Kind, SizeClass)>),
}

impl Cache {
    pub(crate) fn new() -> Cache {
        Cache {
            spans: [[OwnedSpan::EMPTY; NUM_SIZE_CLASSES]; NKINDS],
            tiny: 0,
            tiny_off: 0,
            #[cfg(not(feature = "profile"))]
            sampling: None,
        }
    }

    /// Puts back the slots held back from the window of `(kind, class)` (before it is
    /// committed), and refunds its countdown the slots the fast path left in it; the
    /// class's count is then exact.
    #[cfg(not(feature = "profile"))]
    fn give_back(&mut self, k: usize, c: usize) {
        let Some((span, st)) = self.class_sampling(k, c) else {
            return;
        };
        if span.is_empty() {
            st.held = 0;
            return;
        }
        st.countdown = st
            .countdown
            .saturating_add(span.window_free() as usize * span.span().object_size());
        // SAFETY: the cache owns the span (invariant), whose window is the one the slots
        // were held back from (they go back before any commit or reload).
        unsafe { span.give_back(std::mem::take(&mut st.held)) };
    }

    /// The cached span of `(kind, class)` and the class's sampling state, while the
    /// thread samples.
    #[cfg(not(feature = "profile"))]
    fn class_sampling(&mut self, k: usize, c: usize) -> Option<(OwnedSpan, &mut ClassSampling)> {
        let span = self.spans[k][c];
        let smp = self.sampling.as_mut()?;
        Some((span, &mut smp.classes[k][c]))
    }

    /// Limits the window of `(kind, class)` to what its countdown has room for.
    #[cfg(not(feature = "profile"))]
    fn limit(&mut self, k: usize, c: usize) {
        let Some((span, st)) = self.class_sampling(k, c) else {
            return;
        };
        if span.is_empty() {
            return;
        }
        let elem = span.span().object_size();
        let max = if k == Kind::Noscan.index() && c == TINY_CLASS.0 as usize {
            0
        } else {
            (st.countdown / elem).min(64) as u32
        };
        // SAFETY: the cache owns the span (invariant); its window holds nothing back.
        st.held = unsafe { span.hold_back(max) };
        st.countdown -= span.window_free() as usize * elem;
    }

    /// The slow path of a sampling thread, before it allocates `size` bytes at `align` of
    /// `kind`: takes up the rate, counts the allocation down, and says whether it is the
    /// sample.
    #[cfg(not(feature = "profile"))]
    pub(crate) fn sample_before(&mut self, kind: Kind, size: usize, align: usize) -> SampleStep {
        let (e, epoch) = (
            gomalloc::profile::rate_epoch(),
            self.sampling.as_ref().map(|s| s.epoch),
        );
        if epoch != Some(e) {
            self.stop_sampling();
            let mut smp = Box::new(Sampling {
                classes: [[ClassSampling::default(); NUM_SIZE_CLASSES]; NKINDS],
                epoch: e,
                tiny: (0, 0),
            });
            for st in smp.classes.iter_mut().flatten() {
                st.countdown = gomalloc::profile::draw_countdown();
            }
            smp.tiny = (
                std::mem::take(&mut self.tiny),
                std::mem::take(&mut self.tiny_off),
            );
            self.sampling = Some(smp);
            for k in 0..NKINDS {
                for c in 1..NUM_SIZE_CLASSES {
                    self.limit(k, c);
                }
            }
        }
        let class = if size <= gcapi::MAX_SMALL_SIZE {
            gcapi::small_class(size, align)
        } else {
            None
        };
        let tiny = kind == Kind::Noscan && size < TINY_SIZE && align <= 8;
        let per_object = match class {
            None => true,
            Some(c) => tiny || (kind == Kind::Noscan && c == TINY_CLASS),
        };
        if per_object {
            if gomalloc::profile::sample_due(size) {
                return SampleStep::Sample(size);
            }
            let Some(c) = class else {
                return SampleStep::Then(None);
            };
            // The tiny blocks' class: its window, all held back, opened for this one
            // allocation (and the tiny block shown, for a tiny object).
            let blocks = TINY_CLASS;
            self.give_back(Kind::Noscan.index(), blocks.0 as usize);
            if tiny {
                let smp = self.sampling.as_mut().expect("sampling");
                (self.tiny, self.tiny_off) = std::mem::take(&mut smp.tiny);
                return SampleStep::Then(Some((Kind::Noscan, blocks)));
            }
            return SampleStep::Then(Some((kind, c)));
        }
        let c = class.expect("small");
        let (k, ci) = (kind.index(), c.0 as usize);
        self.give_back(k, ci);
        let st = &mut self.sampling.as_mut().expect("sampling").classes[k][ci];
        let elem = c.size();
        if st.countdown < elem {
            st.countdown = gomalloc::profile::draw_countdown();
            self.limit(k, ci);
            return SampleStep::Sample(elem);
        }
        st.countdown -= elem;
        SampleStep::Then(Some((kind, c)))
    }

    /// The slow path of a sampling thread, after it allocated what
    /// [`Cache::sample_before`] let through: limits the class's window again and hides
    /// the tiny block.
    #[cfg(not(feature = "profile"))]
    pub(crate) fn sample_after(&mut self, class: Option<(Kind, SizeClass)>) {
        if let Some((kind, c)) = class {
            self.limit(kind.index(), c.0 as usize);
        }
        self.hide_tiny();
    }

    /// Moves the tiny block out of the fast path's sight while the thread samples.
    #[cfg(not(feature = "profile"))]
    fn hide_tiny(&mut self) {
        if let Some(smp) = self.sampling.as_mut() {
            smp.tiny = (
                std::mem::take(&mut self.tiny),
                std::mem::take(&mut self.tiny_off),
            );
        }
    }

    /// Ends sampling on this thread: every held-back slot goes back into its window and
    /// the tiny block back to the fast path.
    #[cfg(not(feature = "profile"))]
    pub(crate) fn stop_sampling(&mut self) {
        if self.sampling.is_none() {
            return;
        }
        for k in 0..NKINDS {
            for c in 1..NUM_SIZE_CLASSES {
                self.give_back(k, c);
            }
        }
        let smp = self.sampling.take().expect("sampling");
        if self.tiny == 0 {
            (self.tiny, self.tiny_off) = smp.tiny;
        }
    }

    /// Takes a slot from the cached span of `(kind, class)`: null if the window is empty.
    #[inline(always)]
    pub(crate) fn alloc_fast(&self, kind: Kind, class: SizeClass) -> *mut u8 {
        // SAFETY: entries are `OwnedSpan::EMPTY` or spans this cache owns (invariant), and
        // a cache is used only by its mutator's thread.
        unsafe { self.spans[kind.index()][class.0 as usize].take_slot() }
    }

    /// Tiny fast path: room in the current block, else null.
    #[inline(always)]
    pub(crate) fn tiny_fast(&mut self, size: usize, align: usize) -> *mut u8 {
        let off = self.tiny_off.next_multiple_of(align);
        if self.tiny != 0 && off + size <= TINY_SIZE {
            self.tiny_off = off + size;
            return (self.tiny + off) as *mut u8;
        }
        std::ptr::null_mut()
    }

    /// Go's tiny allocator: packs pointer-free, drop-free objects under 16 bytes into
    /// shared 16-byte blocks.
    #[inline]
    pub(crate) fn alloc_tiny(&mut self, size: usize, align: usize) -> *mut u8 {
        let p = self.tiny_fast(size, align);
        if !p.is_null() {
            return p;
        }
        let class = TINY_CLASS;
        let mut p = self.alloc_fast(Kind::Noscan, class);
        if p.is_null() {
            p = self.refill(Kind::Noscan, class);
            if p.is_null() {
                return p;
            }
        }
        // Keep the new block if it has more room left than the old one (Go does the same).
        if size < self.tiny_off || self.tiny == 0 {
            self.tiny = p as usize;
            self.tiny_off = size;
        }
        p
    }

    /// Small-object slow path: a new window or a new span for `(kind, class)`, then a slot.
    /// Null when out of memory.
    #[cold]
    pub(crate) fn refill(&mut self, kind: Kind, class: SizeClass) -> *mut u8 {
        #[cfg(not(feature = "profile"))]
        self.give_back(kind.index(), class.0 as usize);
        let slot = &mut self.spans[kind.index()][class.0 as usize];
        let old = *slot;
        if !old.is_empty() {
            // SAFETY: the cache owns `old` (invariant), whose window is loaded (exhausted):
            // committed before the next one is loaded.
            unsafe {
                commit(old);
                if old.reload_next() {
                    mark_free_if_marking(old);
                    return old.take_slot();
                }
                release_span(kind, class, old);
            }
            *slot = OwnedSpan::EMPTY;
        }
        let Some(s) = cache_span(kind, class) else {
            return std::ptr::null_mut();
        };
        *slot = s;
        // SAFETY: `cache_span` returns a span with a free slot loaded, now this cache's.
        unsafe {
            mark_free_if_marking(s);
            s.take_slot()
        }
    }

    /// Gives every cached span back to the central lists and forgets the tiny block (at a
    /// safepoint that stops for a collection, and when the mutator detaches).
    pub(crate) fn release_all(&mut self) {
        #[cfg(not(feature = "profile"))]
        if let Some(smp) = self.sampling.as_mut() {
            smp.tiny = (0, 0);
            for k in 0..NKINDS {
                for c in 1..NUM_SIZE_CLASSES {
                    self.give_back(k, c);
                }
            }
        }
        for (k, row) in self.spans.iter_mut().enumerate() {
            for (c, slot) in row.iter_mut().enumerate() {
                if !slot.is_empty() {
                    // SAFETY: the cache owns the span (invariant), whose window is loaded.
                    unsafe {
                        commit(*slot);
                        release_span(Kind::ALL[k], SizeClass(c as u8), *slot);
                    }
                    *slot = OwnedSpan::EMPTY;
                }
            }
        }
        self.tiny = 0;
        self.tiny_off = 0;
    }

    /// The span cached for `(kind, class)` (for allocating black).
    #[inline]
    pub(crate) fn span_of_class(&self, kind: Kind, class: SizeClass) -> *mut Span {
        self.spans[kind.index()][class.0 as usize].as_ptr()
    }
}

/// Allocate-black a window at a time (design §8, step 2): while a cycle marks, a window
/// a cache loads has its free slots marked, so the allocation fast path needs no test of
/// the marking flag. `MARKING` changes only with the world stopped, when every cache has
/// been released, so a window is loaded and committed under the same setting.
///
/// # Safety
/// The cache owns `s`, whose window was just loaded, nothing taken from it yet.
unsafe fn mark_free_if_marking(s: OwnedSpan) {
    if crate::cell::marking() {
        // SAFETY: as this function's (# Safety); a cycle marks.
        unsafe { s.mark_free() }
    }
}

/// Commits the window of `s`, first clearing the mark bits that
/// [`mark_free_if_marking`] set on the slots still free.
///
/// # Safety
/// The cache owns `s`, whose window is loaded.
unsafe fn commit(s: OwnedSpan) {
    // SAFETY: as this function's (# Safety).
    unsafe {
        if crate::cell::marking() {
            s.unmark_free();
        }
        s.commit();
    }
}

/// Returns a span whose window is committed to its central list; un-counts its free slots
/// from `HEAP_LIVE` (they were counted when it was cached).
///
/// # Safety
/// The caller's cache owned `s`, committed its window, and forgets it.
unsafe fn release_span(kind: Kind, class: SizeClass, s: OwnedSpan) {
    let sr = s.span();
    // SAFETY: the window is committed; we own the span (# Safety).
    let n = unsafe { s.allocated() };
    let unused = (sr.nelems() - n) as usize * sr.object_size();
    let _ = HEAP_LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(unused))
    });
    count_alloc(-((sr.nelems() - n) as i64), -(unused as i64));
    let mut l = central(kind, class).lock().unwrap();
    if n < sr.nelems() {
        l.partial.push(s.as_ptr());
    } else {
        l.full.push(s.as_ptr());
    }
}

/// Unswept spans one refill sweeps at most without finding a free slot before it takes a
/// fresh span instead (Go's `spanBudget` in `mcentral.cacheSpan`). A live heap leaves long
/// runs of full spans on the unswept lists (binary-trees' long-lived tree: thousands), and
/// a refill that swept them all would run for milliseconds without a safepoint, holding up
/// a collector that waits for the thread to stop. The spans left are swept by later
/// refills and by `gc-worker`'s background sweep.
const SWEEP_BUDGET: usize = 100;

/// A span of `(kind, class)` with a free slot loaded in its window: a swept partial span,
/// an unswept span after sweeping it (lazy sweep, [`SWEEP_BUDGET`] spans at most), or a
/// fresh span. Null when out of memory. Counts the span's free slots into `HEAP_LIVE`.
fn cache_span(kind: Kind, class: SizeClass) -> Option<OwnedSpan> {
    let lists = central(kind, class);
    let mut budget = SWEEP_BUDGET;
    let s = loop {
        let mut l = lists.lock().unwrap();
        if let Some(s) = l.partial.pop() {
            break s;
        }
        let unswept = if budget == 0 {
            None
        } else {
            budget -= 1;
            pop_unswept(&mut l.unswept)
        };
        let Some(s) = unswept else {
            drop(l);
            let s =
                gcapi::alloc_small_span(class, kind.span_kind(), SWEEPGEN.load(Ordering::Relaxed));
            if s.is_null() {
                return None;
            }
            // SAFETY: a fresh span (window 0 loaded), ours alone: the caller's cache
            // takes it.
            let cur = unsafe { OwnedSpan::from_raw(s) };
            let sr = cur.span();
            note_span_range(sr.base(), sr.limit());
            SPAN_BYTES.fetch_add(sr.npages() << gcapi::PAGE_SHIFT, Ordering::Relaxed);
            SPAN_COUNT.fetch_add(1, Ordering::Relaxed);
            HEAP_LIVE.fetch_add(sr.nelems() as usize * class.size(), Ordering::Relaxed);
            count_alloc(
                sr.nelems() as i64,
                (sr.nelems() as usize * class.size()) as i64,
            );
            return Some(cur);
        };
        drop(l);
        // SAFETY: popped from `unswept`: ours to sweep; not cached.
        let live = unsafe { sweep_span(s, kind.drops()) };
        // SAFETY: `s` was on a list, so it names a live span record (records are never
        // freed), and it is ours: no other thread frees or reuses it meanwhile.
        let nelems = unsafe { (*s).nelems() };
        // The sweep ends once the span is freed, listed, or ours (see `pop_unswept`).
        if live == 0 {
            free_gc_span(s);
        } else if live < nelems {
            SWEEPS_ACTIVE.fetch_sub(1, Ordering::Release);
            break s;
        } else {
            lists.lock().unwrap().full.push(s);
        }
        SWEEPS_ACTIVE.fetch_sub(1, Ordering::Release);
    };
    // SAFETY: a swept, uncached span with a free slot (its window committed by the
    // sweep), ours now: the caller's cache takes it.
    let cur = unsafe { OwnedSpan::from_raw(s) };
    // SAFETY: the span is swept, uncached and ours (the caller's cache takes it), its
    // window committed by the sweep, as `reload_from` requires; no slot is taken between
    // the load and the count, as `allocated` requires.
    let allocated = unsafe {
        let found = cur.reload_from(0);
        debug_assert!(found, "partial span without a free slot");
        cur.allocated()
    };
    let free = (cur.span().nelems() - allocated) as usize;
    HEAP_LIVE.fetch_add(free * class.size(), Ordering::Relaxed);
    count_alloc(free as i64, (free * class.size()) as i64);
    Some(cur)
}

/// Returns the collector's span `s` to the page heap and uncounts its bytes.
///
/// Contract (not checked; every caller, a sweep of `s`, meets it): `s` is an in-use span of
/// the collector that the caller just swept empty (no live object) and that is on no list
/// and in no cache.
fn free_gc_span(s: *mut Span) {
    // SAFETY: `s` is a live, in-use collector span with no live object, on no list and in
    // no cache (the contract above), as `gcapi::free_span` requires.
    unsafe {
        SPAN_BYTES.fetch_sub((*s).npages() << gcapi::PAGE_SHIFT, Ordering::Relaxed);
        SPAN_COUNT.fetch_sub(1, Ordering::Relaxed);
        gcapi::free_span(s);
    }
}

/// Allocates a large object (over 32 KiB, or aligned beyond a page). Sweeps the large
/// objects left unswept first (the lazy sweep of large spans).
pub(crate) fn alloc_large(kind: Kind, size: usize, align: usize) -> *mut u8 {
    sweep_large();
    let s = gcapi::alloc_large_span(
        size,
        align,
        kind.span_kind(),
        SWEEPGEN.load(Ordering::Relaxed),
    );
    if s.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a fresh span.
    let sr = unsafe { &*s };
    let bytes = sr.npages() << gcapi::PAGE_SHIFT;
    note_span_range(sr.base(), sr.limit());
    SPAN_BYTES.fetch_add(bytes, Ordering::Relaxed);
    SPAN_COUNT.fetch_add(1, Ordering::Relaxed);
    HEAP_LIVE.fetch_add(bytes, Ordering::Relaxed);
    count_alloc(1, bytes as i64);
    LARGE.0.lock().unwrap().swept.push(s);
    sr.base() as *mut u8
}

/// Sweeps the large objects left unswept, one span at a time.
fn sweep_large() {
    loop {
        let Some(s) = pop_unswept(&mut LARGE.0.lock().unwrap().unswept) else {
            return;
        };
        // SAFETY: popped from `unswept`: ours to sweep. One object: its header says
        // whether it has a destructor.
        if unsafe { sweep_span(s, true) } == 0 {
            free_gc_span(s);
        } else {
            LARGE.0.lock().unwrap().swept.push(s);
        }
        SWEEPS_ACTIVE.fetch_sub(1, Ordering::Release);
    }
}

/// Sweeps one span: destroys unmarked objects (when `drops`: the span's kind has
/// destructors, or it is a large span), poisons them in debug builds, turns the mark
/// bitmap into the allocation bitmap. Returns the objects still allocated.
///
/// # Safety
/// The caller took `s` from an `unswept` list (so it alone sweeps it); no marker runs.
/// `drops` is true for spans that may hold objects with destructors.
pub(crate) unsafe fn sweep_span(s: *mut Span, drops: bool) -> u32 {
    // The last mark termination's weak references and finalizers read the mark bits this
    // sweep turns into allocation bits.
    crate::weak::settle();
    // SAFETY: `s` came from an `unswept` list (# Safety), so it names a live span record
    // (records are never freed).
    let sr = unsafe { &*s };
    let sg = SWEEPGEN.load(Ordering::Relaxed);
    let claimed =
        sr.sweepgen()
            .compare_exchange(sg - 2, sg - 1, Ordering::AcqRel, Ordering::Relaxed);
    if cfg!(debug_assertions) && claimed.is_err() {
        // Not a panic: it would leave `SWEEPS_ACTIVE` counting this sweep, and every later
        // cycle would wait for it while mutators allocate without bound.
        eprintln!(
            "gc: span {s:p} swept twice in one cycle (sweepgen {}, expected {})",
            sr.sweepgen().load(Ordering::Relaxed),
            sg - 2
        );
        std::process::abort();
    }
    let kind = sr.kind();
    let size = sr.object_size();
    let mut freed = 0usize;
    let drops = drops && matches!(kind, Some(ObjectKind::Scan) | Some(ObjectKind::NoscanDrop));
    if drops {
        DESTRUCTORS.with(|d| d.set(d.get() + 1));
    }
    // SAFETY: we claimed the sweep; the span is uncached and unmarked by anyone.
    let live = unsafe {
        gcapi::sweep_bitmaps(sr, |addr| {
            if drops {
                // SAFETY: an allocated object with a header, unreachable: we drop it once.
                let vt: &'static VTable = *(addr as *const &'static VTable);
                let guard = FatalOnUnwind {
                    what: "the destructor",
                    type_name: vt.name,
                };
                (vt.drop)((addr + vt.offset) as *mut u8);
                std::mem::forget(guard);
            }
            if cfg!(debug_assertions) {
                // SAFETY: the slot is dead and ours until the bitmap swap completes.
                std::ptr::write_bytes(addr as *mut u8, POISON, size);
            }
            freed += 1;
        })
    };
    if drops {
        DESTRUCTORS.with(|d| d.set(d.get() - 1));
    }
    sr.sweepgen().store(sg, Ordering::Release);
    COUNTERS.freed.fetch_add(freed, Ordering::Relaxed);
    live
}

/// Takes a span off an `unswept` list (whose lock the caller holds) and counts it in
/// [`SWEEPS_ACTIVE`]; the caller sweeps it and decrements the count only once the span is
/// freed, back on a list, or in the caller's cache.
///
/// Decrementing earlier would let the next cycle begin too soon. A thread that is not
/// attached (one finishing `collect()`'s sweep) is never stopped: had it dropped the count
/// before relisting the span, the next cycle's sweep termination could see no sweep
/// active, mark, and move every listed span to `unswept` before the late span landed on
/// `partial`, unswept for the new cycle and claimed two generations behind by the one after.
fn pop_unswept(unswept: &mut Unswept) -> Option<*mut Span> {
    let s = unswept.pop()?;
    SWEEPS_ACTIVE.fetch_add(1, Ordering::Relaxed);
    Some(s)
}

/// Sweeps every span still unswept on the calling thread and then waits until the spans
/// other threads took to sweep are swept too (Go's `runtime.GC` after its cycle: `sweepone`
/// until none is left, then wait for `isSweepDone`). On return every destructor of the
/// objects found dead by the last cycle has run and `objects_freed` counts them. Also the
/// sweep termination of every cycle, so that no sweep of the last cycle overlaps marking.
pub(crate) fn sweep_all_and_wait() {
    finish_sweep();
    // Other sweepers only sweep (destructors included) and do not stop for a collection
    // meanwhile, so this terminates.
    while SWEEPS_ACTIVE.load(Ordering::Acquire) != 0 {
        std::thread::yield_now();
    }
}

/// Sweeps every span still unswept (Go's `finishsweep_m`), on the calling thread.
///
/// Spans are taken one at a time (Go's `sweepone`), so mutators that allocate meanwhile
/// keep finding unswept spans to sweep and reuse instead of growing the heap with fresh
/// ones while this thread works through the list.
pub(crate) fn finish_sweep() {
    sweep_lists(&mut || true);
    sweep_large();
}

/// Background sweeping (Go's `bgsweep`): sweeps the spans the last cycle left unswept,
/// on the collector's background worker, which is not attached, while the mutators run
/// (they sweep lazily too, taking spans off the same lists). Yields the processor every
/// [`BACKGROUND_SWEEP_BATCH`] spans, and returns when none is left or when `wanted` says
/// a cycle is wanted (whose sweep termination finishes the sweep); the large spans last.
pub(crate) fn sweep_in_background(wanted: impl Fn() -> bool) {
    let mut n = 0u32;
    let done = sweep_lists(&mut || {
        n += 1;
        if n % BACKGROUND_SWEEP_BATCH != 0 {
            return true;
        }
        std::thread::yield_now();
        !wanted()
    });
    if done {
        sweep_large();
    }
}

/// Spans background sweeping sweeps between two yields of the processor (Go's `bgsweep`
/// yields every 10).
const BACKGROUND_SWEEP_BATCH: u32 = 16;

/// Sweeps the unswept spans of every central list, asking `go_on` after each span
/// whether to continue. False if it said no.
fn sweep_lists(go_on: &mut dyn FnMut() -> bool) -> bool {
    for (k, row) in CENTRALS.iter().enumerate() {
        let drops = Kind::ALL[k].drops();
        for lists in row {
            if !sweep_list(lists, drops, go_on) {
                return false;
            }
        }
    }
    true
}

/// Sweeps the unswept spans of one central list, asking `go_on` after each span whether
/// to continue. False if it said no.
fn sweep_list(lists: &Central, drops: bool, go_on: &mut dyn FnMut() -> bool) -> bool {
    loop {
        let Some(s) = pop_unswept(&mut lists.0.lock().unwrap().unswept) else {
            return true;
        };
        // SAFETY: popped from `unswept`: ours to sweep; `drops` is the list's.
        let live = unsafe { sweep_span(s, drops) };
        // SAFETY: live record.
        let nelems = unsafe { (*s).nelems() };
        if live == 0 {
            free_gc_span(s);
        } else {
            let mut l = lists.0.lock().unwrap();
            if live < nelems {
                l.partial.push(s)
            } else {
                l.full.push(s)
            }
        }
        // Only now (see `pop_unswept`).
        SWEEPS_ACTIVE.fetch_sub(1, Ordering::Release);
        if !go_on() {
            return false;
        }
    }
}

/// Mark termination: every span becomes unswept and the sweep generation advances.
/// The world is stopped: no cache holds a span. O(lists): each list's vectors are swapped,
/// no span is visited.
pub(crate) fn begin_sweep_cycle() {
    // The generation first: a thread that is not attached (one finishing `collect()`'s
    // sweep) is not stopped and may pop a span off a new `unswept` list as soon as it is
    // filled; it must then read the new generation. Bumped last, it could read the old one
    // and find the span "swept twice" (`tests/back_to_back.rs`).
    SWEEPGEN.fetch_add(2, Ordering::Release);
    for row in CENTRALS.iter() {
        for lists in row.iter() {
            let mut l = lists.0.lock().unwrap();
            let Lists {
                partial,
                full,
                unswept,
            } = &mut *l;
            unswept.take_lists(partial, full);
        }
    }
    let mut l = LARGE.0.lock().unwrap();
    let LargeLists { swept, unswept } = &mut *l;
    unswept.take_lists(&mut Vec::new(), swept);
}

/// Debug check of the span lists: every listed span is an in-use GC span of the list's
/// kind and class, swept state matches its list, and every GC span allocated and not
/// freed — counted, and (except under Miri) found in the arena map — is listed or cached
/// (`cached` spans are skipped). Panics on a violation.
pub(crate) fn check_lists(cached: usize) {
    let sg = SWEEPGEN.load(Ordering::Relaxed);
    let mut listed = 0usize;
    for (k, row) in CENTRALS.iter().enumerate() {
        for (c, lists) in row.iter().enumerate() {
            let l = lists.0.lock().unwrap();
            let swept = l.partial.iter().chain(l.full.iter()).map(|s| (s, sg));
            for (&s, want) in swept.chain(l.unswept.iter().map(|s| (s, sg - 2))) {
                // SAFETY: listed spans are live records.
                let sr = unsafe { &*s };
                assert_eq!(sr.kind(), Some(Kind::ALL[k].span_kind()));
                assert_eq!(sr.size_class().0 as usize, c);
                assert_eq!(sr.sweepgen().load(Ordering::Relaxed), want);
                listed += 1;
            }
        }
    }
    let l = LARGE.0.lock().unwrap();
    listed += l.swept.len() + l.unswept.len();
    assert_eq!(
        SPAN_COUNT.load(Ordering::Relaxed),
        listed + cached,
        "GC spans allocated and not freed vs. listed + cached"
    );
    // The arena map's view too. Not under Miri: the walk visits every entry of the
    // 65,536-entry second-level table, which takes Miri about a minute per call.
    if !cfg!(miri) {
        let mut found = 0usize;
        gcapi::for_each_gc_span(|_| found += 1);
        assert_eq!(
            found,
            listed + cached,
            "GC spans in the arena map vs. listed + cached"
        );
    }
}
