//! The allocator's entry points (Go's `malloc.go` `mallocgc`, plus the explicit `free`
//! that Go leaves to its collector).
//!
//! Small objects (at most 32 KiB, alignment at most a page) come from the calling thread's
//! mcache; anything else is a large object straight from the page heap. Every pointer
//! coming back (`free`, `realloc`, usable size) is resolved through the arena map and
//! validated: a pointer gomalloc never handed out, a pointer into the middle of an object,
//! and a double free each end the process with one line on stderr.

use crate::arena::{self, span_of};
use crate::mcache::{self, MCache};
use crate::mcentral::{central, CENTRAL};
use crate::mheap::HEAP;
use crate::remote::Push;
use crate::report::fatal;
use crate::sizeclass::{
    fast_noscan_spc, size_to_class, SizeClass, SpanClass, MALLOC_SPC_BY_SIZE8, PAGE_SHIFT,
    PAGE_SIZE,
};
use crate::sizeclasses::{MAX_SMALL_SIZE, NUM_SIZE_CLASSES};
use crate::span::{Span, SpanState};
use core::ptr;

/// Allocates `size` bytes aligned to `align` (a power of two). Null when out of memory or
/// when the request is impossible. `size == 0` gives a unique minimum-size object.
#[inline(always)]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    match fast_noscan_spc(size, align) {
        Some(spc) => alloc_in_class(spc, size, align),
        None => alloc_slow(size, align, true),
    }
}

/// C's `malloc(size)`: [`alloc`] at the alignment C promises, `MALLOC_ALIGN` (16 bytes,
/// `max_align_t`) from 16 bytes up and 8 below, with one table lookup for both (no branch
/// on the size before it).
#[inline(always)]
pub fn alloc_malloc(size: usize) -> *mut u8 {
    let p = alloc_malloc_fast(size);
    if !p.is_null() {
        return p;
    }
    alloc_malloc_slow(size)
}

/// The fast path of [`alloc_malloc`] alone: a slot from the window of the calling
/// thread's span of the size's class, or null, having done nothing, if that takes more
/// (a refill, a large object, a thread without a cache). A caller that finishes the job
/// with [`alloc_malloc_slow`] in a function of its own keeps the fast path free of calls,
/// and so of a stack frame (C's `malloc`, which must also set `errno` on failure).
#[inline(always)]
pub fn alloc_malloc_fast(size: usize) -> *mut u8 {
    if size > MAX_SMALL_SIZE {
        return ptr::null_mut();
    }
    let spc = MALLOC_SPC_BY_SIZE8[(size + 7) >> 3] as usize;
    let c = mcache::current();
    // The heap profile's countdown (feature `profile`): out of bytes, the slow path decides.
    #[cfg(feature = "profile")]
    // SAFETY: `c` is the thread's cache or the static empty one.
    let Some(left) = (unsafe { crate::profile::sample::countdown(c, size) }) else {
        return ptr::null_mut();
    };
    // SAFETY: `current()` is the thread's cache or the static empty one, both valid; only
    // this thread uses it; `spc` comes from the size-class tables.
    let s = unsafe { (*c).span(spc) };
    let p = s.next_free_fast();
    if !p.is_null() {
        // A slot was taken, so `c` is a real cache (the empty one's spans have none).
        #[cfg(feature = "profile")]
        // SAFETY: the calling thread's own cache.
        unsafe {
            (*c).next_sample.set(left)
        };
        // SAFETY: `p` is the free slot just taken (poison feature only).
        unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
    }
    p
}

/// The rest of [`alloc_malloc`], for when [`alloc_malloc_fast`] returned null.
#[cold]
#[inline(never)]
pub fn alloc_malloc_slow(size: usize) -> *mut u8 {
    let align = if size >= MALLOC_ALIGN {
        MALLOC_ALIGN
    } else {
        8
    };
    if size <= MAX_SMALL_SIZE {
        let spc = MALLOC_SPC_BY_SIZE8[(size + 7) >> 3] as usize;
        return alloc_refill(mcache::current(), spc, size, align);
    }
    alloc_slow(size, align, true)
}

/// The alignment of C's `max_align_t` on x86-64 and aarch64 Linux: what [`alloc_malloc`]
/// gives blocks of 16 bytes and more.
pub const MALLOC_ALIGN: usize = 16;

