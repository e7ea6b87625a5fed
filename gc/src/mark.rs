//! Marking (Go's `mgcmark.go`): greying objects, draining grey work on every core, and the
//! conservative scan of thread stacks.
//!
//! An object is *grey* when its mark bit is set and it sits on some [`Tracer`]'s stack (or
//! the global work list), or, in the span-queued mark (`GOMALLOC_GCGREENTEA=1`), its bit is
//! set in its span's grey bitmap (`crate::greentea`); *black* when its mark bit is set and
//! it has been traced. Mark bits are set with `fetch_or` ([`gcapi::mark`]), so each object
//! is greyed exactly once even with several markers.

use crate::greentea;
use crate::ptr::VTable;
use crate::workshare::{self, WorkList};
use gomalloc::gcapi::{self, GreyMap, ObjectKind, ObjectRef, PAGE_SHIFT, SlotMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The span-queued mark (`GOMALLOC_GCGREENTEA=1`, read at start-up): a precise pointer to
/// a white object of a small scan span greys it in its span's grey bitmap and queues the
/// span (once, until a marker takes it), not the object; the marker that takes the span
/// scans all its grey objects together (Go 1.26's "Green Tea" collector). Off by default:
/// `docs/GC-BENCHMARKS.md` has what it measured.
pub(crate) static GREEN_TEA: AtomicBool = AtomicBool::new(false);

/// Marks a grey-work entry as a span, not an object: `SPAN_ENTRY | page number`. Object
/// addresses and page numbers never have the top bit set, and an entry kept as a page
/// number names no object's address (see [`SpanInfo`]).
const SPAN_ENTRY: usize = 1 << 63;

/// Span entries scanned since the process began by the tracers dropped since
/// ([`crate::debug::span_scans`]; a cycle's markers are dropped by its end).
pub(crate) static SPAN_SCANS: AtomicUsize = AtomicUsize::new(0);

/// Grey objects a tracer's stack must hold for it to give half of them to an idle marker.
///
/// Sharing happens only while some marker is idle (one relaxed load per scan), so it can
/// be small: a depth-first walk of a tree keeps about one entry per level on its stack
/// (the right siblings of the path to the object being scanned), and a threshold in the
/// hundreds never engaged a second marker on binary-trees or GCBench. What is given is
/// the *bottom* half of the stack: the oldest entries, the roots of the largest subtrees
/// not yet walked, so that one share keeps the other marker busy for long.
const SHARE_AT: usize = 4;

/// Grey objects taken off the stack ahead of their scan, each prefetched when taken, while
/// the queue is on (see [`Prefetch`]).
const PREFETCH: usize = 8;
/// Objects marked between two decisions whether the prefetch queue is on.
const PREFETCH_WINDOW: usize = 1024;
/// While the queue is on, one window in this many runs without it, to measure again.
const PREFETCH_PROBE: u32 = 8;

/// The prefetch queue between a tracer's grey stack and its scans (the "FIFO prefetch
/// buffer" of Cher, Hosking and Vijaykumar, ASPLOS 2004, as in Boehm's collector): an
/// object is prefetched when it leaves the stack and scanned `PREFETCH` objects later, so
/// that its cache miss overlaps the scans of the objects before it. Without it every scan
/// of an object far from the last waits for memory: a heap whose live objects are
/// scattered over many spans (long-lived structures whose parts were replaced, so that
/// the new parts fill holes all over the heap) marked several times slower than the same
/// live heap freshly allocated.
///
/// The queue is on only while the objects being marked are scattered over the heap: it
/// reorders the scans (the oldest of the `PREFETCH` objects on top of the stack first, not
/// the top), and on a heap laid out in allocation order (a tree built depth first and
/// scanned depth first walks memory in one direction, span after span) the order matters
/// more than the latency it hides: binary-trees marked a third slower with the queue
/// always on. The measure is the tracer's one-entry span cache ([`Tracer::mark_gc`]):
/// over a window of `PREFETCH_WINDOW` objects marked in stack order, more than one miss
/// per 8 objects turns the queue on, fewer turn it off (in stack order: binary-trees and
/// GCBench 1-2 misses per 100 objects, the pause benchmark's freshly built graph 5, the
/// same graph after small pieces of it were replaced again and again 26). While it is on,
/// every `PREFETCH_PROBE`-th window runs in stack order to measure again. Misses are
/// counted on the miss path only, so the hot path pays nothing for the measure.
///
/// Invariant: `ring[(head + i) % PREFETCH]` for `i < len` are the queued objects, oldest
/// first; every other entry is 0 (a tracer may sit on the collector's conservatively
/// scanned stack: no stale object address is left in it). `len <= depth`, except while
/// the queue empties after `depth` went down to 1.
struct Prefetch {
    ring: [usize; PREFETCH],
    head: usize,
    len: usize,
    /// Objects taken off the stack ahead: `PREFETCH` (on) or 1 (off, or a probe window).
    depth: usize,
    /// `len > 0 || depth > 1`: the scans go through the queue (one test on the hot path).
    in_use: bool,
    /// The last measurement said: scattered, use the queue.
    on: bool,
    /// Windows since the tracer began.
    windows: u32,
    /// Span-cache misses in the current window, which began when the tracer's
    /// `marked_objects` was `window_start` and ends at the first miss after
    /// `PREFETCH_WINDOW` more.
    misses: usize,
    window_start: usize,
}

/// Asks the CPU to bring the cache line at `addr` into the cache; no effect on the
/// program's state, never faults. Nothing under Miri, which runs no inline assembly.
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(miri)]
    let _ = addr;
    // SAFETY: a prefetch hint reads nothing architecturally and does not fault on any
    // address; it touches no register but its input and no flags.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    unsafe {
        std::arch::asm!("prefetcht0 [{a}]", a = in(reg) addr, options(nostack, preserves_flags, readonly));
    }
    // SAFETY: `prfm` is a prefetch hint: it reads nothing architecturally and does not
    // fault on any address; it touches no register but its input and no flags.
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{a}]", a = in(reg) addr, options(nostack, preserves_flags, readonly));
    }
}

