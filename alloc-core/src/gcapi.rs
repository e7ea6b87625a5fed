//! The garbage collector's view of the heap (used by the `gomalloc-gc` crate; see
//! `docs/gc-design.md`).
//!
//! The collector keeps its own spans, apart from the spans `malloc` uses, on the same page
//! heap (`crate::mheap::HEAP`) and the same arena map. A span belongs to the collector
//! while `Span::gc` is non-zero: it then holds objects of one *kind*
//! ([`KIND_SCAN`], [`KIND_NOSCAN_DROP`], [`KIND_NOSCAN`]) and is never touched by `malloc`'s
//! caches, central lists or remote frees. This module gives the collector what Go's
//! runtime takes from `mheap.go`, `mbitmap.go` and `mgcsweep.go`:
//!
//! * spans: [`alloc_small_span`], [`alloc_large_span`], [`free_span`];
//! * "address -> span -> object start + is allocated" for conservative scanning:
//!   [`find_object`] (interior pointers resolve to their object);
//! * per-span mark bits, set atomically by parallel markers: [`mark`], [`is_marked`];
//! * sweeping by turning the mark bitmap into the allocation bitmap: [`sweep_bitmaps`];
//! * enumeration of the collector's in-use spans through the arena map: [`for_each_gc_span`];
//! * for the collector's off-heap misuse checker, the allocated `malloc` blocks:
//!   [`for_each_malloc_block`], [`find_malloc_block`].
//!
//! Who may touch what (in addition to the rules on `Span`):
//! 1. The collector's span cache that holds a span owns its window and allocation bitmap,
//!    like an mcache; the collector's central list lock owns an uncached span.
//! 2. Allocation bits read by [`find_object`] are exact only for spans whose window is
//!    committed (`Span::commit_window`): the collector commits every window before it
//!    scans (the world is stopped).
//! 3. Mark bits are written only with atomic read-modify-writes while marking, and read or
//!    cleared (atomically) by the span's sweeper afterwards.
//! 4. The allocation bitmap of a collector span is read by [`find_object`] on any thread
//!    while its owner may write it, so every write to it and every read that another
//!    thread's write may overlap is a relaxed atomic word access (`Span::commit_window`,
//!    [`sweep_bitmaps`], [`find_object`]; a plain move on x86-64). The owner's own reads
//!    (`Span::load_window_from`) stay plain: they race with no write. The span's other
//!    fields are published by the release store of `Span::gc` (`claim`) that
//!    [`find_object`] reads with acquire.

use crate::arena;
use crate::mheap::HEAP;
use crate::sizeclass::{PAGE_SIZE, SpanClass};
use crate::span::SpanState;
use core::sync::atomic::{AtomicU64, Ordering};

// The rest of the heap that the collector uses, re-exported here so that the heap's
// modules stay private to it.
pub use crate::arena::span_of;
pub use crate::harden::POISONING;
pub use crate::malloc::small_class;
pub use crate::mcache::EMPTY_SPAN;
pub use crate::sizeclass::{PAGE_SHIFT, SizeClass, obj_index, size_to_class};
pub use crate::sizeclasses::{MAX_SMALL_SIZE, NUM_SIZE_CLASSES};
pub use crate::span::Span;

/// `Span::gc` of a malloc span: not the collector's.
pub const KIND_MALLOC: u8 = 0;
/// Objects that hold GC pointers: a one-word header, scanned by the collector.
pub const KIND_SCAN: u8 = 1;
/// Pointer-free objects with a destructor: a one-word header, never scanned.
pub const KIND_NOSCAN_DROP: u8 = 2;
/// Pointer-free objects without a destructor: no header, never scanned (tiny blocks too).
pub const KIND_NOSCAN: u8 = 3;

