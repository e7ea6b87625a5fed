//! `mspan`: a run of pages, and for small objects the bitmap allocator inside it
//! (Go's `mheap.go` `mspan`, `mbitmap.go`, `malloc.go` `nextFreeFast`).
//!
//! A small-object span is cut into `nelems` slots of `elemsize` bytes. Bit `i` of its
//! allocation bitmap is set when slot `i` is allocated. The owner allocates through a
//! 64-slot *window*: `window_bits` holds the window starting at slot `window` as the
//! bitmap would (Go's `allocCache` complemented), and a free slot is found with
//! count-trailing-zeros ([`Span::next_free_fast`]). While a window is loaded its bitmap
//! word is stale; [`Span::commit_window`] writes it back from `window_bits`, which is
//! exact because every slot of the window that is not free there is allocated.
//!
//! Who may touch what:
//! * the *owner* (the mcache that allocates from the span, or the holder of the span's
//!   mcentral lock while the span is unowned) reads and writes the window, the bitmap,
//!   and `needzero`, without atomics;
//! * any thread sets bits of the remote-free bitmap through `xfree` (remote frees) and
//!   reads the immutable fields (`base`, `elemsize`, `div_magic`, `nelems`, `spanclass`,
//!   `xfree_bits`) of an in-use span;
//! * the page heap (under its lock) changes `base`, `npages` and `state`, and links free
//!   spans through `links` (its size bins) and `dirty` (free runs with pages not yet
//!   released to the OS).
//!
//! Layer: spans (the crate root's module map, `lib.rs`).

use crate::arena::{self, BITMAP_WORDS_PER_PAGE};
use crate::list::{Link, Links, List};
use crate::mcache::MCache;
use crate::remote::{Linked, RemoteFrees};
use crate::report::{double_free, fatal};
use crate::sizeclass::{SizeClass, SpanClass, PAGE_SHIFT};
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};
use core::cell::Cell;
use core::ptr;

/// Life-cycle state of a span record.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpanState {
    /// Record not describing memory (in the record allocator's free list).
    Dead = 0,
    /// Free pages in the page heap.
    Free = 1,
    /// Pages handed out: a small-object span or one large object.
    InUse = 2,
}