/// The quick filter of the conservative scan: every GC span ever allocated lies in
/// `(HEAP_BELOW, HEAP_MAX)`. `HEAP_BELOW` is one below the lowest span's base, `HEAP_MAX`
/// the highest span's limit (one past its end), so that neither bound is an address inside
/// a GC span: a scan keeps both in registers, and callees spill those registers into their
/// frames, where the bound stays as a stale word. Kept as the lowest base itself, that
/// word named the first object of the lowest span and kept it (and a 250,000-node list it
/// headed) alive from a later frame's unwritten slot.
pub(crate) static HEAP_BELOW: AtomicUsize = AtomicUsize::new(usize::MAX);
pub(crate) static HEAP_MAX: AtomicUsize = AtomicUsize::new(0);

/// Records a new GC span's range in the quick filter.
pub(crate) fn note_span_range(base: usize, limit: usize) {
    HEAP_BELOW.fetch_min(base - 1, Ordering::Relaxed);
    HEAP_MAX.fetch_max(limit, Ordering::Relaxed);
}

/// A marker's view of the heap: given to [`Trace::trace`](crate::Trace::trace), it greys the
/// objects reported to it.
///
/// A tracer lives within one cycle's mark phase, during which no span is swept or freed
/// (sweeping finishes before marking starts and resumes after it ends): what it caches
/// about a span stays true for its whole life.
pub struct Tracer {
    stack: Vec<usize>,
    /// Grey objects off the stack, prefetched, next to scan.
    pf: Prefetch,
    /// Bytes of objects this tracer marked (slot sizes).
    pub(crate) marked_bytes: usize,
    /// Objects this tracer marked.
    pub(crate) marked_objects: usize,
    /// Span entries this tracer scanned, added to [`SPAN_SCANS`] when it is dropped (one
    /// atomic add per tracer, not one per span scan on the mark's path).
    span_scans: usize,
    /// The span of the last precise pointer (children are often in their parent's span).
    last: SpanInfo,
    /// Set for the checkmark re-mark (`crate::checkmark`): objects are recorded there
    /// instead of marked. `last` then stays [`SpanInfo::NONE`], so every [`Tracer::mark_gc`]
    /// takes the cache-miss path, which alone tests for the mode.
    pub(crate) check: Option<Box<crate::checkmark::Checkmark>>,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.span_scans != 0 {
            SPAN_SCANS.fetch_add(self.span_scans, Ordering::Relaxed);
        }
    }
}

