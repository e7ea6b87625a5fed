//! The page heap (Go's `mheap.go`): runs of 8 KiB pages for spans and large objects.
//!
//! Free runs are span records (state [`SpanState::Free`]) kept in size-segregated bins:
//! one exact bin per page count below 128, then four bins per power of two (as in TLSF).
//! A bitmap of non-empty bins finds a fitting run in O(1): the request is rounded up to
//! the next bin boundary so that any run in a higher bin fits. Freed runs coalesce with
//! their free neighbours at once, found through the arena map's page -> span entries
//! (a free run keeps entries on its first and last page). In-use spans map every page,
//! except `malloc`'s large blocks, which map their ends only, like a free run
//! ([`MHeap::alloc_span_ends_only`]): a block of n pages then costs two entries, not 2n
//! stores spread over n/8 cache lines of the map, and nothing needs the others, since
//! `free` takes a block's first address and the collector never looks into `malloc`'s
//! blocks by address.
//!
//! Each arena keeps a *scavenged* bit per page: set when the page's memory went back to
//! the OS (or was never touched), so it reads as zero. Allocating a run clears the bits
//! and tells the span whether it needs zeroing. The heap grows by committing more of the
//! current arena (Go's `curArena`) in 4 MiB steps, reserving new 64 MiB arenas (placed
//! contiguously when the address hint allows) when it runs out.
//!
//! Files: this one is the page allocator (bins, allocation, coalescing, growth);
//! `mheap/pagebits.rs` holds the per-page bitmaps, and `mheap/release.rs` the mechanism
//! that gives free pages back to the OS (the dirty list and `MHeap::scavenge`), whose
//! policy is `scavenge.rs`'s. Everything here runs under the one heap lock, [`HEAP`].
//!
//! Layer: pages (the crate root's module map, `lib.rs`).

use crate::arena::{self, HeapArena, ARENA_SIZE, HEAP_ARENA_BYTES};
use crate::config;
use crate::fixalloc::FixAlloc;
use crate::lock::SpinLock;
use crate::os;
use crate::sizeclass::{SpanClass, PAGE_SHIFT, PAGE_SIZE};
use crate::list::List;
use crate::span::{InDirty, Span, SpanList, SpanState, SPAN_RECORD_BYTES};
use core::ptr;

mod pagebits;
mod release;

use pagebits::{scavenged_set, scavenged_take, set_page_in_use};
pub use release::ReleasePolicy;

/// Page counts below this have an exact bin.
const EXACT_BINS: usize = 128;
/// Number of bins (exact + 4 per power of two up to 2^35 pages).
const NBINS: usize = 256;
/// The heap grows by at least this many pages (4 MiB), like Go's `mheap.grow`.
const GROW_PAGES: usize = 512;
/// Where the first arena is placed if the address is free (Go uses `0xc000000000`).
const ARENA_HINT: usize = 0x00c0_0000_0000;

/// The bin holding runs of `n` pages.
#[inline]
pub const fn bin_of(n: usize) -> usize {
    if n < EXACT_BINS {
        return n;
    }
    let f = (usize::BITS - 1 - n.leading_zeros()) as usize;
    EXACT_BINS + (f - 7) * 4 + ((n >> (f - 2)) & 3)
}

/// The first bin all of whose runs have at least `n` pages.
#[inline]
pub const fn bin_fit(n: usize) -> usize {
    if n < EXACT_BINS {
        return n;
    }
    let f = (usize::BITS - 1 - n.leading_zeros()) as usize;
    let b = bin_of(n);
    if n & ((1 << (f - 2)) - 1) == 0 {
        b
    } else {
        b + 1
    }
}

/// Page-heap statistics, in pages unless named otherwise.
#[derive(Clone, Copy, Default, Debug)]
pub struct HeapCounters {
    /// Pages in in-use spans.
    pub pages_inuse: usize,
    /// Free pages (dirty or released).
    pub pages_free: usize,
    /// Free pages whose memory is back with the OS.
    pub pages_released: usize,
    /// Bytes of heap address space committed (Reserved -> Prepared).
    pub heap_sys: usize,
    /// Bytes of heap address space reserved.
    pub heap_reserved: usize,
    /// Bytes of metadata from the OS (arena records, L2 tables, span records).
    pub metadata_sys: usize,
    /// Arenas registered.
    pub arenas: usize,
    /// Large objects currently allocated.
    pub large_objects: usize,
    /// Large objects allocated since start.
    pub large_allocs: usize,
    /// Pages in large-object spans.
    pub large_pages: usize,
    /// Bytes handed back to the OS since start.
    pub released_total: usize,
    /// Of those, bytes released synchronously as the heap grew past its goal.
    pub scavenged_sync: usize,
}

/// The page heap. All fields are protected by [`HEAP`].
pub struct MHeap {
    bins: [SpanList; NBINS],
    nonempty: [u64; NBINS / 64],
    spanalloc: FixAlloc,
    /// Reserved but not yet committed address space of the current arena region.
    cur_base: usize,
    cur_end: usize,
    hint: usize,
    /// Free runs that may hold pages not yet released to the OS, oldest first: the
    /// scavenger's work list (`release.rs`).
    dirty: List<InDirty>,
    /// The most pages in use since the scavenger last looked ([`MHeap::take_inuse_high`]):
    /// its decaying peak follows rises it did not see (it may not have been running).
    inuse_high: usize,
    /// How much to keep and when to wake the scavenger ([`ReleasePolicy`]).
    policy: &'static ReleasePolicy,
    /// Statistics.
    pub c: HeapCounters,
}