// The fields are the heap's alone: crate-visible, and public only under the
// `test-internals` feature, for the crate's own integration tests (as Go's
// `export_test.go`). A macro, because visibility cannot be chosen by `cfg` on each field.
// The collector sees `gcapi::Span`, a transparent wrapper with read-only accessors.
macro_rules! span_struct {
    ($vis:vis) => {
        /// A run of pages.
        ///
        /// Invariants of an in-use small span (checked by [`Span::check_invariants`]):
        /// 1. `nelems * elemsize <= npages * PAGE_SIZE`, `div_magic == class.div_magic()`.
        /// 2. `window % 64 == 0`, `window < nelems`, and the window's free slots
        ///    (`window_free()`, the complement of `window_bits`) have no bit at or above
        ///    `nelems - window`; or, in a span of more than 64 slots its cache retains,
        ///    `window == NO_WINDOW`, `window_free() == 0` and `win_bytes == 0` (no window:
        ///    every free goes to the bitmap). A retained single-window span keeps window 0, its
        ///    free slots in its window (`Span::retain`).
        /// 3. A slot outside the loaded window is allocated iff its bitmap bit is set; a slot
        ///    of the window is allocated iff its `window_bits` bit is set, and its bitmap bit is as
        ///    the window was loaded, until [`Span::commit_window`] writes the word back. The
        ///    count of allocated slots is the bitmap's ([`Span::allocated`]), not stored, so
        ///    that a free writes one word and no count.
        /// 4. No bit at or above `nelems` is set in the bitmap.
        /// 5. `owner` is non-null iff an mcache holds the span in `alloc[class]` or in its
        ///    retained list of that class (`class`: the size class of `spanclass`).
        /// 6. `needzero == false` implies every free slot reads as zero.
        /// 7. `window_base == base + window * elemsize`,
        ///    `win_bytes == min(64, nelems - window) * elemsize`, `objs_bytes == nelems * elemsize`,
        ///    `window_word == window / 64` (`NO_WINDOW_WORD` with no window).
        ///
        /// Layout: three cache lines by who touches them. The hot line holds what the owner's
        /// malloc and free fast paths read and write; the warm line, what a refill reads
        /// besides (`nelems`, the remote-free word) and what moving a span between the lists of
        /// a cache, an mcentral or the page heap writes (`links`, `in_partial`), so that a
        /// refill touches two lines of each record it looks at; the cold line, what only the
        /// page heap, the collector and the profiler use.
        #[repr(C, align(64))]
        pub struct Span {
            // --- hot: the owner's malloc/free fast paths (first cache line) ---
            /// The current window's slots as the allocation bitmap has them: bit i set iff slot
            /// `window + i` is taken (allocated, lent to the heap profile's proxy, or past the
            /// span's end). Go's `allocCache` complemented, so that a free tests and flips the
            /// same polarity here as in the bitmap; a slot is taken by setting its lowest
            /// clear bit (`c | (c + 1)`, found with count-trailing-zeros of `c + 1`). Read and
            /// written as the window's *free* slots through [`Span::window_free`] and
            /// [`Span::set_window_free`], except on the fast paths.
            window_bits: Cell<u64>,
            /// Address of slot `window`: `base + window * elemsize`, so that taking a slot is one
            /// multiply-add.
            $vis window_base: Cell<usize>,
            /// Address of the first page.
            $vis base: Cell<usize>,
            /// The mcache allocating from this span, or null.
            $vis owner: AtomicPtr<MCache>,
            /// Allocation bitmap (`ceil(nelems / 64)` words in the arena's bitmap storage). On
            /// the hot line: a local free outside the window clears its bit there, and the free
            /// picks the word without a branch, so it reads this pointer every time.
            $vis alloc_bits: Cell<*mut u64>,
            /// First slot of the current window (a multiple of 64): Go's `freeindex`, which Go
            /// also keeps at the base of the `allocCache` word it loaded. Slots below it that are
            /// free again (local frees) are found when the window wraps around.
            /// Read it through [`Span::window`]; 16 bits, because no span has more than
            /// [`MAX_OBJS_PER_SPAN`] (1024) slots, so that `alloc_bits` fits on the hot line.
            window: Cell<u16>,
            /// Free slots may hold old data: `alloc_zeroed` must clear them.
            $vis needzero: Cell<bool>,
            /// `window / 64`, the window's bitmap word, or [`NO_WINDOW_WORD`]: a free computes
            /// its slot's word for the bitmap anyway, so its window test is one compare of a
            /// byte ([`Span::in_window`]). Set with `window` by [`Span::set_window`] and
            /// [`Span::unload_window`].
            window_word: Cell<u8>,
            /// Bytes per slot (small spans); 0 for large spans.
            $vis elemsize: Cell<u32>,
            /// `obj_index` multiplier of the size class.
            $vis div_magic: Cell<u32>,
            /// `window`'s slots times `elemsize` (0 when no window is loaded in a small span, and
            /// for large spans): `p` is in the window iff `p - window_base < win_bytes`, which is
            /// the layout-aware free's whole containment test.
            $vis win_bytes: Cell<u32>,
            /// `nelems * elemsize` for small spans, 0 for large ones: an address `p` is a slot
            /// candidate iff `p - base < objs_bytes` (one unsigned compare).
            $vis objs_bytes: Cell<u32>,
            _pad_count: u32,
            // --- warm: refills, list moves and remote frees ---
            /// Objects freed by threads that do not own the span: the flags of their bits in
            /// `xfree_bits` (`RemoteFrees`).
            $vis xfree: RemoteFrees,
            /// Free records only: in the page heap's list of free runs that may hold pages not
            /// yet released to the OS (the scavenger's work list). A free record receives no
            /// remote frees, so sharing `xfree`'s line costs nothing.
            $vis in_dirty: Cell<bool>,
            /// In-use spans: only the first and last pages are in the arena map, the other
            /// entries are null (arena invariant 1), as for a free run. Set for `malloc`'s
            /// large blocks, which nothing looks up by an interior address on a hot path
            /// ([`crate::arena::span_containing`] finds them for diagnostics), so that
            /// allocating and freeing one writes two entries, not one per page.
            $vis ends_only: Cell<bool>,
            /// `SpanState` as a byte. (Read by every remote free before its push onto
            /// `xfree`, and never written while the span is in use.)
            $vis state: AtomicU8,
            /// Span class (size class 0 for large objects): noscan for every `malloc` span,
            /// either variant for the collector's. Immutable while the span is in use; the
            /// remote free reads it beside `state`.
            $vis spanclass: Cell<SpanClass>,
            /// Number of slots (1 for a large span).
            $vis nelems: Cell<u32>,
            /// Links in a page heap bin (free records), an mcentral's partial list or a cache's
            /// retained list (in-use records).
            $vis links: Links<Span>,
            /// In-use small spans: the cache that last gave the span up to its mcentral (null if
            /// none has yet). A free by that cache's thread into the span, parked, takes it back
            /// (`crate::mcache::adopt_for_free`) instead of making a remote free. Read by the
            /// freeing thread with no lock: a hint, which the mcentral's lock then settles.
            $vis last_owner: AtomicPtr<MCache>,
            /// The span's remote-free bitmap (in its arena's `xfree_bits`), set with the other
            /// bitmaps when the span is carved; read by every remote free beside `state`.
            $vis xfree_bits: Cell<*const AtomicU64>,
            /// Free records only: when the run last became dirty, on the scavenger's coarse clock
            /// (`crate::scavenge::coarse_now`); runs younger than `crate::scavenge::MIN_AGE_NS`
            /// are left alone by the background scavenger.
            $vis dirty_since: Cell<usize>,
            /// In its mcentral's partial list (guarded by that list's lock).
            $vis in_partial: Cell<bool>,
            _pad_remote: [u8; 7],
            // --- cold: the page heap's, the collector's and the profiler's ---
            /// Pages in the span.
            $vis npages: Cell<usize>,
            /// Mark bitmap for the collector.
            $vis mark_bits: Cell<*mut u64>,
            /// Links in the page heap's dirty list (free records only).
            $vis dirty: Links<Span>,
            /// Link in an mcentral's pending stack.
            $vis pending_next: AtomicPtr<Span>,
            /// With `prof_bucket` set: the sampled block's requested bytes, which its free
            /// subtracts from the bucket's live bytes (`profile::freed`). Meaningless
            /// otherwise.
            $vis prof_size: Cell<usize>,
            /// The collector's sweep generation of this span (Go's `mspan.sweepgen`).
            $vis sweepgen: AtomicU32,
            /// A large span holding one sampled block (feature `profile`): its bucket's number
            /// plus one (`profile::bucket`), so that its free is counted; 0 for every other span.
            /// Set after the span is allocated, cleared by its free (`profile::freed`) before the
            /// record goes back to the page heap, so no span is ever initialised with it set
            /// (and `init_in_use` does not touch it).
            $vis prof_bucket: Cell<u32>,
            /// Heap bins index while free.
            $vis bin: Cell<u16>,
            /// 0 for a malloc span; otherwise the garbage collector's object kind (see
            /// [`crate::gcapi`]). Written only by `gcapi` while the span is the collector's.
            $vis gc: AtomicU8,
            _pad_cold: [u8; 5],
        }
    };
}
#[cfg(feature = "test-internals")]
span_struct!(pub);
#[cfg(not(feature = "test-internals"))]
span_struct!(pub(crate));

/// Bytes of one span record.
pub const SPAN_RECORD_BYTES: usize = core::mem::size_of::<Span>();
const _: () = assert!(SPAN_RECORD_BYTES == 192);
const _: () = assert!(core::mem::offset_of!(Span, objs_bytes) == 56);
const _: () = assert!(core::mem::offset_of!(Span, xfree) == 64);
const _: () = assert!(core::mem::offset_of!(Span, npages) == 128);

/// The lists a span is in through [`Span::links`]: a page heap bin, an mcentral's partial
/// list, or a thread cache's retained list; one at a time (they hold spans in different
/// states or owned by different parties).
pub struct InList;
impl Link for InList {
    type Node = Span;
    fn links(s: &Span) -> &Links<Span> {
        &s.links
    }
}