/// The fast path of [`alloc`] and [`alloc_malloc`]: a slot from the window of the cache's
/// span of class `spc` (which serves `size` at `align`).
#[inline(always)]
fn alloc_in_class(spc: usize, size: usize, align: usize) -> *mut u8 {
    let c = mcache::current();
    // The heap profile's countdown (feature `profile`): out of bytes, the slow path decides.
    #[cfg(feature = "profile")]
    // SAFETY: `c` is the thread's cache or the static empty one.
    let Some(left) = (unsafe { crate::profile::sample::countdown(c, size) }) else {
        return alloc_refill(c, spc, size, align);
    };
    // SAFETY: `current()` is the thread's cache or the static empty one, both valid; only
    // this thread uses it; `spc` comes from the size-class tables.
    let s = unsafe { (*c).span(spc) };
    let p = s.next_free_fast();
    if !p.is_null() {
        // A slot was taken, so `c` is a real cache (the empty one's spans have none).
        #[cfg(feature = "profile")]
        // SAFETY: the calling thread's own cache.
        unsafe {
            (*c).next_sample.set(left)
        };
        // SAFETY: `p` is the free slot just taken (poison feature only).
        unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
        return p;
    }
    alloc_refill(c, spc, size, align)
}

/// [`alloc`]'s way to a refill: the span class is known and, if the thread has a cache of
/// its own, the cache too, so the general path's size-class lookup and thread-state test
/// are skipped (a third of the cost of a window reload in random-replacement workloads).
#[cold]
#[inline(never)]
fn alloc_refill(c: *mut MCache, spc: usize, size: usize, align: usize) -> *mut u8 {
    #[cfg(feature = "profile")]
    {
        // SAFETY: `c` is the calling thread's cache or the static empty one.
        if unsafe { crate::profile::sample::tick(c, size) } {
            return crate::profile::alloc_sampled(size, align, true);
        }
        // The countdown, not the window, may have sent the fast path here.
        // SAFETY: as in `alloc_in_class`.
        let s = unsafe { (*c).span(spc) };
        let p = s.next_free_fast();
        if !p.is_null() {
            // SAFETY: `p` is the free slot just taken (poison feature only).
            unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
            return p;
        }
    }
    if c == mcache::EMPTY_CACHE_PTR || spc < 2 {
        // New, initialising or dead thread, or the heap is not initialised yet; or size 0,
        // which the tables give class 0 (never cached) and the general path serves as 1.
        #[cfg(feature = "profile")]
        return alloc_slow_unsampled(size, align, true);
        #[cfg(not(feature = "profile"))]
        return alloc_slow(size, align, true);
    }
    // SAFETY: only an active thread's slot holds a real cache (`mcache::current_or_init`
    // stores it as the state becomes active; `thread_exit` puts the empty one back first),
    // and the thread owns it. `spc` comes from the size-class tables.
    let p = unsafe { alloc_after_refill(&*c, SpanClass(spc as u8)) };
    crate::check::after_slow_op();
    p
}

/// The general allocation path: thread set-up, refills, odd alignments, large objects.
/// `noscan` selects the span class variant (the collector scans only scan spans).
#[cold]
#[inline(never)]
pub fn alloc_slow(size: usize, align: usize, noscan: bool) -> *mut u8 {
    #[cfg(feature = "profile")]
    // SAFETY: `current()` is the calling thread's cache or the static empty one.
    if unsafe { crate::profile::sample::tick(mcache::current(), size) } {
        return crate::profile::alloc_sampled(size, align, noscan);
    }
    alloc_slow_unsampled(size, align, noscan)
}

/// [`alloc_slow`] once the heap profile's countdown was taken (feature `profile`): never
/// a sample. Without the feature it is `alloc_slow`'s body, inlined there, and
/// [`alloc_refill`] calls `alloc_slow`: the same code as a build that never had it.
#[cfg_attr(not(feature = "profile"), inline(always))]
#[cfg_attr(feature = "profile", inline(never))]
fn alloc_slow_unsampled(size: usize, align: usize, noscan: bool) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let p = match small_class(size, align, noscan) {
        Some(spc) => match mcache::current_or_init() {
            // SAFETY: the thread's own cache.
            Some(c) => unsafe { alloc_small(&*c, spc) },
            None => {
                mcache::with_orphan(|c| {
                    // SAFETY: the orphan lock is held inside `with_orphan`.
                    unsafe { alloc_small(c, spc) }
                })
                .unwrap_or(ptr::null_mut())
            }
        },
        None => alloc_large(size, align, noscan),
    };
    crate::check!(p as usize & (align - 1) == 0, "misaligned block", p);
    crate::check::after_slow_op();
    p
}

