//! Heap arenas and the two-level arena map (Go's `heapArena` and `mheap.arenas`).
//!
//! The heap's address space comes in 64 MiB arenas, each 64 MiB-aligned. Each arena has a
//! [`HeapArena`] record, kept off-heap, holding the page -> span map, the per-page bitmaps
//! (scavenged, start of an in-use span) and the storage for the spans' allocation, mark and
//! remote-free bitmaps. The arena map `ARENAS[L1][L2]` covers the 48-bit address space and
//! answers "which span owns this address?" with three loads and no lock: `free`, usable
//! size, pointer validation and the garbage collector all go through [`span_of`]. It
//! answers for every page of a small span or a collector object, and for the first and
//! last pages of a free run or a `malloc` large block (invariant 1); [`span_containing`]
//! finds those from their other pages too, for diagnostics.
//!
//! Entries are published with release stores under the heap lock and never removed
//! (arenas are never unmapped), so readers need no lock.
//!
//! Layer: the address map (the crate root's module map, `lib.rs`).

use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE};
use crate::span::Span;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use core::cell::Cell;
use core::ptr;

/// log2 of the arena size.
pub const ARENA_SHIFT: usize = 26;
/// Bytes per arena: 64 MiB.
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// Pages per arena: 8192.
pub const PAGES_PER_ARENA: usize = ARENA_SIZE / PAGE_SIZE;
/// Bits of user address space covered by the map.
pub const ADDR_BITS: usize = 48;
/// Bits of the first-level index.
pub const L1_BITS: usize = 6;
/// Bits of the second-level index.
pub const L2_BITS: usize = ADDR_BITS - ARENA_SHIFT - L1_BITS;
const L1_SIZE: usize = 1 << L1_BITS;
const L2_SIZE: usize = 1 << L2_BITS;

/// The most objects one page can hold (8-byte objects), so the bitmap words one page of a
/// span may need.
pub const MAX_OBJS_PER_PAGE: usize = PAGE_SIZE / 8;
/// Bitmap words reserved per page.
pub const BITMAP_WORDS_PER_PAGE: usize = MAX_OBJS_PER_PAGE / 64;
/// Small spans are at most this many pages; a span starting near the end of an arena may
/// run into the next (contiguous) one, so the bitmaps have this much slack.
const BITMAP_SLACK_PAGES: usize = 16;
const BITMAP_WORDS: usize = (PAGES_PER_ARENA + BITMAP_SLACK_PAGES) * BITMAP_WORDS_PER_PAGE;
const PAGE_WORDS: usize = PAGES_PER_ARENA / 64;

/// Metadata of one 64 MiB arena.
///
/// Invariants (heap lock held for writes unless stated):
/// 1. `spans[i]` for every page of an in-use span points to that span; for a free span,
///    and for an in-use span with `ends_only` set (`malloc`'s large blocks), only its
///    first and last pages point to it; other entries are null.
/// 2. bit `i` of `scavenged` is set iff page `i` is free and its memory was returned to
///    the OS (or never touched): it reads as zero.
/// 3. bit `i` of `page_in_use` is set iff an in-use span starts at page `i`.
/// 4. `alloc_bits[BITMAP_WORDS_PER_PAGE * i ..]` is the allocation bitmap of the span
///    starting at page `i` (written only by the span's owner), zero while the span is
///    free; `xfree_bits` likewise for remote frees (set by any thread, taken by the owner:
///    [`crate::remote::RemoteFrees`]), zero while the span is free. `mark_bits` likewise
///    for the collector's spans, cleared when the collector takes a span
///    ([`crate::gcapi::alloc_small_span`], [`crate::gcapi::alloc_large_span`]): nothing
///    reads a `malloc` span's, so a program without the collector never touches them.
#[repr(C)]
pub struct HeapArena {
    /// Page -> span map.
    pub spans: [AtomicPtr<Span>; PAGES_PER_ARENA],
    /// Pages that read as zero because they were released or never used.
    pub scavenged: [u64; PAGE_WORDS],
    /// Start pages of in-use spans (for the collector's span walk).
    pub page_in_use: [AtomicUsize; PAGE_WORDS],
    /// Allocation bitmaps of the spans starting in this arena.
    pub alloc_bits: [u64; BITMAP_WORDS],
    /// Mark bitmaps of the spans starting in this arena.
    pub mark_bits: [u64; BITMAP_WORDS],
    /// Remote-free bitmaps of the spans starting in this arena. (A span's slot is 128
    /// bytes per page, two cache lines, so spans never share a line of it.)
    pub xfree_bits: [AtomicU64; BITMAP_WORDS],
}