/// The page heap's dirty list, through [`Span::dirty`]: a free span is in it and in a bin.
pub struct InDirty;
impl Link for InDirty {
    type Node = Span;
    fn links(s: &Span) -> &Links<Span> {
        &s.dirty
    }
}

/// A list of spans through [`Span::links`].
pub type SpanList = List<InList>;

impl Linked for Span {
    fn link(&self) -> &AtomicPtr<Span> {
        &self.pending_next
    }
}

/// [`Span::window`] of a span with no window loaded (a retained span): a multiple of 64
/// that no slot index reaches, so [`Span::free_local`] clears bitmap bits for every slot.
pub const NO_WINDOW: u32 = u16::MAX as u32 & !63;
/// `Span::window_word` of a span with no window loaded: a byte no slot's bitmap word
/// reaches (a span's slots fill at most 16 words).
pub const NO_WINDOW_WORD: u8 = u8::MAX;
/// The most slots a span of any size class holds (1024: one page of 8-byte slots).
pub const MAX_OBJS_PER_SPAN: u32 = {
    use crate::sizeclasses::NUM_SIZE_CLASSES;
    let (mut most, mut c) = (0, 1);
    while c < NUM_SIZE_CLASSES {
        let n = crate::sizeclass::SizeClass(c as u8).nelems();
        if n > most {
            most = n;
        }
        c += 1;
    }
    most as u32
};
const _: () = assert!(MAX_OBJS_PER_SPAN <= NO_WINDOW);
// Every slot's bitmap word is below `NO_WINDOW_WORD`, and fits the byte `in_window` compares.
const _: () = assert!(MAX_OBJS_PER_SPAN.div_ceil(64) <= NO_WINDOW_WORD as u32);

/// The lowest `n` set bits of `bits` (all of them if it has no more than `n`): the free
/// slots of a window that a loan (`Span::lend`) or a limited collector window
/// (`gcapi::OwnedSpan::hold_back`) keeps, the lowest first as the fast path takes them.
pub(crate) fn lowest_bits(bits: u64, n: u32) -> u64 {
    if crate::cpu::popcount(bits) <= n {
        return bits;
    }
    let mut keep = 0u64;
    let mut rest = bits;
    for _ in 0..n {
        let low = rest & rest.wrapping_neg();
        keep |= low;
        rest ^= low;
    }
    keep
}

/// Mask of valid slots in the window starting at `window` of a span of `nelems` slots.
#[inline(always)]
pub const fn window_mask(window: u32, nelems: u32) -> u64 {
    let left = nelems - window;
    if left >= 64 {
        u64::MAX
    } else {
        (1u64 << left) - 1
    }
}

impl Span {
    /// A record describing no memory. Used for the static empty span that every fresh
    /// mcache points at, so the fast path needs no null check.
    pub const fn empty() -> Span {
        Span {
            window_bits: Cell::new(u64::MAX),
            window_base: Cell::new(0),
            base: Cell::new(0),
            owner: AtomicPtr::new(ptr::null_mut()),
            alloc_bits: Cell::new(ptr::null_mut()),
            window: Cell::new(0),
            needzero: Cell::new(false),
            window_word: Cell::new(0),
            elemsize: Cell::new(0),
            div_magic: Cell::new(0),
            win_bytes: Cell::new(0),
            objs_bytes: Cell::new(0),
            _pad_count: 0,
            xfree: RemoteFrees::new(),
            in_dirty: Cell::new(false),
            ends_only: Cell::new(false),
            state: AtomicU8::new(SpanState::Dead as u8),
            spanclass: Cell::new(SpanClass(0)),
            dirty: Links::new(),
            dirty_since: Cell::new(0),
            last_owner: AtomicPtr::new(ptr::null_mut()),
            xfree_bits: Cell::new(ptr::null()),
            _pad_remote: [0; 7],
            _pad_cold: [0; 5],
            npages: Cell::new(0),
            mark_bits: Cell::new(ptr::null_mut()),
            links: Links::new(),
            pending_next: AtomicPtr::new(ptr::null_mut()),
            nelems: Cell::new(0),
            bin: Cell::new(0),
            in_partial: Cell::new(false),
            gc: AtomicU8::new(0),
            sweepgen: AtomicU32::new(0),
            prof_bucket: Cell::new(0),
            prof_size: Cell::new(0),
        }
    }

    /// The record's state.
    #[inline(always)]
    pub fn state(&self) -> SpanState {
        match self.state.load(Ordering::Relaxed) {
            1 => SpanState::Free,
            2 => SpanState::InUse,
            _ => SpanState::Dead,
        }
    }

    /// First slot of the loaded window, or `NO_WINDOW`.
    #[inline(always)]
    pub fn window(&self) -> u32 {
        self.window.get() as u32
    }

    /// Slot `idx` (less than `nelems`) is in the loaded window: its bitmap word is the
    /// window's. (Compared as a byte, as the window's word is kept: exact, as no span has
    /// more than [`MAX_OBJS_PER_SPAN`] slots, 16 words.)
    #[inline(always)]
    pub fn in_window(&self, idx: usize) -> bool {
        (idx >> 6) as u8 == self.window_word.get()
    }

    /// Sets the record's state.
    #[inline]
    pub fn set_state(&self, s: SpanState) {
        self.state.store(s as u8, Ordering::Relaxed)
    }

    /// One past the last byte.
    #[inline]
    pub fn limit(&self) -> usize {
        self.base.get() + (self.npages.get() << PAGE_SHIFT)
    }

    /// True for a large-object span.
    #[inline(always)]
    pub fn is_large(&self) -> bool {
        self.spanclass.get().size_class() == SizeClass::LARGE
    }

    /// Bytes available to the user in the object at `base + idx * elemsize`.
    #[inline]
    pub fn usable_size(&self) -> usize {
        if self.is_large() {
            (self.npages.get() - crate::harden::GUARD_PAGES) << PAGE_SHIFT
        } else {
            self.elemsize.get() as usize
        }
    }