/// The span class serving `size` bytes at `align`, or `None` for a large object.
///
/// Rounds the size up to the alignment, then takes the first class whose object size is
/// a multiple of it: objects sit at multiples of their size from a page-aligned base.
#[inline]
pub fn small_class(size: usize, align: usize, noscan: bool) -> Option<SpanClass> {
    if align > PAGE_SIZE {
        return None;
    }
    let sz = size.max(1).checked_next_multiple_of(align)?;
    if sz > MAX_SMALL_SIZE {
        return None;
    }
    let mut class = size_to_class(sz);
    while class.size() % align != 0 {
        class = SizeClass(class.0 + 1);
        if class.0 as usize >= NUM_SIZE_CLASSES {
            return None;
        }
    }
    Some(SpanClass::new(class, noscan))
}

/// # Safety
/// The caller owns `c`.
unsafe fn alloc_small(c: &MCache, spc: SpanClass) -> *mut u8 {
    let s = c.span(spc.index());
    let p = s.next_free_fast();
    if p.is_null() {
        // SAFETY: the caller owns `c` (# Safety), as `alloc_after_refill` requires.
        return unsafe { alloc_after_refill(c, spc) };
    }
    // SAFETY: `p` is the free slot just taken from `s` (poison feature only).
    unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
    p
}

/// Refills the cache's span of class `spc` and takes a slot. The callers have just found
/// the span's window empty; [`mcache::refill`] makes no use of that but to go faster.
///
/// # Safety
/// The caller owns `c`.
unsafe fn alloc_after_refill(c: &MCache, spc: SpanClass) -> *mut u8 {
    // SAFETY: the caller owns `c` (# Safety), as `refill` requires.
    let s = unsafe { mcache::refill(c, spc) };
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: refill returned a live span with a free slot loaded.
    let s = unsafe { &*s };
    let p = s.next_free_fast();
    // SAFETY: `p` is the free slot just taken from `s` (poison feature only).
    unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
    p
}

/// Large blocks of at least this many pages (64 KiB) take a multiple of it, as
/// mimalloc's 64 KiB slices do. Their first pages then fall on few distinct addresses: a
/// program that writes only the start of each large block (a buffer sized for the worst
/// case) finds the pages a freed block touched under the next one, instead of faulting in
/// fresh pages while the freed ones wait for the scavenger (the `untouched` workload:
/// `docs/BENCHMARKS.md`). The rounded-up tail costs address space, not memory, until the
/// program writes it.
pub const LARGE_GRAIN_PAGES: usize = 8;

/// Pages of a large block of `size` bytes: whole pages, and from [`LARGE_GRAIN_PAGES`]
/// up a multiple of it.
#[inline]
fn large_pages(size: usize) -> usize {
    let n = size.max(1).div_ceil(PAGE_SIZE);
    if n >= LARGE_GRAIN_PAGES {
        n.next_multiple_of(LARGE_GRAIN_PAGES)
    } else {
        n
    }
}

/// A span of its own for a block the heap profile samples (`profile::alloc_sampled`), as
/// a large object: its free then takes the large-object path, which counts it.
#[cfg(feature = "profile")]
pub(crate) fn alloc_large_for_sample(size: usize, align: usize, noscan: bool) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let p = alloc_large(size, align, noscan);
    crate::check::after_slow_op();
    p
}

fn alloc_large(size: usize, align: usize, noscan: bool) -> *mut u8 {
    if size > isize::MAX as usize - PAGE_SIZE || align > 1 << 40 {
        return ptr::null_mut();
    }
    let npages = large_pages(size) + crate::harden::GUARD_PAGES;
    crate::scavenge::before_grow();
    let s = HEAP
        .lock()
        .alloc_span(npages, align, SpanClass::new(SizeClass::LARGE, noscan));
    if s.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a fresh in-use span.
    let base = unsafe { (*s).base.get() };
    // The last page becomes the guard. If the kernel refuses (too many mappings:
    // vm.max_map_count), the object simply has no guard; its size is unchanged.
    // SAFETY: the page is the last of the fresh span: ours, holding no data.
    unsafe { guard(base as *mut u8, npages - crate::harden::GUARD_PAGES, false) };
    base as *mut u8
}

/// Like [`alloc`], but the memory reads as zero. Memory fresh from the OS (or released to
/// it) is known to be zero and is not cleared again.
#[inline]
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let p = alloc(size, align);
    if p.is_null() {
        return p;
    }
    let s = span_of(p as usize);
    // SAFETY: `p` was just allocated, so `s` is its live span and `p..p+size` is ours.
    unsafe {
        if (*s).needzero.get() {
            ptr::write_bytes(p, 0, size);
        }
    }
    p
}

