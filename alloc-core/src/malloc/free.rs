//! The free ladder: how `free` finds the span of the object it frees.
//!
//! A free climbs until a rung finds the object's span; each rung costs more than the one
//! before and serves what the one before misses:
//!
//! | rung | Rust `dealloc` (layout known) | C `free` | finds |
//! |---|---|---|---|
//! | window | [`free_sized`] | - | the slot in the loaded window of the class's hinted span: no span lookup |
//! | hinted span | [`free_via_hint`] | - | a slot of the hinted or the allocating span: no arena map |
//! | arena map | [`free_via_arena_map`] | [`free_fast`] (arena hint first) | any span this thread owns |
//! | remote or large | [`free_remote_or_large`] | the same, from [`free`] | another thread's span (a remote free), a large block |
//!
//! [`free`] is the rung-3-and-4 entry for a pointer of unknown layout, and the one that
//! diagnoses a bad pointer; [`free_cold`] is it out of line, where a rung gives up.
//!
//! Layer: entry points (the crate root's module map, `lib.rs`).

use super::{p_of, unguard};
use crate::arena::{self, span_of};
use crate::mcache::{self, MCache};
use crate::mcentral::central;
use crate::mheap::HEAP;
use crate::remote::Push;
use crate::report::fatal;
use crate::sizeclass::{fast_class, PAGE_SHIFT};
use crate::span::{Span, SpanState};
use core::ptr;

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
            super::unmapped(
                "free of a pointer not allocated by gomalloc:",
                "free of a pointer into the middle of an object:",
                addr,
            );
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
            // Laid out off the hit's straight line, which then needs no jump.
            crate::cpu::cold_path();
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
    if let Some(class) = fast_class(size, align) {
        // SAFETY: `current()` is the thread's cache or the static empty one (whose spans
        // hold no slot, so the window test fails); every span in a cache is owned by it.
        unsafe {
            let c = mcache::current();
            let span = (*c).free_span(class);
            if span.free_in_window(p as usize) {
                return;
            }
            return free_via_hint(c, span, class, p);
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
/// `class`; `p` as for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_via_hint(c: *mut MCache, span: &Span, class: usize, p: *mut u8) {
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
        let alloc = (*c).span(class);
        if let Some(idx) = alloc.slot_of(addr) {
            // `c` owns `alloc` (a span with slots is a real span, so `c` is a real cache);
            // `idx < nelems`.
            if alloc.try_free_local_branchy(idx, addr) {
                (*c).free_hint[class].set(alloc as *const Span as *mut Span);
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
    at_window_edge(idx) && !s.single_window() && !s.in_window(idx)
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
                let class = sr.spanclass.get().size_class().index();
                (*c).free_hint[class].set(s);
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
            unsafe { central(sr.spanclass.get().size_class()).pending.push(s) };
            crate::scavenge::span_pending();
        }
        // Freed remotely twice with no collection in between; a double free whose
        // first free was collected is caught by the owner's `collect_remote`.
        Push::Twice => crate::report::double_free(addr),
    }
    crate::check::after_slow_op();
}