/// What [`Tracer::mark_gc`] needs from a span, copied out of its record.
///
/// Invariant: `span` is null and `npages == 0` (matches no address), or `span` is an
/// in-use GC span of `npages` pages from page number `page` (address `page << PAGE_SHIFT`)
/// with object size `size` and division magic `magic` (0 for a large span, so that every
/// address resolves to slot 0).
///
/// The span is kept as a page *number*, never as an address: a tracer sits on the
/// collector's stack, which is scanned conservatively, and a span's base address is the
/// address of its first object (a stale copy would keep that object alive).
#[derive(Clone, Copy)]
struct SpanInfo {
    page: usize,
    npages: usize,
    slots: SlotMap,
    scan: bool,
    /// Greys go to the span's grey bitmap `grey` ([`GREEN_TEA`]; a small scan span).
    queue: bool,
    grey: GreyMap,
}

impl SpanInfo {
    const NONE: SpanInfo = SpanInfo {
        page: 0,
        npages: 0,
        slots: SlotMap::NONE,
        scan: false,
        queue: false,
        grey: GreyMap::NONE,
    };
}

impl Tracer {
    /// A marker's tracer, its grey stack allocated for 256 objects.
    pub(crate) fn new() -> Tracer {
        Tracer::with_stack(Vec::with_capacity(256))
    }

    /// The write barrier's tracer ([`crate::cell::shade`]): its grey stack is allocated at
    /// the first object it greys. What a store shades is usually marked already (objects
    /// allocated while marking are black), so a store pays no allocation and no free.
    pub(crate) fn for_barrier() -> Tracer {
        Tracer::with_stack(Vec::new())
    }

    fn with_stack(stack: Vec<usize>) -> Tracer {
        Tracer {
            stack,
            pf: Prefetch {
                ring: [0; PREFETCH],
                head: 0,
                len: 0,
                depth: 1,
                in_use: false,
                on: false,
                windows: 0,
                misses: 0,
                window_start: 0,
            },
            marked_bytes: 0,
            marked_objects: 0,
            span_scans: 0,
            last: SpanInfo::NONE,
            check: None,
        }
    }

    /// Greys the object containing `addr`, if `addr` points into an allocated GC object.
    /// Used for conservative words and precise roots, which may point anywhere.
    #[inline]
    pub(crate) fn mark_addr(&mut self, addr: usize) {
        if let Some(o) = gcapi::find_object(addr) {
            self.mark_object(o);
        }
    }