// ---- the free ladder ----
//
// A free climbs until a rung finds the object's span; each rung costs more than the one
// before and serves what the one before misses:
//
// | rung | Rust `dealloc` (layout known) | C `free` | finds |
// |---|---|---|---|
// | window | [`free_sized`] | - | the slot in the loaded window of the class's hinted span: no span lookup |
// | hinted span | [`free_via_hint`] | - | a slot of the hinted or the allocating span: no arena map |
// | arena map | [`free_via_arena_map`] | [`free_fast`] (arena hint first) | any span this thread owns |
// | remote or large | [`free_remote_or_large`] | the same, from [`free`] | another thread's span (a remote free), a large block |
//
// [`free`] is the rung-3-and-4 entry for a pointer of unknown layout, and the one that
// diagnoses a bad pointer; [`free_cold`] is it out of line, where a rung gives up.

/// Frees `p` (null is ignored). A pointer that is not a live gomalloc object ends the
/// process with a message.
///
/// # Safety
/// `p` is null or was returned by this allocator and is not used afterwards.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let addr = p as usize;
    let s = span_of(addr);
    if s.is_null() {
        if !p.is_null() {
            fatal("free of a pointer not allocated by gomalloc:", addr);
        }
        return;
    }
    // SAFETY: arena-map entries point to live span records.
    let sr = unsafe { &*s };
    if sr.owner.load(crate::sync::Ordering::Relaxed) == mcache::current() {
        // Owned by this thread's cache: no lock, no atomic read-modify-write.
        match sr.slot_of(addr) {
            // SAFETY: this thread owns the span; idx < nelems.
            Some(idx) => unsafe { sr.free_local(idx, addr) },
            None => fatal("free of a pointer into the middle of an object:", addr),
        }
        return;
    }
    // SAFETY: `p` was returned by this allocator and is not used afterwards (# Safety),
    // and `s` is the live span record the arena map gives for it.
    unsafe { free_remote_or_large(s, addr) }
}

/// The free of a pointer whose size is not known (C's `free`), when it is cheap: `p` is a
/// slot of a span the calling thread's cache owns, so it goes back into the span's window
/// or bitmap with no lock, no atomic read-modify-write and no system call (`errno` is not
/// touched). Returns false, having done nothing, for anything else: null, a large object,
/// a span another thread owns, a foreign pointer, a double free, an interior pointer; the
/// caller then calls [`free`], which handles or diagnoses it. (So the fast path makes no
/// call, and needs no stack frame: two instructions of every C `free`.)
///
/// The span is found through the arena map every time, its first level through the
/// cache's `arena::ArenaHint` (the arena the thread's last C free went to: with a heap of
/// one arena it always hits, and saves two dependent loads and three tests). There is no
/// hint of the span last freed into, as [`free_sized`] has: it would save the walk only
/// when frees come in runs of one span, and where they do not, its branch is mispredicted
/// about as often as not, which costs more than the walk it saves.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_fast(p: *mut u8) -> bool {
    let addr = p as usize;
    let c = mcache::current();
    // SAFETY: `c` is the thread's cache or the static empty one; `p` is null or ours and
    // not used afterwards (# Safety, as for `free`).
    unsafe { free_fast_via_arena_map(c, addr) }
}

/// Second tier of [`free_fast`]: the span through the arena map.
///
/// # Safety
/// `c` is the calling thread's cache (or the static empty one); `addr` as for [`free`].
#[inline(always)]
unsafe fn free_fast_via_arena_map(c: *mut MCache, addr: usize) -> bool {
    // SAFETY: `c` is the thread's cache or the static empty one, valid either way.
    let ha = match unsafe { (*c).arena_hint.get(addr) } {
        Some(ha) => ha,
        None => {
            let ha = arena::heap_arena_of(addr);
            if ha.is_null() {
                return false;
            }
            if c != mcache::EMPTY_CACHE_PTR {
                // SAFETY: a real cache is this thread's alone (the static one is never
                // written).
                unsafe { (*c).arena_hint.set(addr, ha) };
            }
            ha
        }
    };
    // SAFETY: `ha` is the record of the arena holding `addr` (a hint hit or the map's).
    let s = unsafe { arena::span_in(ha, addr) };
    if s.is_null() {
        return false;
    }
    // SAFETY: arena-map entries point to live span records; an `owner` equal to `c` means
    // this thread's cache owns the span (so `c` is a real cache, not the static one).
    unsafe {
        if (*s).owner.load(crate::sync::Ordering::Relaxed) != c {
            return false;
        }
        // A double free or an interior pointer is left to [`free`], which reports it:
        // no call here, so no stack frame either.
        match (*s).slot_of(addr) {
            Some(idx) => (*s).try_free_local(idx, addr),
            None => false,
        }
    }
}