// SAFETY: the raw pointers refer to heap metadata; HEAP's lock serialises access.
unsafe impl Send for MHeap {}

/// The page heap.
pub static HEAP: SpinLock<MHeap> = SpinLock::new(MHeap::new());

impl MHeap {
    const fn new() -> MHeap {
        MHeap::with_hint(ARENA_HINT)
    }

    /// A heap of its own for unit test `slot` (the mheap tests use slots 0 to 7, the span
    /// tests 8 and up), its first arena at 256 GiB + `slot` × 16 GiB: below the global
    /// heap's arenas and inside ThreadSanitizer's application range (which ends at 1 TiB).
    #[cfg(test)]
    pub(crate) const fn private(slot: usize) -> MHeap {
        MHeap::with_hint(0x0040_0000_0000 + slot * (16 << 30))
    }

    /// A heap whose first arena goes at `hint` if that address is free. Tests build
    /// private heaps far from the global one so they cannot touch its arenas.
    pub(crate) const fn with_hint(hint: usize) -> MHeap {
        MHeap {
            bins: [const { SpanList::new() }; NBINS],
            nonempty: [0; NBINS / 64],
            spanalloc: FixAlloc::new(SPAN_RECORD_BYTES),
            cur_base: 0,
            cur_end: 0,
            hint,
            dirty: List::new(),
            inuse_high: 0,
            policy: &ReleasePolicy::NONE,
            c: HeapCounters {
                pages_inuse: 0,
                pages_free: 0,
                pages_released: 0,
                heap_sys: 0,
                heap_reserved: 0,
                metadata_sys: 0,
                arenas: 0,
                large_objects: 0,
                large_allocs: 0,
                large_pages: 0,
                released_total: 0,
                scavenged_sync: 0,
            },
        }
    }

    // ---- span records ----

    fn new_record(&mut self) -> *mut Span {
        let before = self.spanalloc.sys;
        let p = self.spanalloc.alloc().cast::<Span>();
        self.c.metadata_sys += self.spanalloc.sys - before;
        if !p.is_null() {
            // SAFETY: storage of the right size and alignment (64-byte multiples), fresh or
            // a freed record nothing references.
            unsafe { init_record(p) };
        }
        p
    }

    /// # Safety
    /// `s` came from `new_record` and is referenced by no list or arena entry.
    unsafe fn free_record(&mut self, s: *mut Span) {
        // SAFETY: `s` came from `new_record` (so from `spanalloc`) and nothing references
        // it any more (# Safety).
        unsafe {
            (*s).set_state(SpanState::Dead);
            self.spanalloc.free(s.cast());
        }
    }

    // ---- bins ----

    /// Bins a free run; `dirty` puts it on the scavenger's list too (it may hold pages
    /// not yet released to the OS).
    ///
    /// # Safety
    /// `s` is a free record in no bin and not on the dirty list, with boundary entries set.
    unsafe fn insert(&mut self, s: *mut Span, dirty: bool) {
        // SAFETY: `s` is a valid record owned by the heap.
        let sr = unsafe { &*s };
        sr.in_dirty.set(false);
        if dirty {
            // SAFETY: `s` is a valid free record not on the dirty list (# Safety).
            unsafe { self.dirty_push_back(s) };
        }
        let b = bin_of(sr.npages.get());
        sr.bin.set(b as u16);
        // SAFETY: `s` is a valid record in no bin (# Safety).
        unsafe { self.bins[b].push_front(s) };
        self.nonempty[b / 64] |= 1 << (b % 64);
    }

