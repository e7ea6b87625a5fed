//! The allocator's entry points (Go's `malloc.go` `mallocgc`, plus the explicit `free`
//! that Go leaves to its collector).
//!
//! Small objects (at most 32 KiB, alignment at most a page) come from the calling thread's
//! mcache; anything else is a large object straight from the page heap. Every pointer
//! coming back (`free`, `realloc`, usable size) is resolved through the arena map and
//! validated: a pointer gomalloc never handed out, a pointer into the middle of an object,
//! and a double free each end the process with one line on stderr.
//!
//! Layer: entry points (the crate root's module map, `lib.rs`).

use crate::arena::span_of;
use crate::mcache::{self, MCache};
use crate::mcentral::CENTRAL;
use crate::mheap::HEAP;
use crate::report::fatal;
use crate::sizeclass::{
    fast_class, size_to_class, SizeClass, SpanClass, MALLOC_CLASS_BY_SIZE8, PAGE_SHIFT,
    PAGE_SIZE,
};
use crate::sizeclasses::{MAX_SMALL_SIZE, NUM_SIZE_CLASSES};
use crate::span::{Span, SpanState};
use core::ptr;

mod free;
pub use free::{free, free_fast, free_sized};

/// Allocates `size` bytes aligned to `align` (a power of two). Null when out of memory or
/// when the request is impossible. `size == 0` gives a unique minimum-size object.
#[inline(always)]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    match fast_class(size, align) {
        Some(class) => alloc_in_class(class, size, align),
        None => alloc_slow(size, align),
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
    let class = MALLOC_CLASS_BY_SIZE8[(size + 7) >> 3] as usize;
    let c = mcache::current();
    // The heap profile's countdown (feature `profile`): out of bytes, the slow path decides.
    #[cfg(feature = "profile")]
    // SAFETY: `c` is the thread's cache or the static empty one.
    let Some(left) = (unsafe { crate::profile::sample::countdown(c, size) }) else {
        return ptr::null_mut();
    };
    // SAFETY: `current()` is the thread's cache or the static empty one, both valid; only
    // this thread uses it; `class` comes from the size-class tables.
    let s = unsafe { (*c).fast_span(class) };
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
        let class = MALLOC_CLASS_BY_SIZE8[(size + 7) >> 3] as usize;
        return alloc_refill(mcache::current(), class, size, align);
    }
    alloc_slow(size, align)
}

/// The alignment of C's `max_align_t` on x86-64 and aarch64 Linux: what [`alloc_malloc`]
/// gives blocks of 16 bytes and more.
pub const MALLOC_ALIGN: usize = 16;

/// The fast path of [`alloc`] and [`alloc_malloc`]: a slot from the window of the cache's
/// span of `class` (which serves `size` at `align`).
#[inline(always)]
fn alloc_in_class(class: usize, size: usize, align: usize) -> *mut u8 {
    let c = mcache::current();
    // The heap profile's countdown (feature `profile`): out of bytes, the slow path decides.
    #[cfg(feature = "profile")]
    // SAFETY: `c` is the thread's cache or the static empty one.
    let Some(left) = (unsafe { crate::profile::sample::countdown(c, size) }) else {
        return alloc_refill(c, class, size, align);
    };
    // SAFETY: `current()` is the thread's cache or the static empty one, both valid; only
    // this thread uses it; `class` comes from the size-class tables.
    let s = unsafe { (*c).fast_span(class) };
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
    alloc_refill(c, class, size, align)
}

/// [`alloc`]'s way to a refill: the size class is known and, if the thread has a cache of
/// its own, the cache too, so the general path's size-class lookup and thread-state test
/// are skipped (a third of the cost of a window reload in random-replacement workloads).
#[cold]
#[inline(never)]
fn alloc_refill(c: *mut MCache, class: usize, size: usize, align: usize) -> *mut u8 {
    #[cfg(feature = "profile")]
    {
        // SAFETY: `c` is the calling thread's cache or the static empty one.
        if unsafe { crate::profile::sample::tick(c, size) } {
            return crate::profile::alloc_sampled(size, align);
        }
        // The countdown, not the window, may have sent the fast path here.
        // SAFETY: `c` is the calling thread's cache or the static empty one, both valid, and
        // only this thread uses it; `class` comes from the size-class tables.
        let s = unsafe { (*c).span(class) };
        let p = s.next_free_fast();
        if !p.is_null() {
            // SAFETY: `p` is the free slot just taken (poison feature only).
            unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
            return p;
        }
        if c == mcache::EMPTY_CACHE_PTR {
            // `alloc_slow` makes a new thread's cache first, so that its first allocation
            // is counted down too (the empty cache's `tick` above counted nothing).
            return alloc_slow(size, align);
        }
        if class == 0 {
            return alloc_slow_unsampled(size, align);
        }
    }
    // One test covers a thread without a cache of its own (the empty cache never settles),
    // a thread that samples for the heap profile, and the first refill after the sampling
    // rate changed (`profile::sample`).
    // SAFETY: `c` is the calling thread's cache or the static empty one, both valid.
    #[cfg(not(feature = "profile"))]
    if unsafe { (*c).prof.settled.get() } != crate::profile::sample::epoch() || class == 0 {
        return alloc_unsettled(c, class, size, align);
    }
    // SAFETY: only an active thread's slot holds a real cache (`mcache::current_or_init`
    // stores it as the state becomes active; `thread_exit` puts the empty one back first),
    // and the thread owns it. `class` comes from the size-class tables.
    let p = unsafe { alloc_after_refill(&*c, SizeClass(class as u8)) };
    crate::check::after_slow_op();
    p
}