/// Allocates a fresh small-object span of `class` for the collector, with window 0 loaded
/// (every slot free) and sweep generation `sweepgen`. Null when out of memory.
pub fn alloc_small_span(class: SizeClass, kind: u8, sweepgen: u32) -> *mut Span {
    crate::check!(
        class != SizeClass::LARGE && kind != KIND_MALLOC && kind <= KIND_NOSCAN,
        "alloc_small_span: large class or bad object kind",
        kind
    );
    let spc = SpanClass::new(class, kind != KIND_SCAN);
    let s = HEAP.lock().alloc_span(class.npages(), 0, spc);
    if !s.is_null() {
        // SAFETY: a fresh in-use span record, ours alone.
        unsafe { claim(&*s, kind, sweepgen) };
    }
    s
}

/// Allocates a span holding one large object of `size` bytes aligned to `align` for the
/// collector. Its mark bit is clear. Null when out of memory or the request is impossible.
pub fn alloc_large_span(size: usize, align: usize, kind: u8, sweepgen: u32) -> *mut Span {
    crate::check!(
        kind != KIND_MALLOC && kind <= KIND_NOSCAN,
        "alloc_large_span: bad object kind",
        kind
    );
    if size > isize::MAX as usize - PAGE_SIZE || !align.is_power_of_two() || align > 1 << 40 {
        return core::ptr::null_mut();
    }
    let npages = size.max(1).div_ceil(PAGE_SIZE);
    let spc = SpanClass::new(SizeClass::LARGE, kind != KIND_SCAN);
    let s = HEAP.lock().alloc_span(npages, align, spc);
    if !s.is_null() {
        // SAFETY: a fresh in-use span record, ours alone; its mark bitmap slot has at
        // least one word (the bitmap slot of its first page).
        unsafe {
            (*s).mark_bits.get().write(0);
            claim(&*s, kind, sweepgen);
        }
    }
    s
}

/// Marks a fresh span as the collector's. The release store publishes the span's fields
/// to [`find_object`], which reads `gc` with acquire.
fn claim(s: &Span, kind: u8, sweepgen: u32) {
    s.sweepgen.store(sweepgen, Ordering::Relaxed);
    s.gc.store(kind, Ordering::Release);
}

/// Returns one of the collector's spans to the page heap.
///
/// # Safety
/// `s` is an in-use span of the collector that no cache, list or live object references.
pub unsafe fn free_span(s: *mut Span) {
    // SAFETY: `s` is an in-use collector span nothing else references (# Safety): a live
    // record ours alone, as `MHeap::free_span` requires.
    unsafe {
        crate::check!(
            (*s).gc.load(Ordering::Relaxed) != KIND_MALLOC,
            "gcapi::free_span of a malloc span",
            s
        );
        // A sampled object's span (feature `profile`): its free is counted, as Go's
        // sweep calls `mProf_Free`.
        #[cfg(feature = "profile")]
        if (*s).prof_bucket.get() != 0 {
            crate::profile::freed(&*s);
        }
        (*s).gc.store(KIND_MALLOC, Ordering::Release);
        HEAP.lock().free_span(s);
    }
}

/// An object of the collector's heap, found from an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its span.
    pub span: *mut Span,
    /// Its slot index in the span (0 for a large object).
    pub index: usize,
    /// Address of its first byte.
    pub base: usize,
}

impl ObjectRef {
    /// The span record.
    #[inline]
    pub fn span(&self) -> &'static Span {
        // SAFETY: `find_object` only builds refs to live span records, and span records are
        // never unmapped.
        unsafe { &*self.span }
    }
}