/// Bytes of OS memory one [`HeapArena`] record takes.
pub const HEAP_ARENA_BYTES: usize = core::mem::size_of::<HeapArena>().next_multiple_of(4096);

type L2 = [AtomicPtr<HeapArena>; L2_SIZE];

#[allow(clippy::declare_interior_mutable_const)]
const NULL_L2: AtomicPtr<L2> = AtomicPtr::new(ptr::null_mut());

#[cfg(not(loom))]
static ARENAS: [AtomicPtr<L2>; L1_SIZE] = [NULL_L2; L1_SIZE];

#[allow(clippy::declare_interior_mutable_const)]
const L2_NONE: AtomicUsize = AtomicUsize::new(L2_SIZE);
#[allow(clippy::declare_interior_mutable_const)]
const L2_ZERO: AtomicUsize = AtomicUsize::new(0);

/// Per first-level entry, the lowest second-level index registered and one past the
/// highest ([`L2_SIZE`] and 0 while none is): [`for_each_arena`] scans only that range of
/// the table, not its 64K entries. Widened under the heap lock after the entry is stored.
#[cfg(not(loom))]
static L2_FIRST: [AtomicUsize; L1_SIZE] = [L2_NONE; L1_SIZE];
#[cfg(not(loom))]
static L2_END: [AtomicUsize; L1_SIZE] = [L2_ZERO; L1_SIZE];

/// The arena record for `addr`, or null if `addr` is not in a heap arena.
#[cfg(not(loom))]
#[inline(always)]
pub fn heap_arena_of(addr: usize) -> *mut HeapArena {
    let i1 = addr >> (ARENA_SHIFT + L2_BITS);
    if i1 >= L1_SIZE {
        return ptr::null_mut();
    }
    let l2 = ARENAS[i1].load(Ordering::Acquire);
    if l2.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a non-null L2 pointer refers to a live, never-freed L2 table.
    unsafe { (*l2)[(addr >> ARENA_SHIFT) & (L2_SIZE - 1)].load(Ordering::Acquire) }
}

/// A one-entry cache of the arena map: the last arena a thread looked up, by its index
/// (`addr >> ARENA_SHIFT`). An arena's record never changes once registered and is never
/// removed, so a hit is always right; [`heap_arena_of`]'s two dependent loads and three
/// tests become one compare with a value the thread owns. C's `free` keeps one in its
/// cache ([`crate::mcache::MCache`]): a heap of one arena (64 MiB) always hits.
pub struct ArenaHint {
    index: Cell<usize>,
    arena: Cell<*mut HeapArena>,
}

impl ArenaHint {
    /// A hint that matches no address (no arena index reaches `usize::MAX`).
    pub const fn new() -> Self {
        ArenaHint {
            index: Cell::new(usize::MAX),
            arena: Cell::new(ptr::null_mut()),
        }
    }

    /// The arena record of `addr` if it is the hinted arena.
    #[inline(always)]
    pub fn get(&self, addr: usize) -> Option<*mut HeapArena> {
        (addr >> ARENA_SHIFT == self.index.get()).then(|| self.arena.get())
    }

    /// Hints the arena of `addr`, whose record is `ha` (non-null, from [`heap_arena_of`]).
    #[inline]
    pub fn set(&self, addr: usize, ha: *mut HeapArena) {
        crate::check!(!ha.is_null(), "arena hint set to a null arena for", addr);
        self.index.set(addr >> ARENA_SHIFT);
        self.arena.set(ha);
    }
}

impl Default for ArenaHint {
    fn default() -> Self {
        Self::new()
    }
}

/// Page index of `addr` inside its arena.
#[inline(always)]
pub const fn page_index(addr: usize) -> usize {
    (addr >> PAGE_SHIFT) & (PAGES_PER_ARENA - 1)
}

/// The span whose pages contain `addr`, or null. Lock-free, O(1).
///
/// The result may be a free span or a stale record for an address that is not allocated:
/// callers validate it (state, bounds) before trusting it.
#[cfg(not(loom))]
#[inline(always)]
pub fn span_of(addr: usize) -> *mut Span {
    let ha = heap_arena_of(addr);
    if ha.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `ha` is the live record of the arena holding `addr`.
    unsafe { span_in(ha, addr) }
}

/// [`span_of`]'s last step: the span entry of the page holding `addr`, in the arena whose
/// record `ha` is (found through the map, or through the C free's [`ArenaHint`]).
///
/// # Safety
/// `ha` is a live arena record (they are never freed) and `addr` lies in its arena.
#[cfg(not(loom))]
#[inline(always)]
pub unsafe fn span_in(ha: *const HeapArena, addr: usize) -> *mut Span {
    // SAFETY: `ha` is a live arena record and `addr` lies in its arena (# Safety).
    unsafe { (*ha).spans[page_index(addr)].load(Ordering::Acquire) }
}

