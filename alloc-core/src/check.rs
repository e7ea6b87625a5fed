//! Checked builds: graded internal checks, like mimalloc's `MI_DEBUG` levels.
//!
//! | level | enabled by | cost | what |
//! |---|---|---|---|
//! | misuse | always | a branch or two per free | double free, interior and foreign pointers ([`crate::malloc::free`]) |
//! | [`check!`](crate::check!) | `check` feature, or any debug build | slow paths only | internal assertions: span invariants at each refill, list links, arena map entries |
//! | whole heap | `check-heap` feature (every Nth slow-path operation), [`crate::check_heap`] (tests) | O(heap) | [`check_whole_heap`] |
//!
//! A failed check writes one line with [`crate::report::fatal`] and aborts: it never
//! formats or panics, since it may run inside `malloc` with locks held.
//!
//! See `docs/BENCHMARKS.md` (section 5) for the measured cost of each level, and
//! [`crate::harden`] for the hardening options (poisoning, guard pages).
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use crate::arena::{self, ARENA_SIZE, HeapArena, PAGES_PER_ARENA};
use crate::mcache::{self, EMPTY_CACHE_PTR};
use crate::mcentral::CENTRAL;
use crate::mheap::HEAP;
use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE, SizeClass, SpanClass};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::{NO_WINDOW, Span, SpanState, window_mask};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Whether [`check!`](crate::check!) assertions are compiled in.
pub const ENABLED: bool = cfg!(any(debug_assertions, feature = "check"));

/// An internal assertion on a slow path: `check!(cond, "message", value)`. Compiled in
/// with the `check` feature or in debug builds; a failure ends the process with
/// `gomalloc: internal check failed: <message> 0x<value>`, without formatting or
/// allocating.
#[macro_export]
#[doc(hidden)]
macro_rules! check {
    ($cond:expr, $msg:literal, $val:expr) => {
        if $crate::check::ENABLED && !$cond {
            $crate::report::fatal(concat!("internal check failed: ", $msg), $val as usize)
        }
    };
}

/// Default of [`set_heap_check_interval`].
pub const DEFAULT_HEAP_CHECK_INTERVAL: usize = 32;

static INTERVAL: AtomicUsize = AtomicUsize::new(DEFAULT_HEAP_CHECK_INTERVAL);
#[cfg(feature = "check-heap")]
static OPS: AtomicUsize = AtomicUsize::new(0);
static HEAP_CHECKS: AtomicUsize = AtomicUsize::new(0);
/// Arenas the last whole-heap walk saw (scales the interval).
static ARENAS_SEEN: AtomicUsize = AtomicUsize::new(1);

/// With the `check-heap` feature, run `check_whole_heap` after every `n`-th slow-path
/// operation (refill, large allocation, remote or large free, moving realloc) per arena
/// of the heap: the walk's cost grows with the arenas, so its cost per operation stays
/// the same as the heap grows. `1` checks after each operation while the heap has one
/// arena. Without the feature this only stores the value.
pub fn set_heap_check_interval(n: usize) {
    INTERVAL.store(n.max(1), Ordering::Relaxed);
}

/// Whole-heap checks run so far (by the `check-heap` feature or [`crate::check_heap`]).
pub fn heap_checks() -> usize {
    HEAP_CHECKS.load(Ordering::Relaxed)
}

/// Called at the end of each slow-path operation, with no allocator lock held.
#[inline(always)]
pub(crate) fn after_slow_op() {
    #[cfg(feature = "check-heap")]
    {
        let n = OPS.fetch_add(1, Ordering::Relaxed) + 1;
        let every = INTERVAL.load(Ordering::Relaxed) * ARENAS_SEEN.load(Ordering::Relaxed);
        if n >= every {
            OPS.store(0, Ordering::Relaxed);
            check_whole_heap();
        }
    }
}