/// [`alloc_refill`] for a thread without a cache of its own, for size 0, for the first
/// refill after the heap profile's rate changed, and for a thread that samples, whose
/// fast path found its loan of `class` spent (default build; `profile::lend`).
#[cfg(not(feature = "profile"))]
#[cold]
#[inline(never)]
fn alloc_unsettled(c: *mut MCache, class: usize, size: usize, align: usize) -> *mut u8 {
    if c == mcache::EMPTY_CACHE_PTR || class == 0 {
        // New, initialising or dead thread, or the heap is not initialised yet; or size 0,
        // which the tables give class 0 (never cached) and the general path serves as 1.
        return alloc_slow(size, align);
    }
    // SAFETY: a real cache in the thread's slot is the thread's own (as in `alloc_refill`).
    let cr = unsafe { &*c };
    if cr.sampling.get() {
        use crate::profile::lend::{self, Relend};
        // Every arm but the first is a tail call, so the common case saves no registers.
        // SAFETY: the thread's own cache, which samples, and whose fast path found the
        // proxy of `class` empty.
        match unsafe { lend::relend(cr, class) } {
            Relend::Slot(p) => return p,
            // SAFETY: as for `relend`, which found the span's window spent.
            Relend::Refill(cd) => return unsafe { lend::relend_refilled(cr, class, cd) },
            // SAFETY: as for `relend`, which found room for part of the window.
            Relend::Part(left) => return unsafe { lend::take_and_lend_part(cr, class, left) },
            Relend::Exact => {}
        }
    }
    alloc_unsettled_slow(cr, SizeClass(class as u8), size, align)
}

/// The rest of [`alloc_unsettled`]: a rate change, a refill, a thread that samples near
/// its next sample.
#[cfg(not(feature = "profile"))]
#[cold]
#[inline(never)]
fn alloc_unsettled_slow(cr: &MCache, class: SizeClass, size: usize, align: usize) -> *mut u8 {
    // SAFETY: the thread's own cache (as in `alloc_unsettled`).
    let sampling = unsafe { crate::profile::sample::settle(cr) };
    crate::check!(
        !sampling || class.size() == crate::profile::charge_of(size, align),
        "fast-path class differs from the sampled block's",
        size
    );
    // SAFETY: the thread's own cache, which samples.
    if sampling && unsafe { crate::profile::lend::due(cr, class) } {
        return crate::profile::alloc_sampled(size, align);
    }
    // SAFETY: the thread's own cache; `class` comes from the size-class tables.
    let p = unsafe { alloc_small(cr, class) };
    if sampling && !p.is_null() {
        // SAFETY: the thread's own cache, which samples; `due` repaid the class's loan.
        unsafe { crate::profile::lend::lend(cr, class) };
    }
    crate::check::after_slow_op();
    p
}

/// The general allocation path: thread set-up, refills, odd alignments, large objects.
#[cold]
#[inline(never)]
pub fn alloc_slow(size: usize, align: usize) -> *mut u8 {
    let mut c = mcache::current();
    if c == mcache::EMPTY_CACHE_PTR {
        // A new thread's first allocation makes the thread's cache here, before the
        // countdown, so that it is counted and may be sampled like any other (a thread
        // that may have no cache, dying or inside the allocator's set-up, is not sampled).
        if let Some(own) = mcache::current_or_init() {
            c = own;
        }
    }
    // A thread that does not sample skips the countdown (default build).
    #[cfg(not(feature = "profile"))]
    // SAFETY: a real cache in the thread's slot is the thread's own.
    if c == mcache::EMPTY_CACHE_PTR || !unsafe { crate::profile::sample::settle(&*c) } {
        return alloc_slow_unsampled(size, align);
    }
    // SAFETY: `c` is the calling thread's cache or the static empty one.
    if unsafe { crate::profile::sample::tick(c, crate::profile::charge_of(size, align)) } {
        return crate::profile::alloc_sampled(size, align);
    }
    alloc_slow_unsampled(size, align)
}