/// [`span_of`], and for an address whose page has no entry, the in-use span that holds it
/// if there is one (the interior of a `malloc` large block, which maps its end pages only:
/// invariant 1): the nearest in-use span starting below `addr`, found through the
/// `page_in_use` bits (64 pages a word, arena by arena downwards), if it reaches `addr`.
/// Null otherwise (the interior of a free run, an address outside the heap). For
/// diagnostics and debugging tools, not hot paths. Lock-free; as for [`span_of`], the
/// caller validates the result (state, bounds).
#[cfg(not(loom))]
pub fn span_containing(addr: usize) -> *mut Span {
    let s = span_of(addr);
    if !s.is_null() {
        return s;
    }
    let mut a = addr;
    loop {
        let ha = heap_arena_of(a);
        if ha.is_null() {
            return ptr::null_mut();
        }
        let page = page_index(a);
        let mut w = page / 64;
        // The bits of pages `page` and below in the first word, every bit in the others.
        let mut mask = usize::MAX >> (63 - page % 64);
        loop {
            // SAFETY: `ha` is a live arena record (never freed) and `w < PAGE_WORDS`.
            let bits = unsafe { (*ha).page_in_use[w].load(Ordering::Relaxed) } & mask;
            if bits != 0 {
                let start = w * 64 + 63 - bits.leading_zeros() as usize;
                // SAFETY: as above; `start < PAGES_PER_ARENA`.
                let s = unsafe { (*ha).spans[start].load(Ordering::Acquire) };
                if s.is_null() {
                    return s;
                }
                // SAFETY: arena-map entries point to live span records (never freed).
                let (base, limit) = unsafe { ((*s).base.get(), (*s).limit()) };
                return if base <= addr && addr < limit {
                    s
                } else {
                    ptr::null_mut()
                };
            }
            if w == 0 {
                break;
            }
            w -= 1;
            mask = usize::MAX;
        }
        // On into the arena below: a span may run on from it into this one.
        let arena_base = a & !(ARENA_SIZE - 1);
        if arena_base == 0 {
            return ptr::null_mut();
        }
        a = arena_base - 1;
    }
}

/// Sets the page -> span entry for the page holding `addr`.
///
/// # Safety
/// `addr` lies in a registered arena; the heap lock is held.
#[cfg(not(loom))]
#[inline]
pub unsafe fn set_span(addr: usize, s: *mut Span) {
    let ha = heap_arena_of(addr);
    crate::check!(!ha.is_null(), "set_span outside the heap", addr);
    // SAFETY: the caller guarantees the arena is registered.
    unsafe { (*ha).spans[page_index(addr)].store(s, Ordering::Release) }
}

/// [`set_span`] for each of the `npages` pages from `base`: one map lookup per arena, then
/// a run of stores (a large span's pages are most of the page heap's work otherwise).
///
/// # Safety
/// The pages lie in registered arenas; the heap lock is held.
#[cfg(not(loom))]
pub unsafe fn set_spans(base: usize, npages: usize, s: *mut Span) {
    let end = base + (npages << PAGE_SHIFT);
    let mut addr = base;
    while addr < end {
        let ha = heap_arena_of(addr);
        crate::check!(!ha.is_null(), "set_span outside the heap", addr);
        let first = page_index(addr);
        let last = (first + ((end - addr) >> PAGE_SHIFT)).min(PAGES_PER_ARENA);
        // SAFETY: the caller guarantees the arena is registered; `first..last` lies in
        // its page table.
        for e in unsafe { &(&(*ha).spans)[first..last] } {
            e.store(s, Ordering::Release);
        }
        addr += (last - first) << PAGE_SHIFT;
    }
}

/// Makes sure the second-level table covering `base` exists. Returns the bytes of OS
/// memory a new table took (0 if it existed), or `None` if the OS refused memory for it.
///
/// # Safety
/// `base` is below 2^48; the heap lock is held.
#[cfg(not(loom))]
pub unsafe fn ensure_l2(base: usize) -> Option<usize> {
    let i1 = base >> (ARENA_SHIFT + L2_BITS);
    if !ARENAS[i1].load(Ordering::Acquire).is_null() {
        return Some(0);
    }
    let bytes = core::mem::size_of::<L2>();
    // SAFETY: `bytes` is a multiple of the page size; zeroed memory is a valid table of
    // null atomic pointers.
    let l2: *mut L2 = unsafe { crate::os::sys_alloc(bytes) }.cast();
    if l2.is_null() {
        return None;
    }
    ARENAS[i1].store(l2, Ordering::Release);
    Some(bytes)
}