/// Checks every invariant of the heap that can be checked without stopping other threads,
/// and aborts with a message on the first violation. Takes each mcentral's lock in turn,
/// then the heap lock; allocates nothing. Must be called with no allocator lock held.
///
/// 1. The calling thread's cache: each span (cached or retained) is in use, of the slot's
///    class, owned by this cache, with a well-formed window (none if retained) and no
///    bitmap bit past its last slot; a retained span's window holds every slot free in
///    its bitmap word.
/// 2. Every mcentral's partial list: links, length; each span unowned, in use, of the
///    class, window committed, `0 < popcount(bitmap) < nelems`.
/// 3. The arena map (under the heap lock), arena by arena in address order: every entry
///    points at a span that starts at or covers that page; an in-use span maps each of its
///    pages, a free run only its first and last (interior entries null); `page_in_use` is
///    set exactly at in-use span starts; released ("scavenged") pages lie only in free
///    runs; no two free runs touch; small spans have the geometry of their class. The
///    pages and objects found add up to the page heap's counters.
///
/// # Time Complexity
/// O(arenas × 8192 + spans in partial lists + second-level tables × 65536).
pub fn check_whole_heap() {
    HEAP_CHECKS.fetch_add(1, Ordering::Relaxed);
    check_own_cache();
    for (i, c) in CENTRAL.iter().enumerate() {
        let partial = c.partial.lock();
        // Empty spans in a partial list are the ones the mcentral keeps for reuse.
        let mut kept = 0;
        partial.for_each(|s| {
            // SAFETY: members of a partial list are valid records, owned by the holder of
            // the list's lock (we hold it).
            let sr = unsafe { &*s };
            check!(
                sr.owner.load(Ordering::Relaxed).is_null(),
                "partial span has an owner",
                s
            );
            check!(
                sr.in_partial.get(),
                "partial span not flagged in_partial",
                s
            );
            check!(
                sr.spanclass.get() == SpanClass::malloc(SizeClass(i as u8)),
                "span in the wrong mcentral",
                s
            );
            check!(
                sr.window_free() == 0,
                "unowned span with a loaded window",
                s
            );
            // SAFETY: an unowned partial span is the partial lock holder's (we hold it), so
            // its window and bitmap are ours to read.
            let n = unsafe { small_span(sr) };
            check!(n < sr.nelems.get(), "full span in partial list", s);
            kept += usize::from(n == 0);
        });
        check!(
            kept == c.kept_empty(),
            "kept empty spans out of step with their count",
            kept
        );
    }
    let heap = HEAP.lock();
    let found = walk_arenas();
    ARENAS_SEEN.store(heap.c.arenas.max(1), Ordering::Relaxed);
    if !cfg!(test) {
        // Unit tests build private page heaps in the same arena map; their pages are not
        // the global heap's, so the totals only add up in other builds.
        let c = &heap.c;
        check!(
            found.inuse == c.pages_inuse,
            "in-use pages differ from the counter",
            found.inuse
        );
        check!(
            found.free == c.pages_free,
            "free pages differ from the counter",
            found.free
        );
        check!(
            found.released == c.pages_released,
            "released pages differ",
            found.released
        );
        check!(
            found.large == c.large_objects,
            "large objects differ",
            found.large
        );
        check!(
            found.large_pages == c.large_pages,
            "large pages differ",
            found.large_pages
        );
        check!(
            (found.inuse + found.free) << PAGE_SHIFT == c.heap_sys,
            "heap_sys differs",
            c.heap_sys
        );
    }
}