/// Frees `p`, which was allocated with `size` bytes at `align` (Rust's `dealloc` knows the
/// layout). If `p` lies in the window of the span the calling thread allocates that class
/// from (the common case for short-lived objects), it goes straight back there: no
/// arena-map walk, no owner test, the same checks. Anything else (another window or span,
/// a wrong layout, a bad pointer) takes the general [`free`] path, which diagnoses it.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if let Some(spc) = fast_noscan_spc(size, align) {
        // SAFETY: `current()` is the thread's cache or the static empty one (whose spans
        // hold no slot, so the window test fails); every span in a cache is owned by it.
        unsafe {
            let c = mcache::current();
            let span = (*c).free_span(spc);
            if span.free_in_window(p as usize) {
                return;
            }
            return free_via_hint(c, span, spc, p);
        }
    }
    // SAFETY: `free_cold` has `free_sized`'s contract (`p` from this allocator, not used
    // afterwards).
    unsafe { free_cold(p) }
}

/// [`free`] out of line, for the layouts [`free_sized`] has no fast path for (large or
/// over-aligned), so that `free_sized` stays small enough to inline into callers.
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_cold(p: *mut u8) {
    // SAFETY: `p` is null or from this allocator, not used afterwards (# Safety, as for
    // `free`).
    unsafe { free(p) }
}

/// Second tier of [`free_sized`]: `p` is not in the window of `span`, the class's free
/// hint (`MCache::free_hint`), but may still be a slot of it (the hint names the span the
/// class's frees last went to, so a batch of frees hits it again and again), or of the
/// span the class allocates from; neither needs the arena map. A hit on the allocating
/// span makes it the hint.
///
/// # Safety
/// `c` is the calling thread's cache (or the static empty one), `span` its free hint of
/// class `spc`; `p` as for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_via_hint(c: *mut MCache, span: &Span, spc: usize, p: *mut u8) {
    let addr = p as usize;
    // SAFETY: the hint is the static empty span (no slots: `slot_of` fails) or a span `c`
    // owns (the hint's invariant: a span leaving the cache clears it), so this thread may
    // free into it, and no other thread writes its record meanwhile. A double free goes to
    // the general path, which reports it (a tail call: no stack frame here).
    unsafe {
        crate::check!(
            ptr::eq(span, mcache::EMPTY_SPAN_PTR)
                || span.owner.load(crate::sync::Ordering::Relaxed) == c,
            "free hint names a span this cache does not own",
            span as *const Span as usize
        );
        if let Some(idx) = span.slot_of(addr) {
            // The first tier tested this span's window, so the slot is outside it; and a
            // span with a slot outside its window has more than 64 slots. A run entering
            // another window moves the window there, the allocating span's too.
            if at_window_edge(idx) {
                return free_loading_window(span, idx, p);
            }
            if span.try_free_outside_window(idx, addr) {
                return;
            }
            return free_cold(p);
        }
        let alloc = (*c).span(spc);
        if let Some(idx) = alloc.slot_of(addr) {
            // `c` owns `alloc` (a span with slots is a real span, so `c` is a real cache);
            // `idx < nelems`.
            if alloc.try_free_local_branchy(idx, addr) {
                (*c).free_hint[spc].set(alloc as *const Span as *mut Span);
                return;
            }
            return free_cold(p);
        }
        free_via_arena_map(c, p)
    }
}

/// Whether a free into slot `idx` of `s`, a span the thread's cache owns (one it retains,
/// or the one its class allocates from), should load the window holding it for the frees
/// to come ([`Span::load_window_for_frees`]): `s` has more than 64 slots (a single-window
/// span keeps its window loaded anyway), the slot is not in the window loaded now, and it
/// is the first or the last slot of its window ([`at_window_edge`]), where a run of frees
/// in allocation order, or in its reverse, enters a window. Frees at random rarely land
/// there (2 in 64), so they keep to the bitmap rather than paying a commit and a load each.
#[inline(always)]
fn starts_a_run(s: &Span, idx: usize) -> bool {
    at_window_edge(idx) && !s.single_window() && idx & !63 != s.window() as usize
}

/// Slot `idx` is the first or the last of a 64-slot window (see [`starts_a_run`]). (The
/// last slot of a span whose last window is shorter is not one: a run backwards through
/// such a span loads its windows from the next one down.)
#[inline(always)]
fn at_window_edge(idx: usize) -> bool {
    (idx + 1) & 63 <= 1
}

/// Frees slot `idx` of `s` after loading the window holding it for the frees to come
/// ([`starts_a_run`]). Out of line, so that the second tier, which tail-calls it once per
/// window at most, keeps a leaf with no registers to save.
///
/// # Safety
/// The calling thread's cache owns `s`, which has more than 64 slots; `idx` is the slot of
/// `p`.
#[cold]
#[inline(never)]
unsafe fn free_loading_window(s: &Span, idx: usize, p: *mut u8) {
    // SAFETY: the thread's cache owns `s`, which has more than 64 slots, and `idx` is the
    // slot of `p` (# Safety).
    unsafe {
        s.load_window_for_frees(idx);
        if !s.try_free_local_branchy(idx, p as usize) {
            free_cold(p); // a double free: the general path reports it
        }
    }
}