/// Registers `ha` as the record of the arena at `base`, creating the L2 table if needed.
/// Returns the bytes a new L2 table took, or `None` if the OS refused memory for it.
///
/// # Safety
/// `base` is arena-aligned and below 2^48; the heap lock is held; `ha` is a zeroed
/// `HeapArena` that lives forever.
#[cfg(not(loom))]
pub unsafe fn register(base: usize, ha: *mut HeapArena) -> Option<usize> {
    // SAFETY: `base` is arena-aligned and below 2^48, and the heap lock is held (# Safety).
    let new_sys = unsafe { ensure_l2(base) }?;
    let (i1, i2) = (
        base >> (ARENA_SHIFT + L2_BITS),
        (base >> ARENA_SHIFT) & (L2_SIZE - 1),
    );
    let l2 = ARENAS[i1].load(Ordering::Acquire);
    // SAFETY: `l2` is a live table (ensured above).
    unsafe { (*l2)[i2].store(ha, Ordering::Release) };
    // The heap lock is held: no other thread writes the bounds.
    if i2 < L2_FIRST[i1].load(Ordering::Relaxed) {
        L2_FIRST[i1].store(i2, Ordering::Release);
    }
    if i2 >= L2_END[i1].load(Ordering::Relaxed) {
        L2_END[i1].store(i2 + 1, Ordering::Release);
    }
    Some(new_sys)
}

/// Calls `f(base, record)` for every registered arena, in ascending address order (for
/// whole-heap checks and the garbage collector's span walk). Scans the first-level table
/// and, of every second-level table that exists, the range between the lowest and the
/// highest arena registered in it (up to 64K entries): not for hot paths. Arenas
/// registered meanwhile may or may not be seen.
#[cfg(not(loom))]
pub fn for_each_arena(mut f: impl FnMut(usize, *mut HeapArena)) {
    for (i1, l1) in ARENAS.iter().enumerate() {
        let l2 = l1.load(Ordering::Acquire);
        if l2.is_null() {
            continue;
        }
        // Each bound is stored (release) after the entry that moved it: a walk that reads
        // the new bound sees that entry too; one that reads an older bound may miss an
        // arena registered meanwhile, as said above.
        let first = L2_FIRST[i1].load(Ordering::Acquire);
        let end = L2_END[i1].load(Ordering::Acquire);
        // SAFETY: a non-null L2 pointer refers to a live, never-freed L2 table.
        let table = unsafe { &*l2 };
        for (i2, e) in table.iter().enumerate().take(end).skip(first) {
            let ha = e.load(Ordering::Acquire);
            if !ha.is_null() {
                f(((i1 << L2_BITS) | i2) << ARENA_SHIFT, ha);
            }
        }
    }
}

/// Pointer to the `i`-th page's bitmap slot in `bits` (alloc or mark).
#[inline]
pub fn bitmap_slot(bits: *mut u64, page: usize) -> *mut u64 {
    bits.wrapping_add(page * BITMAP_WORDS_PER_PAGE)
}

const _: () = assert!(L1_BITS + L2_BITS + ARENA_SHIFT == ADDR_BITS);
const _: () = assert!(PAGES_PER_ARENA == 8192);
const _: () = assert!(crate::sizeclasses::MAX_SMALL_SIZE / PAGE_SIZE <= BITMAP_SLACK_PAGES);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_arena_hint_matches_its_arena_only() {
        let h = ArenaHint::new();
        for a in [0, 1 << 30, usize::MAX, (1 << 48) - 1] {
            assert_eq!(h.get(a), None, "{a:#x}");
        }
        let fake = 0x1000 as *mut HeapArena; // never dereferenced
        let base = 5 << ARENA_SHIFT;
        h.set(base + 123, fake);
        assert_eq!(h.get(base), Some(fake));
        assert_eq!(h.get(base + ARENA_SIZE - 1), Some(fake));
        assert_eq!(h.get(base - 1), None);
        assert_eq!(h.get(base + ARENA_SIZE), None);
    }

    #[test]
    fn unmapped_addresses_have_no_span() {
        assert!(span_of(0).is_null());
        assert!(span_of(0x1000).is_null());
        assert!(span_of(usize::MAX).is_null());
        assert!(span_of(1 << 47).is_null());
        assert!(heap_arena_of(&ARENAS as *const _ as usize).is_null());
    }

    #[test]
    fn page_index_wraps_at_arena() {
        assert_eq!(page_index(ARENA_SIZE), 0);
        assert_eq!(page_index(ARENA_SIZE - 1), PAGES_PER_ARENA - 1);
        assert_eq!(page_index(3 * PAGE_SIZE + 5), 3);
    }
}