/// Checks the calling thread's own cache (no lock: only this thread touches its spans'
/// windows and bitmaps).
fn check_own_cache() {
    let c = mcache::current();
    if c == EMPTY_CACHE_PTR {
        return;
    }
    for class in 0..NUM_SIZE_CLASSES {
        let spc = SpanClass::malloc(SizeClass(class as u8));
        // SAFETY: `c` is this thread's live cache.
        let hint = unsafe { (*c).free_span(class) };
        check!(
            core::ptr::eq(hint, mcache::EMPTY_SPAN_PTR)
                || (hint.owner.load(Ordering::Relaxed) == c && hint.spanclass.get() == spc),
            "free hint names a span of another class or cache",
            hint as *const Span as usize
        );
        // SAFETY: `c` is this thread's live cache.
        let sr = unsafe { (*c).span(class) };
        if sr.state() == SpanState::Dead && sr.base.get() == 0 {
            continue; // the static empty span
        }
        let s = sr as *const Span;
        check!(sr.state() == SpanState::InUse, "cached span not in use", s);
        check!(
            sr.owner.load(Ordering::Relaxed) == c,
            "cached span owned by another cache",
            s
        );
        check!(
            sr.spanclass.get() == spc,
            "span cached under the wrong class",
            s
        );
        check!(
            !sr.in_partial.get(),
            "cached span also in a partial list",
            s
        );
        // SAFETY: this thread owns the span.
        unsafe { small_span(sr) };
    }
    let mut pages = 0;
    // SAFETY: `c` is this thread's live cache; the closure only reads.
    unsafe {
        mcache::for_each_retained(&*c, |class, s| {
            pages += class.npages();
            // SAFETY: retained spans are valid records this thread owns.
            let sr = &*s;
            check!(
                sr.state() == SpanState::InUse,
                "retained span not in use",
                s
            );
            check!(
                sr.owner.load(Ordering::Relaxed) == c,
                "retained span owned by another cache",
                s
            );
            check!(
                sr.spanclass.get() == SpanClass::malloc(class)
                    && !core::ptr::eq((*c).span(class.index()), s),
                "retained span of the wrong class, or also cached",
                s
            );
            let w = sr.window();
            check!(
                !sr.in_partial.get() && (w == NO_WINDOW || !sr.single_window() || w == 0),
                "retained span in a partial list, or with a window it should not keep",
                s
            );
            small_span(sr);
            // With a window (a single-window span's one word, `Span::retain`, or a window
            // loaded for frees), the window holds every slot free in its word as last
            // committed, and those the owner freed since.
            check!(
                w == NO_WINDOW || {
                    let word = *sr.alloc_bits.get().add(w as usize >> 6);
                    !word & window_mask(w, sr.nelems.get()) & !sr.window_free() == 0
                },
                "retained window lost a free slot",
                s
            );
        })
    };
    // SAFETY: `c` is this thread's live cache, which this thread owns.
    let counted = unsafe { mcache::retained_pages(&*c) };
    check!(
        pages == counted && pages <= mcache::RETAIN_TOTAL_BYTES >> PAGE_SHIFT,
        "retained pages differ from the cache's count, or pass the bound",
        pages
    );
}

/// Checks the invariants written on [`Span`] for an in-use small span the caller owns (or
/// whose mcentral lock it holds); returns the number of allocated slots in the bitmap
/// (the loaded window's word excluded when a window is loaded).
///
/// # Safety
/// The caller owns the span: nobody else reads or writes its window and bitmap.
pub unsafe fn small_span(sr: &Span) -> u32 {
    let s = sr as *const Span;
    check!(sr.state() == SpanState::InUse, "span not in use", s);
    check!(
        !sr.is_large(),
        "large span where a small one was expected",
        s
    );
    let class = sr.spanclass.get().size_class();
    let nelems = sr.nelems.get();
    check!(
        sr.elemsize.get() as usize == class.size(),
        "span elemsize is not its class's",
        s
    );
    check!(
        sr.div_magic.get() == class.div_magic(),
        "span div_magic is not its class's",
        s
    );
    check!(
        nelems as usize == class.nelems(),
        "span nelems is not its class's",
        s
    );
    check!(
        sr.npages.get() == class.npages(),
        "span npages is not its class's",
        s
    );
    let w = sr.window();
    let e = sr.elemsize.get() as usize;
    check!(
        sr.objs_bytes.get() as usize == nelems as usize * e,
        "span objs_bytes stale",
        s
    );
    // `window_word` names the window's bitmap word, and none with no window (`NO_WINDOW`
    // is above every slot).
    check!(
        (0..nelems)
            .step_by(64)
            .all(|i| sr.in_window(i as usize) == (i == w)),
        "span window_word stale",
        s
    );
    if w == NO_WINDOW {
        check!(
            sr.window_free() == 0 && sr.win_bytes.get() == 0,
            "span without a window has window bits",
            s
        );
    } else {
        check!(w % 64 == 0 && w < nelems, "span window out of range", s);
        check!(
            sr.window_base.get() == sr.base.get() + w as usize * e
                && sr.win_bytes.get() as usize == (nelems - w).min(64) as usize * e,
            "span window_base/win_bytes stale",
            s
        );
        check!(
            sr.window_free() & !window_mask(w, nelems) == 0,
            "window bits past nelems",
            s
        );
    }
    let mut n = 0;
    for i in 0..nelems.div_ceil(64) {
        // SAFETY: `i < ceil(nelems / 64)`: inside the span's bitmap; the caller owns it.
        let b = unsafe { *sr.alloc_bits.get().add(i as usize) };
        check!(
            b & !window_mask(i * 64, nelems) == 0,
            "bitmap bits past nelems",
            s
        );
        if sr.window_free() == 0 || i * 64 != w {
            n += b.count_ones();
        }
    }
    n
}