/// Third tier of [`free_sized`]: the span through the arena map (a separate function, so
/// that the second tier stays a leaf with no registers to save). A span this thread owns
/// becomes its class's free hint.
///
/// # Safety
/// As for [`free_via_hint`].
#[inline(never)]
unsafe fn free_via_arena_map(c: *mut MCache, p: *mut u8) {
    let addr = p as usize;
    // SAFETY: `c` is this thread's cache (or the static empty one) and `p` null or ours and
    // dead (# Safety); a non-null arena-map entry is a live record (arena invariant 1),
    // and one `c` owns is this thread's to free into.
    unsafe {
        let s = span_of(addr);
        if s.is_null() {
            return free(p); // diagnoses a foreign pointer (or ignores null)
        }
        if (*s).owner.load(crate::sync::Ordering::Relaxed) != c {
            return free_remote_or_large(s, addr);
        }
        let sr = &*s;
        match sr.slot_of(addr) {
            Some(idx) => {
                // `c` owns a span, so it is a real cache, not the static empty one. The
                // span is the class's allocating span or one it retains.
                let spc = sr.spanclass.get().index();
                (*c).free_hint[spc].set(s);
                if starts_a_run(sr, idx) {
                    return free_loading_window(sr, idx, p);
                }
                sr.free_local(idx, addr);
            }
            None => fatal("free of a pointer into the middle of an object:", addr),
        }
    }
}

/// Frees an object of a span this thread does not own: a remote free or a large object.
///
/// # Safety
/// `s` is the (non-null) arena-map entry of `addr`, a block returned by this allocator
/// that its user frees and does not use afterwards (as for [`free`]).
#[inline(never)]
unsafe fn free_remote_or_large(s: *mut Span, addr: usize) {
    // SAFETY: arena-map entries point to live span records.
    let sr = unsafe { &*s };
    match sr.state() {
        SpanState::InUse => {}
        // Free pages of the heap: most often a large block freed twice (its span went
        // back to the page heap), or a small object freed after its whole span did; a
        // wild pointer into free heap pages reads the same, hence the hedge.
        SpanState::Free => fatal(
            "double free (or free of a pointer gomalloc never handed out):",
            addr,
        ),
        SpanState::Dead => fatal(
            "free of a pointer not allocated by gomalloc (or already freed):",
            addr,
        ),
    }
    if sr.is_large() {
        if addr != sr.base.get() {
            fatal("free of a pointer into the middle of an object:", addr);
        }
        #[cfg(feature = "profile")]
        if sr.prof_bucket.get() != 0 {
            crate::profile::freed(sr);
        }
        let usable = sr.usable_size();
        // SAFETY: the block is the caller's and dead (poison feature only); its guard page
        // belongs to its span (guard-pages only).
        let unguarded = unsafe {
            crate::harden::poison(p_of(addr), usable);
            unguard(p_of(addr), usable >> PAGE_SHIFT)
        };
        let mut heap = HEAP.lock();
        // Checked again under the lock: two racing frees of one block must not both win.
        if sr.state() != SpanState::InUse {
            fatal("double free of", addr);
        }
        // SAFETY: the span is in use and its one object is being freed. A guard page the
        // system would not make writable again (a memory limit) stays behind as a span of
        // its own, never reused; without even a record for that span, the whole block
        // stays in use, unreachable (its memory given back to the OS): a leak, not a
        // crash, and only at the memory limit.
        unsafe {
            if unguarded || heap.split_off_tail(s, crate::harden::GUARD_PAGES) {
                heap.free_span(s);
            } else {
                crate::os::sys_unused(p_of(addr), usable, false);
            }
        }
        drop(heap);
        crate::check::after_slow_op();
        return;
    }
    let Some(idx) = sr.slot_of(addr) else {
        fatal("free of a pointer into the middle of an object:", addr);
    };
    // A span this thread's cache gave up comes back to it (`adopt_for_free`), and the
    // free is then a local one.
    let adopted = sr.owner.load(crate::sync::Ordering::Relaxed).is_null()
        // SAFETY: `s` is in use and holds the object being freed; this thread is inside
        // no allocation.
        && unsafe { mcache::adopt_for_free(s) };
    if adopted {
        // SAFETY: `idx` is the object's slot, and `s` is now this thread's.
        unsafe { sr.free_local(idx, addr) };
        crate::check::after_slow_op();
        return;
    }
    // SAFETY: the object is dead and the caller's until its bit is set.
    unsafe { crate::harden::poison(p_of(addr), sr.elemsize.get() as usize) };
    // SAFETY: `s` is in use (checked above), `idx` is the slot of `addr` (`slot_of`), and
    // its user is freeing it (# Safety).
    match unsafe { sr.free_remote(idx) } {
        Push::Done => {}
        Push::Woke => {
            // We woke a span parked in its mcentral: hand it over.
            // SAFETY: the span is unowned and, notified, on no list but this push's.
            unsafe { central(sr.spanclass.get()).pending.push(s) };
            crate::scavenge::span_pending();
        }
        // Freed remotely twice with no collection in between; a double free whose
        // first free was collected is caught by the owner's `collect_remote`.
        Push::Twice => crate::report::double_free(addr),
    }
    crate::check::after_slow_op();
}