/// Resolves `addr` (possibly pointing inside an object) to an allocated object of the
/// collector's heap: arena map -> span -> `gc != 0` and in use -> slot -> allocation bit.
/// `None` for anything else (malloc memory, free slots, addresses outside the heap).
/// Lock-free; never aborts.
///
/// Allocation bits are exact only for spans whose window is committed (rule 2 above): for a
/// span cached by a running mutator an allocated object of the loaded window may read as
/// free.
#[inline]
pub fn find_object(addr: usize) -> Option<ObjectRef> {
    let s = span_of(addr);
    if s.is_null() {
        return None;
    }
    // SAFETY: arena-map entries point to live span records (never freed).
    let sr = unsafe { &*s };
    if sr.gc.load(Ordering::Acquire) == KIND_MALLOC || sr.state() != SpanState::InUse {
        return None;
    }
    let base = sr.base.get();
    if addr < base || addr >= sr.limit() {
        return None;
    }
    if sr.is_large() {
        return Some(ObjectRef {
            span: s,
            index: 0,
            base,
        });
    }
    let index = obj_index(addr - base, sr.div_magic.get());
    if index >= sr.nelems.get() as usize {
        return None;
    }
    // SAFETY: `index < nelems`, so the word lies in the span's allocation bitmap.
    let word = unsafe { alloc_word(sr, index >> 6) }.load(Ordering::Relaxed);
    if word & (1 << (index & 63)) == 0 {
        return None;
    }
    Some(ObjectRef {
        span: s,
        index,
        base: base + index * sr.elemsize.get() as usize,
    })
}

/// Word `w` of the span's allocation bitmap as an atomic (rule 4): its owner writes it
/// (`Span::commit_window`, the sweep) while [`find_object`] may read it on another thread.
///
/// # Safety
/// `span` is a live span of the collector and `w < nelems.div_ceil(64)`.
#[inline(always)]
unsafe fn alloc_word(span: &Span, w: usize) -> &AtomicU64 {
    // SAFETY: `w` is inside the bitmap (# Safety), 8-byte aligned; every access to a
    // collector span's allocation bitmap that another thread's may overlap is atomic
    // (rule 4), so no plain access races with this one.
    unsafe { AtomicU64::from_ptr(span.alloc_bits.get().add(w)) }
}

/// The mark-bitmap word of slot `index` as an atomic.
///
/// # Safety
/// `span` is a live span of the collector and `index < nelems`.
#[inline(always)]
unsafe fn mark_word(span: &Span, index: usize) -> &AtomicU64 {
    // SAFETY: `index < nelems` (# Safety), so the word lies in the span's mark bitmap,
    // 8-byte aligned and only ever accessed atomically while markers run (rule 3).
    unsafe { AtomicU64::from_ptr(span.mark_bits.get().add(index >> 6)) }
}

/// Sets the object's mark bit; true if it was clear (the caller greys the object).
///
/// # Safety
/// `obj` came from [`find_object`] (or names a slot allocated by the caller) and its span
/// has not been swept or freed since.
#[inline(always)]
pub unsafe fn mark(obj: ObjectRef) -> bool {
    let m = 1u64 << (obj.index & 63);
    // SAFETY: `obj` names a slot of a span not swept or freed since (# Safety), so its
    // mark word is live.
    unsafe { mark_word(obj.span(), obj.index) }.fetch_or(m, Ordering::Relaxed) & m == 0
}

/// True if the object's mark bit is set.
///
/// # Safety
/// As for [`mark`].
#[inline(always)]
pub unsafe fn is_marked(obj: ObjectRef) -> bool {
    let m = 1u64 << (obj.index & 63);
    // SAFETY: as for `mark`: `obj` names a slot of a span not swept or freed since.
    unsafe { mark_word(obj.span(), obj.index) }.load(Ordering::Relaxed) & m != 0
}