/// Totals found by [`walk_arenas`], in pages (objects for `large`).
#[derive(Default)]
struct Found {
    inuse: usize,
    free: usize,
    released: usize,
    large: usize,
    large_pages: usize,
}

/// The arena-map walk of [`check_whole_heap`]. Heap lock held.
fn walk_arenas() -> Found {
    let mut f = Found::default();
    // The span whose pages are being walked (it may run on into the next arena), one past
    // its end, and where the last free run ended (to catch uncoalesced neighbours).
    let (mut cur, mut end, mut free_end) = (core::ptr::null_mut::<Span>(), 0usize, 0usize);
    let mut next_base = 0;
    arena::for_each_arena(|base, ha| {
        check!(
            end <= base || base == next_base,
            "span runs into a missing arena",
            base
        );
        next_base = base + ARENA_SIZE;
        // SAFETY: `ha` is a live arena record; the heap lock is held, so its page map and
        // bitmaps are stable.
        let ha: &HeapArena = unsafe { &*ha };
        for i in 0..PAGES_PER_ARENA {
            let addr = base + (i << PAGE_SHIFT);
            let e = ha.spans[i].load(Ordering::Relaxed);
            let in_use_start =
                ha.page_in_use[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0;
            let released = ha.scavenged[i / 64] & (1 << (i % 64)) != 0;
            if addr < end {
                // SAFETY: `cur` is the valid record whose pages we are walking.
                let cr = unsafe { &*cur };
                check!(!in_use_start, "page_in_use set inside a span", addr);
                if cr.state() == SpanState::InUse {
                    // Every page maps to the span, or its last only past the first
                    // (`Span::ends_only`).
                    let mapped = !cr.ends_only.get() || addr + PAGE_SIZE == end;
                    check!(
                        e == if mapped { cur } else { core::ptr::null_mut() },
                        "in-use span page maps wrongly",
                        addr
                    );
                    check!(!released, "released page inside an in-use span", addr);
                } else if addr + PAGE_SIZE == end {
                    check!(e == cur, "free run's last page does not map to it", addr);
                    f.released += usize::from(released);
                } else {
                    check!(e.is_null(), "free run's interior page maps somewhere", addr);
                    f.released += usize::from(released);
                }
                continue;
            }
            if e.is_null() {
                check!(!in_use_start, "page_in_use set on an unmapped page", addr);
                check!(!released, "released bit on a page outside the heap", addr);
                continue;
            }
            // SAFETY: arena-map entries point to valid records.
            let er = unsafe { &*e };
            check!(
                er.base.get() == addr,
                "arena map entry for a span starting elsewhere",
                addr
            );
            check!(er.npages.get() > 0, "span of no pages", e);
            cur = e;
            end = addr + (er.npages.get() << PAGE_SHIFT);
            match er.state() {
                SpanState::InUse => {
                    check!(
                        in_use_start,
                        "page_in_use clear at an in-use span start",
                        addr
                    );
                    check!(!released, "released page inside an in-use span", addr);
                    f.inuse += er.npages.get();
                    if er.is_large() {
                        check!(er.nelems.get() == 1, "large span with several objects", e);
                        f.large += 1;
                        f.large_pages += er.npages.get();
                    } else {
                        let class = er.spanclass.get().size_class();
                        check!(
                            (class.0 as usize) < crate::sizeclasses::NUM_SIZE_CLASSES,
                            "bad size class",
                            e
                        );
                        check!(
                            er.elemsize.get() as usize == class.size(),
                            "bad elemsize",
                            e
                        );
                        check!(
                            er.npages.get() == class.npages(),
                            "bad small span length",
                            e
                        );
                        check!(
                            er.nelems.get() as usize * class.size() <= er.npages.get() * PAGE_SIZE,
                            "slots overrun the span",
                            e
                        );
                    }
                }
                SpanState::Free => {
                    check!(!in_use_start, "page_in_use set at a free run", addr);
                    check!(
                        free_end != addr,
                        "two free runs touch (not coalesced)",
                        addr
                    );
                    f.free += er.npages.get();
                    f.released += usize::from(released);
                    free_end = end;
                }
                SpanState::Dead => crate::report::fatal("arena map points at a dead record", addr),
            }
        }
    });
    check!(end <= next_base, "span runs past the last arena", end);
    f
}