    /// Greys the object holding the value a `Gc` points to (a precise pointer from a traced
    /// object).
    ///
    /// A `Gc` reached while marking always points `OFFSET` bytes into an allocated object
    /// of an in-use GC span (the rooting rule: it was reachable at the last cycle, so it
    /// was not swept, and every slot allocated since is allocated in the bitmap, in a
    /// cache's committed window, or marked already). So the lookup skips what
    /// [`gcapi::find_object`] checks for arbitrary words (span kind and state, bounds,
    /// allocation bit): the span comes from a one-entry cache of the last span (children
    /// usually sit in their parent's span) or the arena map, the slot from the span's
    /// division magic. Debug builds check the result against `find_object`.
    #[inline(always)]
    pub(crate) fn mark_gc(&mut self, addr: usize) {
        if (addr >> PAGE_SHIFT).wrapping_sub(self.last.page) >= self.last.npages
            && self.load_span(addr)
        {
            return;
        }
        let c = self.last;
        // SAFETY: `addr` is a `Gc` into the cached span, which is live and not swept while
        // markers run, and points into an allocated object (the rooting rule above).
        let o = unsafe { c.slots.object(addr) };
        // SAFETY: `o` names the slot of a live object in a span that is not swept while
        // markers run.
        let marked = unsafe { gcapi::is_marked(o) };
        // An object allocated (black) in a mutator's still-cached window reads as free to
        // `find_object` (gcapi rule 2), but it is marked already.
        if cfg!(debug_assertions) && !marked && gcapi::find_object(addr) != Some(o) {
            dangling_gc(addr);
        }
        // SAFETY: `o` names the slot of a live object in a span that is not swept while
        // markers run (the rooting rule above).
        if !marked && unsafe { gcapi::mark(o) } {
            self.marked_objects += 1;
            self.marked_bytes += c.slots.object_size();
            if c.scan {
                if c.queue {
                    self.grey_in_span(o, c);
                } else {
                    self.stack.push(o.base());
                }
            }
        }
    }

    /// [`Tracer::mark_gc`] in the span-queued mark: greys the object `o`, which this
    /// tracer just marked, in the grey bitmap of its span `c`, and queues the span if no
    /// queue holds it.
    #[inline(always)]
    fn grey_in_span(&mut self, o: ObjectRef, c: SpanInfo) {
        let i = o.index();
        // SAFETY: `c.grey` is the map of `o`'s span, live and in use while markers run,
        // and `i < nelems`, so word `i / 64` is one of its slots' words.
        let (word, queued) = unsafe { (c.grey.word(i / 64), c.grey.queued()) };
        if greentea::grey(word, i / 64, (i % 64) as u32, queued) {
            self.stack.push(SPAN_ENTRY | c.page);
        }
    }

    /// Scans a grey-work entry, an object or a span of the span-queued mark, and returns
    /// the objects it scanned: 1 for an object, the span's grey objects for a span.
    ///
    /// # Safety
    /// `e` came off a grey stack: an allocated, initialised scan object's address, or
    /// `SPAN_ENTRY` and the page number of a queued small scan span.
    #[inline(always)]
    unsafe fn scan_entry(&mut self, e: usize) -> usize {
        if e & SPAN_ENTRY != 0 {
            self.scan_span(e & !SPAN_ENTRY)
        } else {
            // SAFETY: an allocated, initialised scan object (# Safety).
            unsafe { scan_object(e, self) };
            1
        }
    }