/// Sweeps the bitmaps of one of the collector's spans (Go's `mspan.sweep`): calls
/// `on_free(object_address)` for every object allocated but not marked, then makes the
/// mark bitmap the allocation bitmap, clears the mark bitmap and recounts `alloc_count`.
/// Returns the number of objects still allocated. For a large span: 1 if its object is
/// marked, else 0 after `on_free(base)`; the caller frees the span.
///
/// # Safety
/// The caller owns the span (its central lock, or it claimed the span's sweep), the span
/// is in no cache (its window is committed) and no marker runs.
pub unsafe fn sweep_bitmaps(span: &Span, mut on_free: impl FnMut(usize)) -> u32 {
    crate::check!(
        span.gc.load(Ordering::Relaxed) != KIND_MALLOC,
        "sweep_bitmaps of a malloc span",
        span as *const Span as usize
    );
    crate::check!(
        span.alloc_cache.get() == 0,
        "sweeping a cached span",
        span.base.get()
    );
    let base = span.base.get();
    if span.is_large() {
        // SAFETY: a large span's bitmaps have at least one word; mark words are accessed
        // atomically (rule 3).
        let mb = unsafe { AtomicU64::from_ptr(span.mark_bits.get()) };
        let live = mb.load(Ordering::Relaxed) & 1;
        mb.store(0, Ordering::Relaxed);
        if live == 0 {
            on_free(base);
        }
        return live as u32;
    }
    let size = span.elemsize.get() as usize;
    let words = span.bitmap_words();
    let mut live = 0;
    let mut freed_any = false;
    for i in 0..words {
        // SAFETY: `i < words`: inside both bitmaps, which the caller owns. Relaxed atomic
        // accesses (plain moves on x86-64): `find_object` may read the allocation word on
        // another thread (rule 4); mark words are atomic (rule 3).
        let (aw, mw) = unsafe { (alloc_word(span, i), mark_word(span, i * 64)) };
        let (a, m) = (aw.load(Ordering::Relaxed), mw.load(Ordering::Relaxed));
        crate::check!(
            (m & !a) == 0,
            "marked slot that is not allocated",
            base + i * 64 * size
        );
        let mut dead = a & !m;
        freed_any |= dead != 0;
        while dead != 0 {
            let idx = i * 64 + dead.trailing_zeros() as usize;
            on_free(base + idx * size);
            dead &= dead - 1;
        }
        aw.store(m, Ordering::Relaxed);
        mw.store(0, Ordering::Relaxed);
        live += m.count_ones();
    }
    span.alloc_count.set(live);
    span.set_window(0);
    if freed_any {
        span.needzero.set(true);
    }
    live
}

/// Calls `f` for every in-use span of the collector, found through the arena map's
/// start-of-span bits. Spans created or freed meanwhile may or may not be seen.
pub fn for_each_gc_span(mut f: impl FnMut(*mut Span)) {
    arena::for_each_arena(|_, ha| {
        // SAFETY: `ha` is a live arena record (never freed).
        let words = unsafe { &(*ha).page_in_use };
        for (w, word) in words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let page = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // SAFETY: `ha` is a live arena record (never freed), and `page` comes from its
                // `page_in_use` bitmap, so it indexes `spans`.
                let s = unsafe { (*ha).spans[page].load(Ordering::Acquire) };
                // SAFETY: arena-map entries point to live span records.
                if !s.is_null() && unsafe { (*s).gc.load(Ordering::Acquire) } != KIND_MALLOC {
                    f(s);
                }
            }
        }
    });
}

/// The slots of word `w` of malloc span `s` that hold allocated blocks: the loaded
/// window's from `alloc_cache` (its free slots), the others' from the allocation bitmap,
/// less the slots freed remotely and not yet collected (the remote-free bitmap).
///
/// # Safety
/// `s` is an in-use small malloc span and `w < s.bitmap_words()`. The span's owner (the
/// thread whose cache holds it, or its mcentral) writes `alloc_cache`, the window and the
/// bitmap without synchronisation: the answer is exact only while that owner is stopped
/// (see [`for_each_malloc_block`]).
unsafe fn malloc_alloc_word(s: &Span, w: usize) -> u64 {
    let nelems = s.nelems.get();
    let mask = crate::span::window_mask(w as u32 * 64, nelems);
    let bits = if s.window() != crate::span::NO_WINDOW && s.window() as usize / 64 == w {
        mask & !s.alloc_cache.get()
    } else {
        // SAFETY: `w < bitmap_words` (# Safety): inside the allocation bitmap.
        unsafe { core::ptr::read_volatile(s.alloc_bits.get().add(w)) & mask }
    };
    // SAFETY: the remote-free bitmap has the allocation bitmap's words and is only ever
    // accessed atomically.
    let remote = unsafe { (*s.xfree_bits.get().add(w)).load(Ordering::Acquire) };
    bits & !remote
}