    /// Unbins a free run (and takes it off the dirty list).
    ///
    /// # Safety
    /// `s` is in its bin.
    unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: `s` and its neighbours are valid records in the bin.
        unsafe {
            let sr = &*s;
            if sr.in_dirty.get() {
                self.dirty_unlink(s);
            }
            let b = sr.bin.get() as usize;
            self.bins[b].remove(s);
            if self.bins[b].is_empty() {
                self.nonempty[b / 64] &= !(1 << (b % 64));
            }
        }
    }

    /// A free run of at least `n` pages, or null.
    fn find(&self, n: usize) -> *mut Span {
        let b = bin_fit(n);
        if b < NBINS {
            let mut w = b / 64;
            let mut bits = self.nonempty[w] & (!0u64 << (b % 64));
            loop {
                if bits != 0 {
                    return self.bins[w * 64 + bits.trailing_zeros() as usize].front();
                }
                w += 1;
                if w == self.nonempty.len() {
                    break;
                }
                bits = self.nonempty[w];
            }
        }
        // The rounded-up bins are empty; a run in n's own bin may still fit.
        let bin = &self.bins[bin_of(n).min(NBINS - 1)];
        let mut s = bin.front();
        while !s.is_null() {
            // SAFETY: bin members are valid records.
            unsafe {
                if (*s).npages.get() >= n {
                    return s;
                }
                s = bin.next(s);
            }
        }
        ptr::null_mut()
    }

    /// Sets the arena-map entries of a span's first and last pages: all a free run or an
    /// `ends_only` span maps.
    ///
    /// # Safety
    /// `s` is a valid record of pages in registered arenas.
    unsafe fn set_bounds(s: *mut Span) {
        // SAFETY: `s` is a valid record of pages in registered arenas (# Safety); the
        // heap lock is held, as everywhere in this module.
        unsafe {
            let base = (*s).base.get();
            arena::set_span(base, s);
            arena::set_span((*s).limit() - PAGE_SIZE, s);
        }
    }

    /// Maps the pages of the in-use span `s`: every page, or its first and last only if it
    /// is `ends_only` (whose other entries must be null already: arena invariant 1).
    ///
    /// # Safety
    /// As for [`MHeap::set_bounds`].
    unsafe fn map_in_use(s: *mut Span) {
        // SAFETY: `s` is a valid record of pages in registered arenas (# Safety).
        unsafe {
            if (*s).ends_only.get() {
                Self::set_bounds(s);
            } else {
                arena::set_spans((*s).base.get(), (*s).npages.get(), s);
            }
        }
    }

    // ---- allocation ----

    /// Allocates `npages` pages aligned to `align` bytes (a power of two; at most page
    /// alignment is free) as an in-use span of class `spc`, every page in the arena map.
    /// Null when out of memory.
    pub fn alloc_span(&mut self, npages: usize, align: usize, spc: SpanClass) -> *mut Span {
        self.alloc_span_mapping(npages, align, spc, false)
    }

    /// [`MHeap::alloc_span`] for one of `malloc`'s large blocks: only the span's first and
    /// last pages go into the arena map (`Span::ends_only`), so the block costs two map
    /// entries to allocate and none to free, not two per page. Nothing looks such a block
    /// up by an interior address but diagnostics ([`arena::span_containing`]).
    pub fn alloc_span_ends_only(&mut self, npages: usize, align: usize, spc: SpanClass) -> *mut Span {
        self.alloc_span_mapping(npages, align, spc, true)
    }

    fn alloc_span_mapping(
        &mut self,
        npages: usize,
        align: usize,
        spc: SpanClass,
        ends_only: bool,
    ) -> *mut Span {
        let align = align.max(PAGE_SIZE);
        let extra = (align >> PAGE_SHIFT) - 1;
        let Some(need) = npages.checked_add(extra) else {
            return ptr::null_mut();
        };
        let mut f = self.find(need);
        if f.is_null() {
            if !self.grow(need, align) {
                return ptr::null_mut();
            }
            f = self.find(need);
            if f.is_null() {
                return ptr::null_mut();
            }
        }
        // Records for the head and tail remainders, taken before anything changes.
        let (h, t) = (self.new_record(), self.new_record());
        if h.is_null() || t.is_null() {
            // SAFETY: fresh records referenced nowhere.
            unsafe {
                if !h.is_null() {
                    self.free_record(h);
                }
                if !t.is_null() {
                    self.free_record(t);
                }
            }
            return ptr::null_mut();
        }
        // SAFETY: `f` is a free record in its bin; `h`/`t` are fresh records; all pages lie
        // in registered arenas.
        unsafe {
            let dirty = (*f).in_dirty.get();
            self.remove(f);
            let fr = &*f;
            let (fbase, fpages) = (fr.base.get(), fr.npages.get());
            let start = (fbase + align - 1) & !(align - 1);
            let head = (start - fbase) >> PAGE_SHIFT;
            let tail = fpages - head - npages;
            if head > 0 {
                (*h).base.set(fbase);
                (*h).npages.set(head);
                (*h).set_state(SpanState::Free);
                (*h).dirty_since.set(fr.dirty_since.get());
                Self::set_bounds(h);
                self.insert(h, dirty);
            } else {
                self.free_record(h);
            }
            if tail > 0 {
                (*t).base.set(start + (npages << PAGE_SHIFT));
                (*t).npages.set(tail);
                (*t).set_state(SpanState::Free);
                (*t).dirty_since.set(fr.dirty_since.get());
                Self::set_bounds(t);
                self.insert(t, dirty);
            } else {
                self.free_record(t);
            }
            fr.base.set(start);
            fr.npages.set(npages);
            let scav = scavenged_take(start, npages);
            self.c.pages_released -= scav;
            self.c.pages_free -= npages;
            self.c.pages_inuse += npages;
            self.inuse_high = self.inuse_high.max(self.c.pages_inuse);
            fr.set_state(SpanState::InUse);
            // Ends only: the run's interior entries are null (invariant 1), and its own end
            // entries now belong to the span or to a remainder, whose `set_bounds` rewrote
            // them above.
            fr.ends_only.set(ends_only);
            Self::map_in_use(f);
            set_page_in_use(start, true);
            fr.init_in_use(spc, scav < npages || !config::released_pages_are_zero());
            if fr.is_large() {
                self.c.large_objects += 1;
                self.c.large_allocs += 1;
                self.c.large_pages += npages;
            }
        }
        f
    }

    /// Returns an in-use span's pages to the heap, coalescing with free neighbours.
    ///
    /// # Safety
    /// `s` is an in-use span that no cache, list or user references any more.
    pub unsafe fn free_span(&mut self, s: *mut Span) {
        // SAFETY: `s` is an in-use span nothing references any more (# Safety), so a valid
        // record of pages in registered arenas that we may free.
        unsafe {
            let sr = &*s;
            crate::check!(
                sr.state() == SpanState::InUse,
                "free_span of a span not in use",
                s as usize
            );
            let (base, n) = (sr.base.get(), sr.npages.get());
            if sr.is_large() {
                self.c.large_objects -= 1;
                self.c.large_pages -= n;
            }
            self.c.pages_inuse -= n;
            self.c.pages_free += n;
            set_page_in_use(base, false);
            sr.owner
                .store(ptr::null_mut(), core::sync::atomic::Ordering::Relaxed);
            sr.set_state(SpanState::Free);
            if n > 2 && !sr.ends_only.get() {
                arena::set_spans(base + PAGE_SIZE, n - 2, ptr::null_mut());
            }
            self.coalesce_insert(s, true);
        }
        self.pages_freed();
    }

    /// After pages came back: tells the policy, which may start the scavenger.
    #[inline]
    fn pages_freed(&self) {
        let inuse = self.c.pages_inuse << PAGE_SHIFT;
        (self.policy.pages_freed)(self.retained() - inuse, inuse);
    }

    /// The most pages in use since the last call, which starts a new period at the pages
    /// in use now (the scavenger's decaying peak).
    pub(crate) fn take_inuse_high(&mut self) -> usize {
        let high = self.inuse_high.max(self.c.pages_inuse);
        self.inuse_high = self.c.pages_inuse;
        high
    }

    /// Merges the free record `s` with free neighbours and bins the result, on the dirty
    /// list if `dirty` or if a neighbour was; a dirty result counts as dirty from now (its
    /// freshly freed part is about to be reused as likely as not).
    ///
    /// # Safety
    /// `s` is a free record in no bin; its interior entries are null.
    unsafe fn coalesce_insert(&mut self, s: *mut Span, mut dirty: bool) {
        // SAFETY: `s` is a free record in no bin (# Safety). A non-null arena-map entry is
        // a valid record (arena invariant 1), and a free one is in its bin (module header).
        unsafe {
            let sr = &*s;
            let (old_first, old_last) = (sr.base.get(), sr.limit() - PAGE_SIZE);
            let before = arena::span_of(sr.base.get() - 1);
            if !before.is_null()
                && (*before).state() == SpanState::Free
                && (*before).limit() == sr.base.get()
            {
                dirty |= (*before).in_dirty.get();
                self.remove(before);
                let (pb, pn) = ((*before).base.get(), (*before).npages.get());
                arena::set_span(pb + ((pn - 1) << PAGE_SHIFT), ptr::null_mut());
                sr.base.set(pb);
                sr.npages.set(sr.npages.get() + pn);
                self.free_record(before);
            }
            let after = arena::span_of(sr.limit());
            if !after.is_null()
                && (*after).state() == SpanState::Free
                && (*after).base.get() == sr.limit()
            {
                dirty |= (*after).in_dirty.get();
                self.remove(after);
                arena::set_span((*after).base.get(), ptr::null_mut());
                sr.npages.set(sr.npages.get() + (*after).npages.get());
                self.free_record(after);
            }
            // The old boundary entries of `s` may now be interior; `set_bounds` rewrites
            // them if they are still boundaries.
            arena::set_span(old_first, ptr::null_mut());
            arena::set_span(old_last, ptr::null_mut());
            Self::set_bounds(s);
            if dirty {
                sr.dirty_since.set((self.policy.now)());
            }
            self.insert(s, dirty);
        }
    }

    /// Splits the last `tail` pages off the in-use large span `s` as a span of their own,
    /// in use and never freed: the `guard-pages` feature's way out when the system refuses
    /// to make a guard page writable again (a memory limit), so the rest of the block can
    /// go back to the heap without the inaccessible page. Returns false (and changes
    /// nothing) if no span record is available.
    ///
    /// # Safety
    /// `s` is an in-use large span; `0 < tail < s.npages`.
    pub unsafe fn split_off_tail(&mut self, s: *mut Span, tail: usize) -> bool {
        let t = self.new_record();
        if t.is_null() {
            return false;
        }
        // SAFETY: `s` is an in-use large span and `tail < s.npages` (# Safety), so its tail
        // pages lie in registered arenas; `t` is a fresh record, ours alone.
        unsafe {
            let sr = &*s;
            let keep = sr.npages.get() - tail;
            let tbase = sr.base.get() + (keep << PAGE_SHIFT);
            sr.npages.set(keep);
            (*t).base.set(tbase);
            (*t).npages.set(tail);
            (*t).set_state(SpanState::InUse);
            (*t).ends_only.set(sr.ends_only.get());
            if sr.ends_only.get() {
                // The span's new last page was interior (null) unless it is its first.
                arena::set_span(tbase - PAGE_SIZE, s);
            }
            Self::map_in_use(t);
            set_page_in_use(tbase, true);
            (*t).init_in_use(sr.spanclass.get(), true);
            self.c.large_objects += 1;
        }
        true
    }

    /// Shrinks a large span in place to `npages`, freeing the tail.
    ///
    /// # Safety
    /// `s` is an in-use large span; `0 < npages < s.npages`.
    pub unsafe fn shrink_span(&mut self, s: *mut Span, npages: usize) {
        let t = self.new_record();
        if t.is_null() {
            return; // keep the span as it is: still correct, only less compact
        }
        // SAFETY: `s` is an in-use large span and `npages < s.npages` (# Safety), so its
        // tail pages lie in registered arenas; `t` is a fresh record, in no bin.
        unsafe {
            let sr = &*s;
            let tail = sr.npages.get() - npages;
            let tbase = sr.base.get() + (npages << PAGE_SHIFT);
            sr.npages.set(npages);
            (*t).base.set(tbase);
            (*t).npages.set(tail);
            (*t).set_state(SpanState::Free);
            if sr.ends_only.get() {
                // The tail's interior is null already; its last entry, which names `s`,
                // `coalesce_insert` rewrites. The span's new last page was interior.
                arena::set_span(tbase - PAGE_SIZE, s);
            } else {
                arena::set_spans(tbase, tail, ptr::null_mut());
            }
            self.c.pages_inuse -= tail;
            self.c.pages_free += tail;
            self.c.large_pages -= tail;
            self.coalesce_insert(t, true);
        }
        self.pages_freed();
    }

    /// Grows a large span in place to `npages` if the run after it is free and big
    /// enough. Returns whether it did. New pages may hold old data (the span's
    /// `needzero` is updated).
    ///
    /// # Safety
    /// `s` is an in-use large span; `npages > s.npages`.
    pub unsafe fn try_extend_span(&mut self, s: *mut Span, npages: usize) -> bool {
        // SAFETY: `s` is an in-use large span (# Safety); `after`, a non-null arena-map
        // entry, is a valid record (arena invariant 1), binned when free (module header).
        unsafe {
            let sr = &*s;
            let more = npages - sr.npages.get();
            let after = arena::span_of(sr.limit());
            if after.is_null()
                || (*after).state() != SpanState::Free
                || (*after).base.get() != sr.limit()
                || (*after).npages.get() < more
            {
                return false;
            }
            let dirty = (*after).in_dirty.get();
            self.remove(after);
            let ar = &*after;
            let start = ar.base.get();
            let left = ar.npages.get() - more;
            if left > 0 {
                ar.base.set(start + (more << PAGE_SHIFT));
                ar.npages.set(left);
                Self::set_bounds(after);
                self.insert(after, dirty);
            } else {
                self.free_record(after);
            }
            let scav = scavenged_take(start, more);
            self.c.pages_released -= scav;
            self.c.pages_free -= more;
            self.c.pages_inuse += more;
            self.inuse_high = self.inuse_high.max(self.c.pages_inuse);
            self.c.large_pages += more;
            if sr.ends_only.get() {
                // The old last page and the run's first become interior (null); the new
                // last page names the span. (Of a one-page span, the old last page is its
                // first, which stays.)
                let old_last = start - PAGE_SIZE;
                if old_last != sr.base.get() {
                    arena::set_span(old_last, ptr::null_mut());
                }
                arena::set_span(start, ptr::null_mut());
                arena::set_span(start + ((more - 1) << PAGE_SHIFT), s);
            } else {
                arena::set_spans(start, more, s);
            }
            sr.npages.set(npages);
            if scav < more || !config::released_pages_are_zero() {
                sr.needzero.set(true);
            }
            true
        }
    }

    // ---- growth ----

    /// Adds at least `npages` pages (with room for `align`) of fresh memory to the free
    /// bins. False when the OS refuses.
    fn grow(&mut self, npages: usize, align: usize) -> bool {
        let Some(bytes) = npages.checked_mul(PAGE_SIZE) else {
            return false;
        };
        let ask = bytes.max(GROW_PAGES * PAGE_SIZE);
        if self.cur_end - self.cur_base < ask {
            let Some(size) = ask
                .checked_add(ARENA_SIZE - 1)
                .map(|v| v & !(ARENA_SIZE - 1))
            else {
                return false;
            };
            // SAFETY: size and alignment are arena multiples.
            let p = unsafe { os::sys_reserve(self.hint, size, ARENA_SIZE.max(align)) } as usize;
            if p == 0 {
                return false;
            }
            if p + size > 1 << arena::ADDR_BITS || !self.register_arenas(p, size) {
                // Give the address space back: under `ulimit -v` a leaked reservation
                // would make every later attempt fail too.
                // SAFETY: the reservation was just made and nothing refers to it.
                unsafe { os::sys_free(p as *mut u8, size) };
                return false;
            }
            self.c.heap_reserved += size;
            self.hint = p + size;
            if p == self.cur_end && self.cur_end != 0 {
                self.cur_end += size;
            } else {
                // Not contiguous: hand the rest of the old region to the heap as free,
                // then start over in the new one.
                let rest = self.cur_end - self.cur_base;
                if rest > 0 && !self.add_fresh(self.cur_base, rest) {
                    // The system refused the commit: return the address space rather
                    // than forget it reserved.
                    // SAFETY: the uncommitted rest of our reservation, referenced by no
                    // span (its arena-map entries are null).
                    unsafe { os::sys_free(self.cur_base as *mut u8, rest) };
                }
                self.cur_base = p;
                self.cur_end = p + size;
            }
        }
        let take = if self.cur_end - self.cur_base - ask < GROW_PAGES * PAGE_SIZE {
            self.cur_end - self.cur_base // do not leave a sliver behind
        } else {
            ask
        };
        let base = self.cur_base;
        if !self.add_fresh(base, take) {
            return false;
        }
        self.cur_base += take;
        // Go's mheap.grow: if using this memory would take the heap's retained memory past
        // its goal, release as much elsewhere now, synchronously. The goal covers the
        // memory in use now (the background thread's may be up to a step old), and free
        // runs dirtied less than `MIN_AGE_NS` ago are kept (unless over the memory limit):
        // releasing them would mostly make the program fault them in again.
        let inuse = (self.c.pages_inuse << PAGE_SHIFT) + take;
        let goal = (self.policy.retained_goal)(inuse);
        let after = self.retained() + take;
        if after > goal {
            let todo = ((after - goal) >> PAGE_SHIFT).min(take >> PAGE_SHIFT);
            let over_limit = after > config::memory_limit();
            let r = self
                .scavenge(todo, true, (self.policy.dirty_cutoff)(over_limit))
                .released;
            self.c.scavenged_sync += r << PAGE_SHIFT;
        }
        true
    }

    /// Commits `[base, base+bytes)` and bins it as one free, scavenged run.
    fn add_fresh(&mut self, base: usize, bytes: usize) -> bool {
        let s = self.new_record();
        if s.is_null() {
            return false;
        }
        // SAFETY: the range lies in a reservation of ours and is page-aligned.
        if !unsafe { os::sys_map(base as *mut u8, bytes) } {
            // SAFETY: fresh record referenced nowhere.
            unsafe { self.free_record(s) };
            return false;
        }
        let n = bytes >> PAGE_SHIFT;
        self.c.heap_sys += bytes;
        (self.policy.grew)(self.c.heap_sys);
        self.c.pages_free += n;
        self.c.pages_released += n;
        scavenged_set(base, n);
        // SAFETY: `s` is fresh; the pages lie in registered arenas.
        unsafe {
            (*s).base.set(base);
            (*s).npages.set(n);
            (*s).set_state(SpanState::Free);
            self.coalesce_insert(s, false);
        }
        true
    }

    /// Registers the arenas of the reservation `[p, p+size)`: all or none. The second-level
    /// tables come first, then the records of all new arenas in one mapping (one VMA, one
    /// failure point), then the arena map entries; if the OS refuses memory nothing is
    /// registered (tables created stay: they are empty and small).
    fn register_arenas(&mut self, p: usize, size: usize) -> bool {
        let mut need: usize = 0;
        let mut a = p;
        while a < p + size {
            if arena::heap_arena_of(a).is_null() {
                // SAFETY: `a` is below 2^48 (checked by the caller); heap lock held.
                match unsafe { arena::ensure_l2(a) } {
                    Some(bytes) => self.c.metadata_sys += bytes,
                    None => return false,
                }
                need += 1;
            }
            a += ARENA_SIZE;
        }
        if need == 0 {
            return true;
        }
        let Some(bytes) = need.checked_mul(HEAP_ARENA_BYTES) else {
            return false;
        };
        // SAFETY: `bytes` is a page multiple.
        let records = unsafe { os::sys_alloc(bytes) };
        if records.is_null() {
            return false;
        }
        self.c.metadata_sys += bytes;
        let mut next = records;
        let mut a = p;
        while a < p + size {
            if arena::heap_arena_of(a).is_null() {
                // SAFETY: `a` is arena-aligned, below 2^48, its L2 table exists; heap lock
                // held; `next` is a zeroed record inside `records`, never freed.
                unsafe {
                    arena::register(a, next.cast::<HeapArena>());
                    next = next.add(HEAP_ARENA_BYTES);
                }
                self.c.arenas += 1;
            }
            a += ARENA_SIZE;
        }
        true
    }

    /// Debug check: bins hold free records with correct boundaries, no two free runs
    /// touch, counters add up.
    pub fn check_invariants(&self) {
        let mut free = 0;
        let mut dirty_flags = 0;
        for b in 0..NBINS {
            assert_eq!(
                self.bins[b].is_empty(),
                self.nonempty[b / 64] & (1 << (b % 64)) == 0
            );
            self.bins[b].for_each(|s| {
                // SAFETY: bin members are valid records.
                let sr = unsafe { &*s };
                assert_eq!(sr.state(), SpanState::Free);
                assert_eq!(bin_of(sr.npages.get()), b);
                assert_eq!(arena::span_of(sr.base.get()), s);
                assert_eq!(arena::span_of(sr.limit() - PAGE_SIZE), s);
                let after = arena::span_of(sr.limit());
                if !after.is_null() {
                    // SAFETY: arena-map entries point to valid records.
                    let ar = unsafe { &*after };
                    if ar.base.get() == sr.limit() {
                        assert_ne!(ar.state(), SpanState::Free, "uncoalesced");
                    }
                }
                free += sr.npages.get();
                dirty_flags += usize::from(sr.in_dirty.get());
            });
        }
        assert_eq!(free, self.c.pages_free);
        self.dirty.for_each(|s| {
            // SAFETY: dirty-list members are valid records.
            let sr = unsafe { &*s };
            assert_eq!(sr.state(), SpanState::Free);
            assert!(sr.in_dirty.get());
        });
        assert_eq!(self.dirty.len(), dirty_flags);
        assert!(self.c.pages_released <= self.c.pages_free);
        assert_eq!(
            (self.c.pages_free + self.c.pages_inuse) << PAGE_SHIFT,
            self.c.heap_sys
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::arena::PAGES_PER_ARENA;
    use crate::sizeclass::SizeClass;

    const LARGE: SpanClass = SpanClass::new(SizeClass::LARGE, true);

    fn private_heap(slot: usize) -> MHeap {
        MHeap::private(slot)
    }

    fn base(s: *mut Span) -> usize {
        // SAFETY: live record from the heap under test.
        unsafe { (*s).base.get() }
    }

    #[test]
    fn freed_neighbours_coalesce_into_one_run() {
        let mut h = private_heap(0);
        let a = h.alloc_span(3, 0, LARGE);
        let b = h.alloc_span(3, 0, LARGE);
        let c = h.alloc_span(3, 0, LARGE);
        assert_eq!(base(b), base(a) + 3 * PAGE_SIZE);
        assert_eq!(base(c), base(b) + 3 * PAGE_SIZE);
        let (start, end) = (base(a), base(c) + 3 * PAGE_SIZE);
        h.check_invariants();
        // SAFETY: in-use spans of this heap, freed once.
        unsafe {
            h.free_span(a);
            h.check_invariants();
            h.free_span(c);
            h.check_invariants();
            // `b` separates two free runs; every page of `b` maps to it.
            for i in 0..3 {
                assert_eq!(arena::span_of(base(b) + i * PAGE_SIZE), b);
            }
            h.free_span(b);
        }
        h.check_invariants();
        let run = arena::span_of(start);
        // SAFETY: arena entries point to live records.
        let (rb, rl, st) = unsafe { ((*run).base.get(), (*run).limit(), (*run).state()) };
        assert_eq!(st, SpanState::Free);
        assert!(rb <= start && rl >= end, "one run covers all three");
        assert_eq!(h.c.pages_inuse, 0);
    }

    #[test]
    fn released_pages_need_no_zeroing_and_dirty_ones_do() {
        let mut h = private_heap(1);
        let a = h.alloc_span(4, 0, LARGE);
        // SAFETY: fresh span of 4 pages.
        unsafe {
            assert!(!(*a).needzero.get(), "fresh from the OS");
            ptr::write_bytes(base(a) as *mut u8, 0xCD, 4 * PAGE_SIZE);
            h.free_span(a);
        }
        let b = h.alloc_span(4, 0, LARGE);
        assert_eq!(base(b), base(a));
        // SAFETY: live span.
        unsafe {
            assert!((*b).needzero.get(), "reused dirty pages");
            h.free_span(b);
        }
        let released = h.release_all();
        assert!(released >= 4 * PAGE_SIZE);
        assert_eq!(h.c.pages_released, h.c.pages_free);
        let c = h.alloc_span(4, 0, LARGE);
        // SAFETY: live span of 4 pages.
        unsafe {
            assert!(!(*c).needzero.get(), "released pages read as zero");
            let p = base(c) as *const u8;
            assert!((0..4 * PAGE_SIZE).all(|i| *p.add(i) == 0));
        }
        h.check_invariants();
    }

    #[test]
    fn aligned_runs_give_back_head_and_tail() {
        let mut h = private_heap(2);
        let _pad = h.alloc_span(1, 0, LARGE);
        let a = h.alloc_span(5, 1 << 20, LARGE);
        assert_eq!(base(a) % (1 << 20), 0);
        // SAFETY: live record.
        assert_eq!(unsafe { (*a).npages.get() }, 5);
        assert_eq!(
            h.c.pages_inuse, 6,
            "nothing beyond the block itself stays in use"
        );
        h.check_invariants();
    }

    #[test]
    fn large_spans_shrink_and_grow_in_place() {
        let mut h = private_heap(3);
        let a = h.alloc_span(10, 0, LARGE);
        // SAFETY: live in-use large span.
        unsafe {
            h.shrink_span(a, 4);
            assert_eq!((*a).npages.get(), 4);
            h.check_invariants();
            assert!(h.try_extend_span(a, 12));
            assert_eq!((*a).npages.get(), 12);
            for i in 0..12 {
                assert_eq!(arena::span_of(base(a) + i * PAGE_SIZE), a);
            }
            h.check_invariants();
            let blocker = h.alloc_span(1, 0, LARGE);
            assert_eq!(base(blocker), base(a) + 12 * PAGE_SIZE);
            assert!(!h.try_extend_span(a, 13));
        }
        h.check_invariants();
    }

    /// The arena-map entries of an in-use span that maps only its ends: its first and last
    /// pages name it, the pages between are null, and [`arena::span_containing`] finds it
    /// from every page.
    fn assert_ends_mapped(s: *mut Span) {
        // SAFETY: a live record of the heap under test.
        let n = unsafe { (*s).npages.get() };
        for i in 0..n {
            let a = base(s) + i * PAGE_SIZE;
            let want = if i == 0 || i == n - 1 { s } else { ptr::null_mut() };
            assert_eq!(arena::span_of(a), want, "page {i} of {n}");
            assert_eq!(arena::span_containing(a + 8), s, "page {i} of {n}");
        }
    }

    #[test]
    fn end_mapped_spans_keep_two_entries_through_shrink_extend_split_and_free() {
        let mut h = private_heap(5);
        let spc = SpanClass::malloc(SizeClass::LARGE);
        let a = h.alloc_span_ends_only(10, 0, spc);
        let b = h.alloc_span_ends_only(1, 0, spc);
        let c = h.alloc_span_ends_only(300, 1 << 20, spc);
        for s in [a, b, c] {
            assert_ends_mapped(s);
        }
        h.check_invariants();
        // SAFETY: live in-use large spans of this heap, each freed once.
        unsafe {
            h.shrink_span(a, 4);
            assert_ends_mapped(a);
            h.check_invariants();
            h.free_span(b);
            assert!(h.try_extend_span(a, 5), "into the rest of its old pages");
            assert_ends_mapped(a);
            assert!(h.try_extend_span(a, 11), "over the freed one-page block");
            assert_ends_mapped(a);
            h.check_invariants();
            let d = h.alloc_span_ends_only(1, 0, spc);
            assert!(h.try_extend_span(d, 2), "a one-page span grows");
            assert_ends_mapped(d);
            assert!(h.split_off_tail(c, 100));
            assert_ends_mapped(c);
            let t = arena::span_of(base(c) + 200 * PAGE_SIZE);
            assert_eq!(base(t), base(c) + 200 * PAGE_SIZE);
            assert_ends_mapped(t);
            h.check_invariants();
            for s in [a, c, d, t] {
                h.free_span(s);
            }
        }
        h.check_invariants();
        assert_eq!(h.c.pages_inuse, 0);
        // Inside a free run, which maps its ends only, no in-use span is found.
        assert!(arena::span_containing(base(a) + PAGE_SIZE).is_null());
    }

    #[test]
    fn heap_grows_across_arenas() {
        let mut h = private_heap(4);
        let a = h.alloc_span(PAGES_PER_ARENA + 10, 0, LARGE);
        assert!(!a.is_null());
        assert!(h.c.arenas >= 2);
        let b = h.alloc_span(3, 0, LARGE);
        // SAFETY: live spans of this heap.
        unsafe {
            *((base(a) + (PAGES_PER_ARENA + 9) * PAGE_SIZE) as *mut u8) = 1;
            h.free_span(a);
            h.free_span(b);
        }
        h.check_invariants();
        assert_eq!(h.c.pages_inuse, 0);
    }

    #[test]
    fn bins_are_monotonic_and_fit() {
        let mut last = 0;
        for n in 1..if cfg!(miri) { 3_000 } else { 100_000usize } {
            let b = bin_of(n);
            assert!(b >= last && b < NBINS);
            last = b;
            // every run in bin_fit(n) or above has at least n pages
            let f = bin_fit(n);
            assert!(f >= b);
            if f > b {
                // the smallest run in bin f is larger than n
                let mut m = n;
                while bin_of(m) < f {
                    m += 1;
                }
                assert!(m >= n);
            } else {
                assert!(n < EXACT_BINS || n.is_power_of_two() || bin_of(n - 1) < b);
            }
        }
        assert!(bin_of((1 << 35) - 1) < NBINS);
    }
}

/// Writes an empty span into the record storage at `p` without a plain write to its
/// `xfree` word, which it resets atomically instead. A remote free may still touch that
/// word of a freed record whose span it freed into (`RemoteFrees`: it reads the flag after
/// its bit, by when the owner may have taken the bit and freed the span), so a plain write
/// there would race with it; every other word of a freed record is the heap's alone.
///
/// # Safety
/// `p` is valid for writes of a `Span`, aligned, and referenced by no list or arena entry.
unsafe fn init_record(p: *mut Span) {
    const XFREE: usize = core::mem::offset_of!(Span, xfree);
    const XFREE_END: usize = XFREE + core::mem::size_of::<crate::remote::RemoteFrees>();
    let empty = core::mem::ManuallyDrop::new(Span::empty());
    let src = (&*empty as *const Span).cast::<u8>();
    let dst = p.cast::<u8>();
    // SAFETY: both ranges lie inside a `Span` (`XFREE_END <= size_of::<Span>()`), `src` a
    // local one and `dst` the storage at `p` (# Safety); they do not overlap.
    unsafe {
        ptr::copy_nonoverlapping(src, dst, XFREE);
        ptr::copy_nonoverlapping(
            src.add(XFREE_END),
            dst.add(XFREE_END),
            core::mem::size_of::<Span>() - XFREE_END,
        );
        // The `xfree` word: atomically, as the stray remote free accesses it.
        (*p).xfree.reset();
    }
}