/// With `guard-pages`, makes page `page` of the large block `p` its guard page. Returns
/// false if the kernel refused and `required`; true otherwise (and always without the
/// feature). An unrequired guard that cannot be set is skipped: the block is still valid.
///
/// # Safety
/// The page belongs to the block's span and holds no live data.
unsafe fn guard(p: *mut u8, page: usize, required: bool) -> bool {
    if crate::harden::GUARD_PAGES == 0 {
        return true;
    }
    // SAFETY: the page belongs to the block's span and holds no live data (# Safety).
    let ok = unsafe { crate::os::sys_protect(p.add(page << PAGE_SHIFT), PAGE_SIZE, false) };
    ok || !required
}

/// With `guard-pages`, makes page `page` of the large block `p` (a guard) accessible
/// again. False if the system refuses (the commit charge of a writable page under
/// `RLIMIT_DATA` or strict overcommit); always true without the feature.
///
/// # Safety
/// The page belongs to the block's span.
unsafe fn unguard(p: *mut u8, page: usize) -> bool {
    if crate::harden::GUARD_PAGES == 0 {
        return true;
    }
    // SAFETY: the page belongs to the block's span (# Safety).
    unsafe { crate::os::sys_protect(p.add(page << PAGE_SHIFT), PAGE_SIZE, true) }
}

#[inline(always)]
fn p_of(addr: usize) -> *mut u8 {
    addr as *mut u8
}

/// The live span of object `p`, or a fatal error: a pointer gomalloc never handed out,
/// one into the middle of an object, a freed large object, or a freed small object of a
/// span the calling thread owns.
fn object_span(p: *const u8) -> &'static Span {
    let addr = p as usize;
    let s = span_of(addr);
    if s.is_null() {
        fatal("pointer not allocated by gomalloc:", addr);
    }
    // SAFETY: arena-map entries point to live span records.
    let sr = unsafe { &*s };
    if sr.state() != SpanState::InUse {
        fatal(
            "pointer not allocated by gomalloc (or already freed):",
            addr,
        );
    }
    if sr.is_large() {
        if addr != sr.base.get() {
            fatal("pointer into the middle of an object:", addr);
        }
        return sr;
    }
    let Some(idx) = sr.slot_of(addr) else {
        fatal("pointer into the middle of an object:", addr);
    };
    // A slot of the calling thread's own span can be checked for liveness without a lock
    // (`malloc_usable_size` or an in-place `realloc` after `free`). Other threads' spans
    // are not checked: their bitmaps belong to their owners.
    if sr.owner.load(crate::sync::Ordering::Relaxed) == mcache::current() {
        // SAFETY: this thread owns the span; `idx < nelems` (slot_of).
        if unsafe { sr.slot_is_free_local(idx) } {
            fatal("use of a freed pointer:", addr);
        }
    }
    sr
}

/// Bytes usable at `p` (at least the size asked for).
///
/// # Safety
/// `p` is a live object of this allocator.
pub unsafe fn usable_size(p: *const u8) -> usize {
    object_span(p).usable_size()
}

/// True if `p` is the start of an object slot in an in-use gomalloc span. Never aborts.
pub fn owns(p: *const u8) -> bool {
    let addr = p as usize;
    let s = span_of(addr);
    if s.is_null() {
        return false;
    }
    // SAFETY: arena-map entries point to live span records.
    let sr = unsafe { &*s };
    sr.state() == SpanState::InUse
        && if sr.is_large() {
            addr == sr.base.get()
        } else {
            sr.slot_of(addr).is_some()
        }
}

/// An object [`realloc`] moves (or extends) to grow gets `1/REALLOC_HEADROOM` more room:
/// a quarter, Go's `growslice` factor for large slices (1.25x). (With an eighth, the
/// realloc workload copied 1225 MB, mimalloc 770 MB; with a quarter, 653 MB, for the same
/// peak RSS.)
pub const REALLOC_HEADROOM: usize = 4;