/// The malloc span holding `addr` if it is an in-use malloc span, with `addr` inside its
/// pages.
fn malloc_span_of(addr: usize) -> Option<&'static Span> {
    let s = span_of(addr);
    if s.is_null() {
        return None;
    }
    // SAFETY: arena-map entries point to live span records (never freed).
    let sr = unsafe { &*s };
    if sr.gc.load(Ordering::Acquire) != KIND_MALLOC
        || sr.state() != SpanState::InUse
        || addr < sr.base.get()
        || addr >= sr.limit()
    {
        return None;
    }
    Some(sr)
}

/// Resolves `addr` (possibly inside a block) to an allocated `malloc` block:
/// `(block start, block size)`. `None` for anything else. The same caveat as
/// [`for_each_malloc_block`]: exact only while the span's owner is stopped.
pub fn find_malloc_block(addr: usize) -> Option<(usize, usize)> {
    let sr = malloc_span_of(addr)?;
    let base = sr.base.get();
    if sr.is_large() {
        return Some((base, sr.usable_size()));
    }
    let size = sr.elemsize.get() as usize;
    let index = obj_index(addr - base, sr.div_magic.get());
    if index >= sr.nelems.get() as usize {
        return None;
    }
    // SAFETY: an in-use small malloc span; `index < nelems`, so its word is in the bitmap.
    let word = unsafe { malloc_alloc_word(sr, index / 64) };
    (word & (1 << (index % 64)) != 0).then_some((base + index * size, size))
}