    /// Turns a freshly allocated run of pages into a span of `spc`: every slot free,
    /// bitmap cleared, window 0 loaded. Called with the heap lock held, before the span is
    /// published in the arena map.
    ///
    /// # Safety
    /// The record describes in-use pages of a registered arena.
    pub unsafe fn init_in_use(&self, spc: SpanClass, needzero: bool) {
        let class = spc.size_class();
        self.spanclass.set(spc);
        self.needzero.set(needzero);
        self.owner.store(ptr::null_mut(), Ordering::Relaxed);
        self.in_partial.set(false);
        let ha = arena::heap_arena_of(self.base.get());
        crate::check!(!ha.is_null(), "span outside the heap", self.base.get());
        let page = arena::page_index(self.base.get());
        // SAFETY: `ha` is the live record of the arena holding the span.
        let (ab, mb, xb) = unsafe {
            (
                arena::bitmap_slot(ptr::addr_of_mut!((*ha).alloc_bits).cast(), page),
                arena::bitmap_slot(ptr::addr_of_mut!((*ha).mark_bits).cast(), page),
                arena::bitmap_slot(ptr::addr_of_mut!((*ha).xfree_bits).cast(), page),
            )
        };
        self.alloc_bits.set(ab);
        self.mark_bits.set(mb);
        self.xfree_bits.set(xb.cast_const().cast());
        // A remote free that read this record after its previous span was freed may have
        // left a spurious flag ([`RemoteFrees`]); its bit was taken, so the bitmap is
        // clear (checked below).
        self.xfree.reset();
        if class == SizeClass::LARGE {
            self.elemsize.set(0);
            self.div_magic.set(0);
            self.nelems.set(1);
            self.objs_bytes.set(0);
            self.set_window(0);
            self.set_window_free(0);
        } else {
            let nelems = ((self.npages.get() << PAGE_SHIFT) / class.size()) as u32;
            self.elemsize.set(class.size() as u32);
            self.div_magic.set(class.div_magic());
            self.nelems.set(nelems);
            self.objs_bytes.set(nelems * class.size() as u32);
            self.set_window(0);
            let words = self.bitmap_words();
            crate::check!(
                words <= self.npages.get() * BITMAP_WORDS_PER_PAGE,
                "span bitmap overflows its slot",
                words
            );
            // SAFETY: the bitmap slot of the span's first page has room for `words` words
            // (at most 16 per page of the span, and the arena has slack for spans that
            // run into the next arena). The mark bitmap is left alone: only the collector
            // reads it, and it clears a span's when it takes the span
            // (`gcapi::alloc_small_span`), so that a `malloc`-only program never touches
            // the mark bitmap's pages (arena invariant 4).
            unsafe { ptr::write_bytes(ab, 0, words) };
            self.set_window_free(window_mask(0, nelems));
            if crate::harden::POISONING {
                // Every free slot holds the poison pattern, so reuse can verify it.
                // SAFETY: the span's pages are ours (in use, not yet published).
                unsafe {
                    crate::harden::poison(
                        self.base.get() as *mut u8,
                        nelems as usize * class.size(),
                    )
                };
                self.needzero.set(true);
            }
        }
        if crate::check::ENABLED {
            for i in 0..self.bitmap_words() {
                // SAFETY: `i < bitmap_words()`, which fits the span's slot in `xfree_bits`
                // (checked above; one word for a large span).
                let w = unsafe { (*self.xfree_bits.get().add(i)).load(Ordering::Relaxed) };
                crate::check!(w == 0, "fresh span with remote frees", self.base.get());
            }
        }
    }

    /// The window's free slots (bit i: slot `window + i` is free), as Go's `allocCache`
    /// has them.
    #[inline(always)]
    pub fn window_free(&self) -> u64 {
        !self.window_bits.get()
    }

    /// The window's slots as the bitmap has them (bit i set: slot `window + i` is taken),
    /// the complement of [`Span::window_free`]: what the slow paths that take slots read,
    /// as [`Span::next_free_fast`] does, with no complement to compute (the heap profile's
    /// loans, `profile::lend`).
    #[cfg(not(feature = "profile"))]
    #[inline(always)]
    pub(crate) fn window_bits(&self) -> u64 {
        self.window_bits.get()
    }

    /// Makes `free` (bit i: slot `window + i`) the window's free slots; it has no bit at or
    /// above `nelems - window`.
    #[inline(always)]
    pub fn set_window_free(&self, free: u64) {
        self.window_bits.set(!free);
    }

    /// Takes a free slot from the window: Go's `nextFreeFast`. Null when the window is
    /// empty.
    #[inline(always)]
    pub fn next_free_fast(&self) -> *mut u8 {
        let c = self.window_bits.get();
        // The lowest clear bit of `c`, the lowest free slot, is the lowest set bit of `t`.
        let t = c.wrapping_add(1);
        if t == 0 {
            return ptr::null_mut();
        }
        self.window_bits.set(c | t);
        let p = self.window_base.get() + t.trailing_zeros() as usize * self.elemsize.get() as usize;
        // SAFETY: only an in-use span has free slots in its window (the static empty span's
        // window has none), and its slots lie in an arena mapped by the OS, never at
        // address 0. Telling the compiler lets it drop the callers' null tests.
        unsafe { core::hint::assert_unchecked(p != 0) };
        p as *mut u8
    }