/// Resizes `p` to `new_size` bytes keeping `align`. Null (and `p` untouched) when out of
/// memory.
///
/// In place when the new size fits the object and is at least half of it (a small
/// object keeps its slot, a large one its pages, as mimalloc does), when a large object
/// shrinks by more than half (the tail pages go back to the heap), and when a large
/// object can grow into free pages right after it. Otherwise the object moves. Grown by
/// less than a quarter, it gets a quarter (`REALLOC_HEADROOM`) more room than asked for
/// (Go's `growslice` grows large slices by 1.25x for the same reason), so a buffer grown a
/// little at a time moves
/// O(log n) times, not once per size class or page: glibc gets the same effect from
/// `mremap`, which an arena-based heap cannot use.
///
/// `align` is the alignment a moved object gets. An object that stays in place keeps
/// its own, so `align` must not exceed it for any size the object holds: Rust passes the
/// layout's alignment, C's `realloc` the alignment `malloc` gives the new size (which an
/// object that holds that size got when it was allocated).
///
/// # Safety
/// `p` is a live object of this allocator, allocated with alignment `align` or more, or
/// by C's `malloc` family with `align` the alignment `malloc` gives `new_size`.
pub unsafe fn realloc(p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    let sr = object_span(p);
    let old = sr.usable_size();
    let noscan = sr.spanclass.get().noscan();
    let growing = new_size > old;
    // Headroom only for a small step (under a quarter): a caller that grows geometrically
    // itself (Vec, a doubling buffer) gets exactly what it asks for.
    let room = if growing && new_size - old <= old / REALLOC_HEADROOM {
        new_size.saturating_add(new_size / REALLOC_HEADROOM)
    } else {
        new_size
    };
    // What a block of `new_size` would hold: a large one is rounded up to its grain, so
    // a block whose headroom the grain rounded up is not shrunk back at the next call.
    let needs = if sr.is_large() && new_size > MAX_SMALL_SIZE {
        large_pages(new_size) << PAGE_SHIFT
    } else {
        new_size
    };
    if !growing && needs >= old / 2 {
        // Fits, and not worth a smaller block. (The object has the alignment already.)
        return p;
    }
    // A block the heap profile sampled has a span of its own, larger than asked for; it
    // stays there while it fits, as a small object would in its slot.
    #[cfg(feature = "profile")]
    if !growing && sr.prof_bucket.get() != 0 {
        return p;
    }
    if sr.is_large() && new_size > MAX_SMALL_SIZE {
        let npages = large_pages(new_size);
        let have = old >> PAGE_SHIFT;
        let s = sr as *const Span as *mut Span;
        // SAFETY: `s` is the in-use large span of `p`; the guard pages named are the
        // span's own.
        unsafe {
            // With guard pages, the old guard is made writable first; if the system
            // refuses (a memory limit), the block moves instead.
            if unguard(p, have) {
                if npages < have {
                    if guard(p, npages, true) {
                        HEAP.lock()
                            .shrink_span(s, npages + crate::harden::GUARD_PAGES);
                        if sr.usable_size() == npages << PAGE_SHIFT {
                            return p;
                        }
                        // No record for the tail: the span stays as it was.
                        if !unguard(p, npages) {
                            fatal("cannot re-open a guard page of", p as usize);
                        }
                    }
                } else {
                    // Grow into the free pages after the span: with headroom if they
                    // allow, else just enough.
                    let want = large_pages(room);
                    let mut heap = HEAP.lock();
                    let extended = [want, npages]
                        .into_iter()
                        .find(|&n| heap.try_extend_span(s, n + crate::harden::GUARD_PAGES));
                    drop(heap);
                    if let Some(n) = extended {
                        guard(p, n, false);
                        return p;
                    }
                }
                guard(p, have, false);
            }
        }
    }
    let get = |n| {
        if noscan {
            alloc(n, align)
        } else {
            alloc_slow(n, align, false)
        }
    };
    let mut q = get(room);
    if q.is_null() && room != new_size {
        q = get(new_size);
    }
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; we copy what both can hold.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(new_size));
        free(p);
    }
    q
}

/// Gives free memory back to the OS now: the calling thread's retained spans go back to
/// their mcentrals (other threads' at their next refill: `mcache::request_trim`), empty
/// spans parked in the mcentrals go back to the page heap, and every free page is
/// released. Returns the bytes released.
pub fn release_memory() -> usize {
    mcache::release_own_retained();
    mcache::request_trim();
    for c in CENTRAL.iter() {
        c.reclaim();
    }
    HEAP.lock().release_all()
}