    /// Scans the grey objects of the queued span starting at page `page`
    /// ([`greentea::dequeue`], then [`greentea::take`] for each word its summary names);
    /// returns how many it scanned.
    #[inline(never)]
    fn scan_span(&mut self, page: usize) -> usize {
        let span = gcapi::span_of(page << PAGE_SHIFT);
        // SAFETY: a queued span holds marked objects, so it is a live, in-use span that is
        // not swept while markers run; it is a small scan span (only those are queued).
        let (slots, grey) = unsafe { (SlotMap::of(span), GreyMap::of(span)) };
        let Some(grey) = grey else {
            unreachable!("a queued span has a grey map");
        };
        let words = grey.slot_words();
        self.span_scans += 1;
        let mut scanned = 0;
        // SAFETY: the map of a live span (above).
        let mut summary = greentea::dequeue(unsafe { grey.queued() });
        while summary != 0 {
            let mut w = summary.trailing_zeros() as usize;
            summary &= summary - 1;
            while w < words {
                // SAFETY: `w` is one of the span's slots' words.
                let mut bits = greentea::take(unsafe { grey.word(w) });
                scanned += bits.count_ones() as usize;
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    // SAFETY: a grey bit is set only for an object a marker marked:
                    // allocated and initialised, of this scan span.
                    unsafe { scan_object(slots.slot(w * 64 + b), self) };
                }
                w += 64;
            }
        }
        scanned
    }

    /// Fills the span cache for the `Gc` address `addr` from the arena map. In the
    /// checkmark re-mark, checks the object instead and returns true (nothing left to do).
    #[inline(never)]
    fn load_span(&mut self, addr: usize) -> bool {
        if self.check.is_some() {
            self.check_gc(addr);
            return true;
        }
        let pf = &mut self.pf;
        pf.misses += 1;
        let marked = self.marked_objects - pf.window_start;
        if marked >= PREFETCH_WINDOW {
            if pf.depth == 1 {
                pf.on = pf.misses * 8 > marked;
            }
            pf.windows = pf.windows.wrapping_add(1);
            pf.depth = if pf.on && pf.windows % PREFETCH_PROBE != 0 {
                PREFETCH
            } else {
                1
            };
            pf.in_use = pf.len > 0 || pf.depth > 1;
            pf.misses = 0;
            pf.window_start = self.marked_objects;
        }
        let span = gcapi::span_of(addr);
        debug_assert!(!span.is_null(), "Gc {addr:#x} outside the heap");
        // SAFETY: a `Gc`'s span is a live span record (see `mark_gc`; records are never
        // freed).
        let s = unsafe { &*span };
        let scan = s.kind() == Some(ObjectKind::Scan);
        let grey = if scan && GREEN_TEA.load(Ordering::Relaxed) {
            // SAFETY: as for `SlotMap::of` below.
            unsafe { GreyMap::of(span) }
        } else {
            None
        };
        self.last = SpanInfo {
            page: s.base() >> PAGE_SHIFT,
            npages: s.npages(),
            // SAFETY: `span` is a live span record (records are never freed), and a span
            // holding a `Gc` stays in use, not swept, while markers run (see `mark_gc`).
            slots: unsafe { SlotMap::of(span) },
            scan,
            queue: grey.is_some(),
            grey: grey.unwrap_or(GreyMap::NONE),
        };
        false
    }

    /// Greys `o` if it was white.
    #[inline]
    pub(crate) fn mark_object(&mut self, o: ObjectRef) {
        if self.check.is_some() {
            self.check_object(o);
            return;
        }
        // SAFETY: `o` came from `find_object` (or `mark_gc`) during marking; spans are not
        // swept while markers run.
        if unsafe { gcapi::mark(o) } {
            let s = o.span();
            self.marked_objects += 1;
            self.marked_bytes += s.object_size();
            if s.kind() == Some(ObjectKind::Scan) {
                self.stack.push(o.base());
            }
        }
    }

    /// Traces the children of the scan object at `base` without marking it (used for
    /// objects with finalizers, §7 of the design).
    pub(crate) fn trace_children(&mut self, base: usize) {
        if let Some(o) = gcapi::find_object(base) {
            if o.span().kind() == Some(ObjectKind::Scan) {
                // SAFETY: an allocated scan object starts with its vtable word.
                unsafe { scan_object(o.base(), self) }
            }
        }
    }

    /// Scans the words of `[lo, hi)` conservatively.
    pub(crate) fn scan_conservative(&mut self, lo: usize, hi: usize) {
        let (below, max) = (
            HEAP_BELOW.load(Ordering::Relaxed),
            HEAP_MAX.load(Ordering::Relaxed),
        );
        let mut p = lo.next_multiple_of(8);
        while p + 8 <= hi {
            // SAFETY: `[lo, hi)` is a parked thread's stack (or ours), mapped and readable,
            // and its thread writes nothing above its published `sp` while parked (blocking
            // threads are scanned through their copy instead: design §3). Volatile: a word
            // read as raw bits.
            let w = unsafe { std::ptr::read_volatile(p as *const usize) };
            if w > below && w < max {
                self.mark_addr(w);
            }
            p += 8;
        }
    }

    /// Greys the objects the candidate words of [`stack_candidates`] point into.
    pub(crate) fn mark_candidates(&mut self, words: &[usize]) {
        for &w in words {
            self.mark_addr(w);
        }
    }

    /// Moves grey objects into the tracer (barrier shades, root lists).
    pub(crate) fn extend(&mut self, grey: impl IntoIterator<Item = usize>) {
        self.stack.extend(grey);
    }

    /// The next grey object to scan: the oldest of the prefetch queue, after topping the
    /// queue up from the stack.
    #[inline(always)]
    fn next_grey(&mut self) -> Option<usize> {
        if !self.pf.in_use {
            return self.stack.pop();
        }
        self.next_queued()
    }

    /// [`Tracer::next_grey`] with the queue in use.
    #[inline(never)]
    fn next_queued(&mut self) -> Option<usize> {
        let pf = &mut self.pf;
        let b = {
            while pf.len < pf.depth {
                let Some(b) = self.stack.pop() else { break };
                if b & SPAN_ENTRY == 0 {
                    prefetch(b);
                }
                pf.ring[(pf.head + pf.len) % PREFETCH] = b;
                pf.len += 1;
            }
            if pf.len == 0 {
                return None;
            }
            let b = std::mem::take(&mut pf.ring[pf.head]);
            pf.head = (pf.head + 1) % PREFETCH;
            pf.len -= 1;
            b
        };
        pf.in_use = pf.len > 0 || pf.depth > 1;
        Some(b)
    }

    /// Traces grey objects until `budget` are traced or none is left
    /// ([`Tracer::drain_counted`]); true if the tracer holds no grey object.
    pub(crate) fn drain_some(&mut self, budget: usize) -> bool {
        self.drain_counted(budget);
        self.pending() == 0
    }

    /// Traces grey objects until `budget` are traced or none is left; returns how many it
    /// traced. A queued span counts its grey objects, all scanned at once, so the count
    /// may pass `budget` by a span's objects less one (the span-queued mark).
    pub(crate) fn drain_counted(&mut self, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(e) = self.next_grey() else {
                break;
            };
            // SAFETY: only allocated scan objects (which start with a vtable) and queued
            // spans are pushed.
            n += unsafe { self.scan_entry(e) };
        }
        n
    }

    /// Traces grey objects until none is left anywhere (this tracer, the shared work list,
    /// the other markers): one of `n` markers of [`workshare::run_marker`], which counts
    /// the markers out of work in `idle`. While some marker is idle, this one gives it the
    /// bottom half of its stack whenever the stack holds [`SHARE_AT`] objects.
    pub(crate) fn drain_shared(&mut self, work: &WorkList, idle: &AtomicUsize, n: usize) {
        workshare::run_marker(work, idle, n, |chunk| {
            if let Some(c) = chunk {
                self.stack = c;
            }
            while let Some(e) = self.next_grey() {
                // SAFETY: only allocated scan objects and queued spans are pushed.
                unsafe { self.scan_entry(e) };
                if n > 1 && self.stack.len() >= SHARE_AT && idle.load(Ordering::Relaxed) > 0 {
                    let top = self.stack.split_off(self.stack.len() / 2);
                    let bottom = std::mem::replace(&mut self.stack, top);
                    work.push(bottom);
                }
            }
        });
    }

    /// Hands the bottom half of this tracer's grey stack to `work` (for a mark assist) if
    /// it holds at least [`SHARE_AT`] objects.
    pub(crate) fn share_half(&mut self, work: &WorkList) {
        if self.stack.len() >= SHARE_AT {
            let top = self.stack.split_off(self.stack.len() / 2);
            work.push(std::mem::replace(&mut self.stack, top));
        }
    }

    /// Takes a chunk of `work` onto this tracer's grey stack; false if `work` was empty.
    pub(crate) fn take_chunk(&mut self, work: &WorkList) -> bool {
        match work.pop() {
            Some(c) => {
                self.stack.extend(c);
                true
            }
            None => false,
        }
    }

    /// Queues the scan object at `base` (the checkmark re-mark).
    pub(crate) fn push_grey(&mut self, base: usize) {
        self.stack.push(base);
    }

    /// Takes a queued object (the checkmark re-mark).
    pub(crate) fn pop_grey(&mut self) -> Option<usize> {
        self.stack.pop()
    }

    /// Moves this tracer's grey objects to `out`.
    #[inline]
    pub(crate) fn take_grey(&mut self, out: &mut Vec<usize>) {
        if self.pf.len == 0 {
            // Nothing prefetched (always so for the write barrier's tracer, which usually
            // greys nothing): the stack is all there is, moved in one copy.
            if !self.stack.is_empty() {
                out.append(&mut self.stack);
            }
            return;
        }
        self.take_grey_queued(out);
    }

    /// [`Tracer::take_grey`] with objects in the prefetch queue.
    #[inline(never)]
    fn take_grey_queued(&mut self, out: &mut Vec<usize>) {
        while let Some(b) = self.next_grey() {
            out.push(b);
        }
    }

    /// Grey objects waiting in this tracer.
    pub(crate) fn pending(&self) -> usize {
        self.stack.len() + self.pf.len
    }
}