    /// Slot index of `addr`, or `None` if `addr` is not the start of a slot.
    #[inline(always)]
    pub fn slot_of(&self, addr: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.base.get());
        if off >= self.objs_bytes.get() as usize {
            return None;
        }
        // `off * magic = idx * 2^32 + low`, and `low < magic` exactly when `off` is a
        // multiple of the object size (for every offset inside a span of any class:
        // checked exhaustively by `sizeclass` tests), so no multiply back is needed.
        let magic = self.div_magic.get();
        let prod = off as u64 * magic as u64;
        if (prod as u32) >= magic {
            return None;
        }
        Some((prod >> 32) as usize)
    }

    /// Makes slot `w` (a multiple of 64) the start of the window.
    #[inline]
    pub(crate) fn set_window(&self, w: u32) {
        let e = self.elemsize.get();
        debug_assert!(w <= NO_WINDOW && w % 64 == 0);
        self.window.set(w as u16);
        self.window_word.set((w >> 6) as u8);
        self.window_base
            .set(self.base.get() + w as usize * e as usize);
        self.win_bytes
            .set(self.nelems.get().saturating_sub(w).min(64) * e);
    }

    /// Leaves the span with no window (committed first by the caller), so that every
    /// free clears its bitmap bit and the bitmap stays exact.
    ///
    /// # Safety
    /// The caller owns the span; its window is committed (`window_free() == 0`).
    pub(crate) unsafe fn unload_window(&self) {
        debug_assert_eq!(self.window_free(), 0);
        self.window.set(NO_WINDOW as u16);
        self.window_word.set(NO_WINDOW_WORD);
        self.window_base.set(0);
        self.win_bytes.set(0);
    }

    /// True if one window covers every slot (at most 64 slots: classes of 128 bytes and
    /// up).
    #[inline]
    pub fn single_window(&self) -> bool {
        self.nelems.get() <= 64
    }

    /// Words of each of the span's bitmaps (allocation, mark, remote-free): one bit per
    /// slot.
    #[inline]
    pub fn bitmap_words(&self) -> usize {
        self.nelems.get().div_ceil(64) as usize
    }

    /// Puts a span whose window was just committed into the state of a span its cache
    /// *retains* (allocates no more from, but still owns, so that the thread's frees into
    /// it stay local). A single-window span keeps its one window loaded, holding its free
    /// slots: the owner's frees then flip a bit of `window_bits`, on the record's first
    /// cache line, like frees into the span it allocates from. (A free into the bitmap
    /// reads one more cache line, the bitmap word, which random frees often miss.) Other
    /// spans unload theirs ([`Span::unload_window`]),
    /// so that every free clears its bitmap bit and the bitmap stays exact, until a run
    /// of frees loads one for itself ([`Span::load_window_for_frees`]). Either way
    /// [`Span::retained_free`] counts the free slots and [`Span::settle_retained`] makes the
    /// bitmap exact again.
    ///
    /// # Safety
    /// The caller owns the span; its window is committed.
    pub(crate) unsafe fn retain(&self) {
        debug_assert_eq!(self.window_free(), 0);
        if self.single_window() {
            self.set_window(0);
            // SAFETY: a small span's bitmap has at least one word; the caller owns it.
            let word = unsafe { *self.alloc_bits.get() };
            self.set_window_free(!word & window_mask(0, self.nelems.get()));
        } else {
            // SAFETY: the caller owns the span and its window is committed (# Safety).
            unsafe { self.unload_window() };
        }
    }

    /// Commits the exhausted window of a span of at most 64 slots, with no remote free
    /// announced: every slot is then allocated. What [`Span::commit_window`] followed by
    /// [`Span::retain`] leave: the bitmap word is all slots, and window 0 stays loaded and
    /// empty, the retained state.
    ///
    /// # Safety
    /// The caller owns the span.
    #[inline]
    pub(crate) unsafe fn commit_exhausted_single(&self) {
        let nelems = self.nelems.get();
        crate::check!(
            self.single_window() && self.window() == 0 && self.window_free() == 0,
            "commit of a span that is not an exhausted single window",
            self as *const Span as usize
        );
        // SAFETY: a small span's bitmap has at least one word; the caller owns it.
        unsafe { *self.alloc_bits.get() = window_mask(0, nelems) };
    }

    /// Free slots of a retained span (see [`Span::retain`]), remote frees not counted.
    ///
    /// # Safety
    /// The caller owns the span, which is in the retained state.
    #[inline]
    pub(crate) unsafe fn retained_free(&self) -> u32 {
        let w = self.window();
        if w == NO_WINDOW {
            // SAFETY: the caller owns the span (# Safety).
            self.nelems.get() - unsafe { self.allocated() }
        } else if self.single_window() {
            crate::cpu::popcount(self.window_free())
        } else {
            // A window loaded for frees: the bitmap's count is as committed, its word for
            // the window still showing the slots that were free when it was loaded; the
            // window holds those and the owner's frees since.
            // SAFETY: a loaded window's word lies in the bitmap; the caller owns the span.
            let word = unsafe { *self.alloc_bits.get().add(w as usize >> 6) };
            let free_then = crate::cpu::popcount(!word & window_mask(w, self.nelems.get()));
            // SAFETY: the caller owns the span (# Safety).
            self.nelems.get() - unsafe { self.allocated() } - free_then
                + crate::cpu::popcount(self.window_free())
        }
    }

    /// Loads, into a span of more than 64 slots that a cache owns (one it retains, or the
    /// one it allocates from), the window holding slot `idx`, for the owner's frees (the
    /// window it had, if any, committed first), so that a run of frees into the span is
    /// each a bit flipped in `window_bits`: the first tier of [`crate::malloc::free_sized`]
    /// finds them there. The window holds exactly the window's free slots, as a
    /// single-window retained span's does ([`Span::retain`]); the allocating span's next
    /// `malloc` takes them, and its next refill goes on from this window.
    ///
    /// # Safety
    /// The caller owns the span, which has more than 64 slots, and `idx < nelems`.
    #[inline]
    pub(crate) unsafe fn load_window_for_frees(&self, idx: usize) {
        crate::check!(
            !self.single_window() && idx < self.nelems.get() as usize,
            "window for frees in a single-window span",
            self as *const Span as usize
        );
        if self.window() != NO_WINDOW {
            // SAFETY: the caller owns the span (# Safety); a window the owner loaded is
            // exact (the allocating span's, or a retained one: see `settle_retained`), so
            // committing it is too.
            unsafe { self.commit_window() };
        }
        let w = (idx & !63) as u32;
        // SAFETY: `idx < nelems`, so its word lies in the bitmap.
        let word = unsafe { *self.alloc_bits.get().add(idx >> 6) };
        self.set_window(w);
        self.set_window_free(!word & window_mask(w, self.nelems.get()));
    }

    /// Takes a retained span out of the retained state: its window, if it kept one, is
    /// committed, so the bitmap is exact and no window is loaded
    /// (`window_free() == 0`), as [`Span::retain`] and the mcentral expect.
    ///
    /// # Safety
    /// The caller owns the span, which is in the retained state.
    pub(crate) unsafe fn settle_retained(&self) {
        if self.window() != NO_WINDOW {
            // SAFETY: the caller owns the span (# Safety); a retained window is exact
            // (loaded from the committed bitmap, then only the owner's frees set its bits),
            // so committing it is too.
            unsafe { self.commit_window() };
        }
    }

    /// Lends up to `max` of the loaded window's free slots, the lowest first, to `proxy`,
    /// the record a sampling thread's fast path takes slots from instead of this span
    /// (`profile::lend`). The slots leave the window for the proxy's, and the proxy
    /// gets the window's address and slot size, which is all the fast path reads. Until
    /// [`Span::repay`], the lent slots count as allocated here; a free of one that the
    /// fast path handed out comes back here, as any free does, and never to the proxy,
    /// so every slot the proxy hands out was counted when it was lent. Returns the number
    /// of slots lent.
    ///
    /// # Safety
    /// The caller owns the span, which has a window loaded, and `proxy`, which holds no
    /// loan (repaid, or never lent to).
    #[cfg(not(feature = "profile"))]
    pub(crate) unsafe fn lend(&self, proxy: &Span, max: u32) -> u32 {
        debug_assert!(self.window() != NO_WINDOW && proxy.window_free() == 0);
        let free = self.window_free();
        let lent = lowest_bits(free, max);
        self.set_window_free(free & !lent);
        self.lend_window(proxy, !lent);
        crate::cpu::popcount(lent)
    }

    /// Gives `proxy` slots of the loaded window, those clear in `bits` (the proxy's
    /// `window_bits`: bit clear, lent), with what the fast path reads to take them
    /// (`window_base`, `elemsize`) and what [`Span::repay`] reads to give them back (`base`,
    /// `window`, `window_word`).
    #[cfg(not(feature = "profile"))]
    #[inline(always)]
    fn lend_window(&self, proxy: &Span, bits: u64) {
        proxy.window_bits.set(bits);
        proxy.window_base.set(self.window_base.get());
        proxy.elemsize.set(self.elemsize.get());
        proxy.base.set(self.base.get());
        proxy.window.set(self.window.get());
        proxy.window_word.set(self.window_word.get());
    }

    /// Takes the lowest free slot of the loaded window and lends the rest of it to
    /// `proxy`, as [`Span::lend`] with no limit: `profile::lend::relend`, a sampling
    /// thread's way back to its fast path. Returns the slot.
    ///
    /// # Safety
    /// As for [`Span::lend`]; `bits` is the window's [`Span::window_bits`], which the caller
    /// has read, with a free slot.
    #[cfg(not(feature = "profile"))]
    #[inline(always)]
    pub(crate) unsafe fn take_and_lend_rest(&self, proxy: &Span, bits: u64) -> *mut u8 {
        debug_assert!(bits == self.window_bits() && proxy.window_free() == 0);
        // The lowest free slot, as in `next_free_fast`.
        let t = bits.wrapping_add(1);
        debug_assert!(t != 0);
        let slot = self.window_base.get() + t.trailing_zeros() as usize * self.elemsize.get() as usize;
        self.set_window_free(0);
        // The proxy's window: this one's, that slot taken.
        self.lend_window(proxy, bits | t);
        slot as *mut u8
    }

    /// Takes back what the fast path left of a loan ([`Span::lend`]) to `proxy`. If the
    /// window lent from is still loaded, the slots go back into it. Otherwise a run of
    /// frees moved the window (`Span::load_window_for_frees`), which committed the lent
    /// slots as allocated, so they are freed in the bitmap. A lent slot that is already
    /// free here was freed twice, and ends the process.
    ///
    /// # Safety
    /// The caller owns the span and `proxy`, whose loan came from this span.
    #[cfg(not(feature = "profile"))]
    pub(crate) unsafe fn repay(&self, proxy: &Span) {
        let left = proxy.window_free();
        proxy.set_window_free(0);
        if left == 0 {
            return;
        }
        crate::check!(
            proxy.base.get() == self.base.get(),
            "loan repaid to another span",
            proxy.base.get()
        );
        let w = proxy.window();
        let slot = |bits: u64| {
            proxy.window_base.get() + bits.trailing_zeros() as usize * proxy.elemsize.get() as usize
        };
        if w == self.window() {
            let free = self.window_free();
            if free & left != 0 {
                double_free(slot(free & left));
            }
            self.set_window_free(free | left);
        } else {
            // SAFETY: `w < nelems` (it was a window of this span), so the word lies in the
            // bitmap, which the caller owns (# Safety).
            let word = unsafe { &mut *self.alloc_bits.get().add(w as usize >> 6) };
            if *word & left != left {
                double_free(slot(left & !*word));
            }
            *word &= !left;
        }
    }

    /// Frees `addr` if it is a slot of the loaded window (the layout-aware fast path of
    /// [`crate::malloc::free_sized`]); false if it is not in the window at all. A pointer
    /// into the middle of a window slot, or a slot already free, ends the process.
    ///
    /// # Safety
    /// The caller owns the span.
    #[inline(always)]
    pub unsafe fn free_in_window(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.window_base.get());
        if off >= self.win_bytes.get() as usize {
            return false;
        }
        // The window starts on a slot boundary, so the exactness test of `slot_of` holds
        // for offsets from it too.
        let magic = self.div_magic.get();
        let prod = off as u64 * magic as u64;
        if (prod as u32) >= magic {
            fatal("free of a pointer into the middle of an object:", addr);
        }
        let bit = (prod >> 32) as u32;
        let c = self.window_bits.get();
        if (c >> bit) & 1 == 0 {
            double_free(addr);
        }
        self.window_bits.set(c ^ (1u64 << bit));
        // SAFETY: the slot is dead and ours (poison feature only).
        unsafe { crate::harden::poison(addr as *mut u8, self.elemsize.get() as usize) };
        self.needzero.set(true);
        true
    }

    /// The owner frees slot `idx`: back into the window if it is the loaded one, else
    /// cleared in the bitmap. A slot that is already free is a double free.
    ///
    /// # Safety
    /// The caller owns the span; `idx < nelems`.
    #[inline(always)]
    pub unsafe fn free_local(&self, idx: usize, addr: usize) {
        // SAFETY: the caller owns the span and `idx < nelems` (# Safety).
        if !unsafe { self.try_free_local(idx, addr) } {
            double_free(addr);
        }
    }

    /// [`Span::free_local`], but a slot that is already free is left as it is and false
    /// returned, so that C's `free` fast path has no call in it (and so no stack frame to
    /// set up): it hands the pointer to the general path, which reports the double free.
    ///
    /// Both cases clear one bit that must be set, in the window's bits or in the bitmap
    /// (which have the same polarity for this), so the word is selected without a branch:
    /// frees that land in and out of the window at random would mispredict that branch
    /// every other time.
    ///
    /// # Safety
    /// The caller owns the span; `idx < nelems`.
    #[inline(always)]
    pub unsafe fn try_free_local(&self, idx: usize, addr: usize) -> bool {
        let bit = idx & 63;
        let in_window = self.in_window(idx);
        // SAFETY: `idx < nelems`, so the word lies in the span's bitmap.
        let bitmap_word = unsafe { self.alloc_bits.get().add(idx >> 6) };
        let word = if in_window {
            self.window_bits.as_ptr()
        } else {
            bitmap_word
        };
        // SAFETY: `word` is the span's window word or one of its bitmap words, both the
        // owner's alone.
        let w = unsafe { *word };
        if (w >> bit) & 1 == 0 {
            return false;
        }
        // SAFETY: `word` is the span's window word or one of its bitmap words, the owner's
        // alone.
        unsafe { *word = w ^ (1u64 << bit) };
        // SAFETY: the slot is dead and ours (poison feature only).
        unsafe { crate::harden::poison(addr as *mut u8, self.elemsize.get() as usize) };
        self.needzero.set(true);
        true
    }

    /// [`Span::try_free_local`] with a branch between the window and the bitmap instead
    /// of a select: eight instructions fewer where the branch is predictable, as it is in
    /// runs of frees into one span (a batch of Rust frees through the second tier of
    /// [`crate::malloc::free_sized`], the span of the class's free hint).
    ///
    /// # Safety
    /// The caller owns the span; `idx < nelems`.
    #[inline(always)]
    pub unsafe fn try_free_local_branchy(&self, idx: usize, addr: usize) -> bool {
        if !self.in_window(idx) {
            // SAFETY: the caller owns the span and `idx < nelems` (# Safety); the slot is
            // outside the window (tested just above).
            return unsafe { self.try_free_outside_window(idx, addr) };
        }
        let m = 1u64 << (idx & 63);
        let c = self.window_bits.get();
        if c & m == 0 {
            return false;
        }
        self.window_bits.set(c ^ m);
        // SAFETY: the slot is dead and ours (poison feature only).
        unsafe { crate::harden::poison(addr as *mut u8, self.elemsize.get() as usize) };
        self.needzero.set(true);
        true
    }

    /// [`Span::try_free_local`] for a slot the caller knows is outside the loaded window:
    /// its bitmap bit is cleared, with no window test. (The second tier of
    /// [`crate::malloc::free_sized`] knows it: the first tested the same span's window.)
    ///
    /// # Safety
    /// The caller owns the span; `idx < nelems`, and slot `idx` is not in the window.
    #[inline(always)]
    pub unsafe fn try_free_outside_window(&self, idx: usize, addr: usize) -> bool {
        debug_assert!(!self.in_window(idx));
        let m = 1u64 << (idx & 63);
        // SAFETY: `idx < nelems`, so the word lies in the span's bitmap, the owner's.
        let word = unsafe { &mut *self.alloc_bits.get().add(idx >> 6) };
        if *word & m == 0 {
            return false;
        }
        *word &= !m;
        // SAFETY: the slot is dead and ours (poison feature only).
        unsafe { crate::harden::poison(addr as *mut u8, self.elemsize.get() as usize) };
        self.needzero.set(true);
        true
    }

    /// True if the owner sees slot `idx` as free: its bit is set in the loaded window, or
    /// clear in the bitmap outside it (the same test [`Span::free_local`] makes). Frees
    /// other threads left on the remote list and not yet collected still read as
    /// allocated, so `false` does not prove the slot is live.
    ///
    /// # Safety
    /// The caller owns the span; `idx < nelems`.
    #[inline]
    pub unsafe fn slot_is_free_local(&self, idx: usize) -> bool {
        let m = 1u64 << (idx & 63);
        if self.in_window(idx) {
            self.window_free() & m != 0
        } else {
            // SAFETY: `idx < nelems`, so the word lies in the span's bitmap.
            unsafe { *self.alloc_bits.get().add(idx >> 6) & m == 0 }
        }
    }

    /// Writes the loaded window back into the bitmap and empties the cache.
    ///
    /// # Safety
    /// The caller owns the span.
    #[inline]
    pub unsafe fn commit_window(&self) {
        let w = self.window();
        crate::check!(w < self.nelems.get(), "commit of a span with no window", w);
        let mask = window_mask(w, self.nelems.get());
        // SAFETY: `w < nelems`, so the word lies in the bitmap, 8-byte aligned. Atomic:
        // for a collector span, `gcapi::find_object` may read this word on another thread
        // (gcapi rule 4); relaxed loads and stores are plain moves on x86-64.
        let word = unsafe {
            core::sync::atomic::AtomicU64::from_ptr(self.alloc_bits.get().add(w as usize >> 6))
        };
        word.store(self.window_bits.get() & mask, core::sync::atomic::Ordering::Relaxed);
        self.set_window_free(0);
    }

    /// Loads the first window at or after slot `from` (wrapping to 0 if `wrap`) that has a
    /// free slot. Returns false if there is none. The window must be committed.
    ///
    /// # Safety
    /// The caller owns the span.
    pub unsafe fn load_window_from(&self, from: u32) -> bool {
        let nelems = self.nelems.get();
        let words = nelems.div_ceil(64);
        let mut w = from / 64;
        while w < words {
            // SAFETY: `w < words`, inside the bitmap.
            let bits = unsafe { *self.alloc_bits.get().add(w as usize) };
            let free = !bits & window_mask(w * 64, nelems);
            if free != 0 {
                self.set_window(w * 64);
                self.set_window_free(free);
                return true;
            }
            w += 1;
        }
        false
    }

    /// Frees slot `idx` from a thread that does not own the span (`RemoteFrees::push`).
    ///
    /// # Safety
    /// The span is in use, `idx < nelems`, and the slot's object is being freed by its
    /// user.
    #[inline(always)]
    pub unsafe fn free_remote(&self, idx: usize) -> crate::remote::Push {
        // SAFETY: `idx < nelems` and the slot's user frees it (# Safety); `xfree_bits` has
        // a bit for every slot.
        unsafe { self.xfree.push(self.xfree_bits.get(), idx) }
    }

    /// Applies every announced remote free to the bitmap; returns how
    /// many objects were freed. The window must be committed. A slot freed remotely while
    /// already free (a double free whose first free was collected, or a local one) ends
    /// the process. The objects themselves are not read: see `RemoteFrees`.
    ///
    /// # Safety
    /// The caller owns the span (owner, or mcentral lock holder of an unowned span).
    pub unsafe fn collect_remote(&self) -> u32 {
        let ab = self.alloc_bits.get();
        let mut n = 0;
        // SAFETY: the span's remote-free bitmap has `bitmap_words` words.
        unsafe {
            self.xfree
                .take(self.xfree_bits.get(), self.bitmap_words(), |i, x| {
                    // SAFETY: word `i` lies in the allocation bitmap too; the caller owns
                    // it.
                    let w = &mut *ab.add(i);
                    let twice = x & !*w;
                    if twice != 0 {
                        // Freed remotely after the slot was already free: a double free
                        // whose first free was collected (or was a local one).
                        let idx = i * 64 + twice.trailing_zeros() as usize;
                        double_free(self.base.get() + idx * self.elemsize.get() as usize);
                    }
                    *w &= !x;
                    n += crate::cpu::popcount(x);
                });
        }
        if n != 0 {
            self.needzero.set(true);
        }
        n
    }

    /// Allocated slots: the bitmap's set bits (invariant 3), exact once the window is
    /// committed, and as last committed while one is loaded; 1 for a large span, whose
    /// bitmap is not used.
    ///
    /// # Safety
    /// The caller owns the span.
    pub unsafe fn allocated(&self) -> u32 {
        if self.is_large() {
            return 1;
        }
        let bits = self.alloc_bits.get();
        let mut n = 0;
        for i in 0..self.bitmap_words() {
            // SAFETY: `i < bitmap_words()`, inside the span's bitmap, which the caller owns.
            n += crate::cpu::popcount(unsafe { *bits.add(i) });
        }
        n
    }

    /// Debug check of the invariants written on [`Span`] for an owned, in-use small span
    /// whose window is committed.
    ///
    /// # Safety
    /// The caller owns the span.
    pub unsafe fn check_invariants(&self) {
        if !crate::check::ENABLED || self.is_large() {
            return;
        }
        // SAFETY: the caller owns the span (# Safety), as `small_span` requires.
        unsafe { crate::check::small_span(self) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mheap::MHeap;
    use crate::remote::Push;
    use crate::sizeclass::size_to_class;

    /// A fresh in-use span of `size`-byte objects from a private heap.
    fn span(slot: usize, size: usize) -> &'static Span {
        let heap = Box::leak(Box::new(MHeap::private(8 + slot)));
        let class = size_to_class(size);
        let s = heap.alloc_span(class.npages(), 0, SpanClass::new(class, true));
        // SAFETY: a live span record of a heap that is never dropped.
        unsafe { &*s }
    }

    #[test]
    fn windows_hand_out_every_slot_once() {
        let s = span(0, 48); // 170 slots: two full windows and a partial one
        let n = s.nelems.get() as usize;
        assert_eq!(n, 170);
        let mut seen = vec![false; n];
        for _ in 0..n {
            let mut p = s.next_free_fast();
            if p.is_null() {
                // SAFETY: the test owns the span.
                unsafe {
                    s.commit_window();
                    assert!(s.load_window_from(s.window() + 64));
                }
                p = s.next_free_fast();
            }
            let idx = s.slot_of(p as usize).unwrap();
            assert!(!seen[idx]);
            seen[idx] = true;
        }
        assert!(s.next_free_fast().is_null());
        // SAFETY: the test owns the span.
        unsafe {
            s.commit_window();
            assert!(!s.load_window_from(s.window() + 64));
            assert_eq!(s.allocated(), 170);
            s.check_invariants();
        }
    }

    #[test]
    fn local_and_remote_frees_return_slots() {
        let s = span(1, 64); // 128 slots
        let objs: Vec<usize> = (0..100)
            .map(|_| {
                let mut p = s.next_free_fast();
                if p.is_null() {
                    // SAFETY: the test owns the span.
                    unsafe {
                        s.commit_window();
                        assert!(s.load_window_from(s.window() + 64));
                    }
                    p = s.next_free_fast();
                }
                p as usize
            })
            .collect();
        // Window is now slots 64..128. Free one slot there (back into the cache), one in the
        // committed window 0 (cleared in the bitmap), and two remotely.
        // SAFETY: the test owns the span; each object is freed once.
        unsafe {
            s.free_local(s.slot_of(objs[70]).unwrap(), objs[70]);
            assert_ne!(s.window_free() & (1 << 6), 0);
            s.free_local(s.slot_of(objs[3]).unwrap(), objs[3]);
            assert_eq!(s.free_remote(s.slot_of(objs[10]).unwrap()), Push::Done);
            assert_eq!(s.free_remote(s.slot_of(objs[11]).unwrap()), Push::Done);
            assert_eq!(s.free_remote(s.slot_of(objs[11]).unwrap()), Push::Twice);
            s.commit_window();
            assert_eq!(s.collect_remote(), 2);
            assert_eq!(s.allocated(), 96);
            assert!(s.needzero.get());
            s.check_invariants();
            assert!(s.load_window_from(0));
            assert_eq!(s.window(), 0);
            let c = s.window_free();
            assert_eq!(c, (1 << 3) | (1 << 10) | (1 << 11));
        }
    }

    #[test]
    fn window_masks() {
        assert_eq!(window_mask(0, 1024), u64::MAX);
        assert_eq!(window_mask(0, 3), 0b111);
        assert_eq!(window_mask(320, 341), (1 << 21) - 1);
        assert_eq!(window_mask(64, 128), u64::MAX);
    }
}