/// [`alloc_slow`] once the heap profile's countdown was taken: never a sample.
#[inline(never)]
fn alloc_slow_unsampled(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let p = match small_class(size, align) {
        Some(class) => match mcache::current_or_init() {
            // SAFETY: the thread's own cache.
            Some(c) => unsafe { alloc_small(&*c, class) },
            None => {
                mcache::with_orphan(|c| {
                    // SAFETY: the orphan lock is held inside `with_orphan`.
                    unsafe { alloc_small(c, class) }
                })
                .unwrap_or(ptr::null_mut())
            }
        },
        None => alloc_large(size, align),
    };
    crate::check!(p as usize & (align - 1) == 0, "misaligned block", p);
    crate::check::after_slow_op();
    p
}

/// The size class serving `size` bytes at `align`, or `None` for a large object.
///
/// Rounds the size up to the alignment, then takes the first class whose object size is
/// a multiple of it: objects sit at multiples of their size from a page-aligned base.
#[inline]
pub fn small_class(size: usize, align: usize) -> Option<SizeClass> {
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
    Some(class)
}

/// # Safety
/// The caller owns `c`.
unsafe fn alloc_small(c: &MCache, class: SizeClass) -> *mut u8 {
    let s = c.span(class.index());
    let p = s.next_free_fast();
    if p.is_null() {
        #[cfg(not(feature = "profile"))]
        if c.sampling.get() {
            // The refill may give the span up: its loan to the fast path goes back first.
            // SAFETY: the caller owns `c` (# Safety).
            unsafe { crate::profile::lend::repay(c, class.index()) };
        }
        // SAFETY: the caller owns `c` (# Safety), as `alloc_after_refill` requires.
        let p = unsafe { alloc_after_refill(c, class) };
        #[cfg(not(feature = "profile"))]
        if c.sampling.get() {
            // The refill pointed the fast path at the new span (`MCache::put_alloc`).
            c.fast[class.index()].set(crate::profile::lend::proxy(c, class.index()));
        }
        return p;
    }
    // SAFETY: `p` is the free slot just taken from `s` (poison feature only).
    unsafe { crate::harden::verify_poison(p, s.elemsize.get() as usize) };
    p
}

/// Refills the cache's span of `class` and takes a slot. The callers have just found
/// the span's window empty; [`mcache::refill`] makes no use of that but to go faster.
///
/// # Safety
/// The caller owns `c`.
unsafe fn alloc_after_refill(c: &MCache, class: SizeClass) -> *mut u8 {
    // SAFETY: the caller owns `c` (# Safety), as `refill` requires.
    let s = unsafe { mcache::refill(c, class) };
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
pub(crate) fn alloc_large_for_sample(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let p = alloc_large(size, align);
    crate::check::after_slow_op();
    p
}

fn alloc_large(size: usize, align: usize) -> *mut u8 {
    if size > isize::MAX as usize - PAGE_SIZE || align > 1 << 40 {
        return ptr::null_mut();
    }
    let npages = large_pages(size) + crate::harden::GUARD_PAGES;
    crate::scavenge::before_grow();
    let s = HEAP
        .lock()
        .alloc_span_ends_only(npages, align, SpanClass::malloc(SizeClass::LARGE));
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

/// Ends the process for `addr`, whose page has no arena-map entry: with message
/// `interior` if it lies inside a large block (whose interior pages are not in the map:
/// `Span::ends_only`), with `foreign` otherwise.
#[cold]
pub(crate) fn unmapped(foreign: &str, interior: &str, addr: usize) -> ! {
    let s = crate::arena::span_containing(addr);
    // SAFETY: arena-map entries point to live span records (never freed).
    if !s.is_null() && unsafe { (*s).state() } == SpanState::InUse {
        fatal(interior, addr);
    }
    fatal(foreign, addr)
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
        unmapped(
            "pointer not allocated by gomalloc:",
            "pointer into the middle of an object:",
            addr,
        );
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
    let mut q = alloc(room, align);
    if q.is_null() && room != new_size {
        q = alloc(new_size, align);
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