/// Replaces `out` with the words of the calling thread's own stack range `[lo, hi)` that
/// fall in the GC heap's address range (the scan's quick filter: the range only grows, so
/// a word outside it now points into no object that exists now). The thread reads only its
/// own frames, which no other thread writes.
///
/// The loop makes no call (the room is reserved first, the words stored through a raw
/// pointer), so a word it reads stays in registers and is never spilled into a frame of
/// its own: a copy left below the stack pointer would be a stale root for any later frame
/// (of this thread, or of the next thread glibc gives this stack to) with a slot there that
/// it never writes.
pub(crate) fn stack_candidates(lo: usize, hi: usize, out: &mut Vec<usize>) {
    let lo = lo.next_multiple_of(8);
    out.clear();
    out.reserve(hi.saturating_sub(lo) / 8);
    let (below, max) = (
        HEAP_BELOW.load(Ordering::Relaxed),
        HEAP_MAX.load(Ordering::Relaxed),
    );
    let dst = out.as_mut_ptr();
    let mut n = 0;
    let mut p = lo;
    while p + 8 <= hi {
        // SAFETY: `[lo, hi)` is part of the calling thread's own stack: mapped and
        // readable. Volatile: a word read as raw bits, whatever the frame keeps there.
        let w = unsafe { std::ptr::read_volatile(p as *const usize) };
        if w > below && w < max {
            // SAFETY: `n` is below the number of words of `[lo, hi)`, which `out` has room
            // for (reserved above).
            unsafe { dst.add(n).write(w) };
            n += 1;
        }
        p += 8;
    }
    // SAFETY: the first `n` elements were written above; `n <= capacity`.
    unsafe { out.set_len(n) };
}