/// Calls `f(block start, block size)` for every allocated `malloc` block (the garbage
/// collector's off-heap misuse checker, `GOMALLOC_GCCHECKROOTS`). Large blocks report
/// their usable size.
///
/// Which blocks are allocated is read from state the spans' owners write without
/// synchronisation (a cache's window, bitmaps): exact for spans whose owning thread is
/// stopped (the collector calls this with every attached thread stopped at a safepoint)
/// and for spans no cache holds; for a span of a thread that runs meanwhile (one that
/// never attached to the collector) a block allocated or freed meanwhile may be missed or
/// reported, and the reads race with that thread's writes, as every conservative
/// scanner's reads of memory it does not own do. Spans created or freed meanwhile may or
/// may not be seen.
pub fn for_each_malloc_block(mut f: impl FnMut(usize, usize)) {
    arena::for_each_arena(|_, ha| {
        // SAFETY: `ha` is a live arena record (never freed).
        let words = unsafe { &(*ha).page_in_use };
        for (w, word) in words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let page = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // SAFETY: `ha` is a live arena record, and `page` comes from its
                // `page_in_use` bitmap, so it indexes `spans`.
                let s = unsafe { (*ha).spans[page].load(Ordering::Acquire) };
                if s.is_null() {
                    continue;
                }
                // SAFETY: arena-map entries point to live span records.
                let sr = unsafe { &*s };
                if sr.gc.load(Ordering::Acquire) != KIND_MALLOC || sr.state() != SpanState::InUse {
                    continue;
                }
                let base = sr.base.get();
                if sr.is_large() {
                    f(base, sr.usable_size());
                    continue;
                }
                let size = sr.elemsize.get() as usize;
                for bw in 0..sr.bitmap_words() {
                    // SAFETY: an in-use small malloc span, `bw < bitmap_words`.
                    let mut alloc = unsafe { malloc_alloc_word(sr, bw) };
                    while alloc != 0 {
                        let idx = bw * 64 + alloc.trailing_zeros() as usize;
                        alloc &= alloc - 1;
                        f(base + idx * size, size);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizeclass::size_to_class;

    /// Blocks this thread allocates are found (from their first byte and from inside),
    /// with their slot size, while allocated, through the window of the span its cache
    /// allocates from, and no longer once freed; large blocks too.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "walks the arena map's 65,536-entry table, minutes under Miri"
    )]
    fn malloc_blocks_are_enumerated_while_allocated() {
        let small: Vec<*mut u8> = (0..200).map(|_| crate::malloc::alloc(48, 8)).collect();
        let large = crate::malloc::alloc(100_000, 8);
        let mut seen = std::collections::HashMap::new();
        for_each_malloc_block(|b, size| {
            seen.insert(b, size);
        });
        for &p in small.iter().chain([&large]) {
            let (b, size) = find_malloc_block(p as usize + 7).expect("an allocated block");
            assert_eq!(b, p as usize);
            assert_eq!(seen.get(&b), Some(&size));
            assert!(size >= if p == large { 100_000 } else { 48 });
        }
        for &p in small.iter().step_by(2).chain([&large]) {
            // SAFETY: allocated above, freed once.
            unsafe { crate::malloc::free(p) };
        }
        let mut after = std::collections::HashSet::new();
        for_each_malloc_block(|b, _| {
            after.insert(b);
        });
        for (i, &p) in small.iter().enumerate() {
            assert_eq!(after.contains(&(p as usize)), i % 2 == 1, "block {i}");
            assert_eq!(
                find_malloc_block(p as usize).is_some(),
                i % 2 == 1,
                "block {i}"
            );
        }
        for &p in small.iter().skip(1).step_by(2) {
            // SAFETY: allocated above, not freed yet.
            unsafe { crate::malloc::free(p) };
        }
    }

    #[test]
    fn objects_resolve_mark_and_sweep() {
        let s = alloc_small_span(size_to_class(48), KIND_SCAN, 2);
        assert!(!s.is_null());
        // SAFETY: our span; we are its only user.
        let sr = unsafe { &*s };
        let a = sr.next_free_fast() as usize;
        let b = sr.next_free_fast() as usize;
        let c = sr.next_free_fast() as usize;
        // SAFETY: we own the span.
        unsafe { sr.commit_window() };
        let ob = find_object(b + 17).expect("interior pointer resolves");
        assert_eq!(ob.base, b);
        assert!(find_object(c + 48).is_none(), "free slot");
        assert!(find_object(&ob as *const _ as usize).is_none(), "not heap");
        let mut seen = 0;
        for_each_gc_span(|x| seen += (x == s) as usize);
        assert_eq!(seen, 1);
        // SAFETY: objects of our span, no other marker.
        unsafe {
            assert!(mark(ob));
            assert!(!mark(ob));
            assert!(mark(find_object(a).unwrap()));
            assert!(is_marked(ob));
        }
        let mut freed = Vec::new();
        // SAFETY: we own the uncached span.
        let live = unsafe { sweep_bitmaps(sr, |p| freed.push(p)) };
        assert_eq!((live, freed), (2, vec![c]));
        assert!(find_object(c).is_none());
        // SAFETY: `ob` survived the sweep (it was marked) in our uncached span, which is
        // not freed until last; no marker runs; nothing references `s` when it is freed.
        unsafe {
            assert!(!is_marked(ob));
            assert_eq!(sweep_bitmaps(sr, |_| {}), 0);
            free_span(s);
        }
        assert!(find_object(a).is_none());
    }

    #[test]
    fn large_objects_have_one_mark_bit() {
        let s = alloc_large_span(100 << 10, 8, KIND_NOSCAN, 0);
        // SAFETY: our span.
        let base = unsafe { (*s).base.get() };
        let o = find_object(base + 99_000).unwrap();
        assert_eq!((o.base, o.index), (base, 0));
        // SAFETY: our span, no other marker, then freed once.
        unsafe {
            assert!(mark(o));
            assert_eq!(sweep_bitmaps(&*s, |_| panic!("marked")), 1);
            let mut freed = 0;
            assert_eq!(sweep_bitmaps(&*s, |_| freed += 1), 0);
            assert_eq!(freed, 1);
            free_span(s);
        }
    }
}