/// A traced `Gc` names no allocated object: a reachable object was freed (a missed root or
/// barrier). Debug builds only. Not a panic: the world is usually stopped, and unwinding
/// would leave every mutator waiting for a cycle that never ends.
#[cold]
#[inline(never)]
fn dangling_gc(addr: usize) -> ! {
    eprintln!("gc: a traced Gc ({addr:#x}) is not an allocated GC object (freed while reachable)");
    std::process::abort();
}

/// Traces the object at `base` through its header.
///
/// # Safety
/// `base` is an allocated, initialised object of kind `SCAN`.
#[inline]
pub(crate) unsafe fn scan_object(base: usize, t: &mut Tracer) {
    // SAFETY: `base` is an allocated, initialised `SCAN` object (# Safety), so its first
    // word is its type's `&'static VTable` and an initialised value lies at `vt.offset`.
    unsafe {
        let vt: &'static VTable = *(base as *const &'static VTable);
        (vt.trace)((base + vt.offset) as *const u8, t)
    }
}

/// Runs `f(sp)` with the callee-saved registers spilled into this frame and `sp` the stack
/// pointer below them, so that scanning `[sp, stack_top)` sees every GC pointer the caller's
/// frames hold, in memory or in registers.
///
/// `f` runs in a frame of its own below `sp` ([`run_below`]), so that a thread which
/// publishes `sp` and then parks writes only below it: the collector's scan of
/// `[sp, stack_top)` never reads a word the thread is writing. (A blocking region's closure
/// may write above `sp`, so a blocking thread is scanned through a copy of its stack:
/// `Mutator::blocking`.)
#[cfg(not(feature = "precise"))]
#[inline(never)]
pub(crate) fn with_registers_spilled<R>(f: impl FnOnce(usize) -> R) -> R {
    // Every callee-saved register of the target's C ABI that can hold a pointer: x86_64
    // System V, 6 words (rbx, rbp, r12-r15); aarch64 AAPCS64, 19 words (x19-x29, and the
    // low halves d8-d15 of v8-v15, where the compiler may park an integer too).
    let mut regs = [0usize; 19];
    let sp: usize;
    // SAFETY: stores callee-saved registers into `regs` (19 words, enough for either
    // target) and reads the stack pointer; touches nothing else.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            "mov [{r}], rbx",
            "mov [{r} + 8], rbp",
            "mov [{r} + 16], r12",
            "mov [{r} + 24], r13",
            "mov [{r} + 32], r14",
            "mov [{r} + 40], r15",
            "mov {sp}, rsp",
            r = in(reg) regs.as_mut_ptr(),
            sp = out(reg) sp,
            options(nostack, preserves_flags)
        );
    }
    // SAFETY: stores callee-saved registers (x19-x29, d8-d15 on aarch64) into `regs`, the
    // stores ending at byte 152 = 19 words, its size, and reads the stack pointer; touches
    // nothing else.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!(
            "stp x19, x20, [{r}]",
            "stp x21, x22, [{r}, #16]",
            "stp x23, x24, [{r}, #32]",
            "stp x25, x26, [{r}, #48]",
            "stp x27, x28, [{r}, #64]",
            "str x29, [{r}, #80]",
            "stp d8, d9, [{r}, #88]",
            "stp d10, d11, [{r}, #104]",
            "stp d12, d13, [{r}, #120]",
            "stp d14, d15, [{r}, #136]",
            "mov {sp}, sp",
            r = in(reg) regs.as_mut_ptr(),
            sp = out(reg) sp,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!("gomalloc-gc scans registers on x86_64 and aarch64 (Linux) only");
    let regs = std::hint::black_box(&mut regs);
    let sp = sp.min(regs.as_ptr() as usize);
    let r = run_below(f, sp);
    std::hint::black_box(regs);
    r
}

/// Calls `f(sp)` in a new frame, which lies below the caller's stack pointer, whatever the
/// optimiser does with the caller's (hence never inlined).
#[cfg(not(feature = "precise"))]
#[inline(never)]
fn run_below<R>(f: impl FnOnce(usize) -> R, sp: usize) -> R {
    f(sp)
}

/// The precise mode scans no stack: `f(0)` (no stack pointer to publish).
#[cfg(feature = "precise")]
#[inline]
pub(crate) fn with_registers_spilled<R>(f: impl FnOnce(usize) -> R) -> R {
    f(0)
}

/// The calling thread's stack: `(lowest address, one past the highest)`.
#[cfg(not(feature = "precise"))]
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; we read the stack
    // fields and destroy the attribute object.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(
            libc::pthread_getattr_np(libc::pthread_self(), &mut attr),
            0,
            "pthread_getattr_np"
        );
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// The precise mode scans no stack.
#[cfg(feature = "precise")]
pub(crate) fn thread_stack_bounds() -> (usize, usize) {
    (0, 0)
}
