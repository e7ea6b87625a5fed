//! The garbage collector's view of the heap (used by the `gomalloc-gc` crate; see
//! `docs/gc-design.md`).
//!
//! The collector keeps its own spans, apart from the spans `malloc` uses, on the same page
//! heap (`crate::mheap::HEAP`) and the same arena map. A span belongs to the collector
//! while `Span::gc` is non-zero: it then holds objects of one [`ObjectKind`] (the byte
//! stored there) and is never touched by `malloc`'s caches, central lists or remote
//! frees. This module is all of the heap the collector uses; it gives the collector what
//! Go's runtime takes from `mheap.go`, `mcache.go`, `mbitmap.go` and `mgcsweep.go`:
//!
//! * spans: [`alloc_small_span`], [`alloc_large_span`], [`free_span`], [`span_of`], and
//!   what the collector reads of a span, through [`Span`], a transparent wrapper of the
//!   heap's record with read-only accessors only ([`Span::kind`], [`Span::base`],
//!   [`Span::npages`], [`Span::nelems`], [`Span::object_size`], [`Span::size_class`],
//!   [`Span::sweepgen`]; the record's fields and window methods are private to the heap);
//! * the allocation cursor of a span one of its caches owns: [`OwnedSpan`] (take a slot of
//!   the loaded window, commit it, load the next), and [`OwnedSpan::EMPTY`] for an empty
//!   cache slot;
//! * "address -> span -> object start + is allocated" for conservative scanning:
//!   [`find_object`] (interior pointers resolve to their object); for addresses known to
//!   name an allocated object, the unchecked [`SlotMap::object`] (the marker's one-entry
//!   span cache) and [`object_at`];
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
//!    committed ([`OwnedSpan::commit`]): the collector commits every window before it
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
//!
//! Layer: entry points (the crate root's module map, `lib.rs`).

use crate::arena;
use crate::mheap::HEAP;
use crate::sizeclass::{PAGE_SIZE, SpanClass, obj_index};
use crate::span::SpanState;
use core::sync::atomic::{AtomicU64, Ordering};

// The rest of the heap that the collector uses, re-exported here so that the heap's
// modules stay private to it.
pub use crate::harden::POISONING;
pub use crate::malloc::small_class;
pub use crate::sizeclass::{PAGE_SHIFT, SizeClass, size_to_class};
pub use crate::sizeclasses::{MAX_SMALL_SIZE, NUM_SIZE_CLASSES};
use crate::span::Span as HeapSpan;

/// A span record as the collector sees it: the heap's `Span` (same layout), with only the
/// read-only facts below; its window protocol is reached through [`OwnedSpan`], its
/// objects through [`find_object`], [`SlotMap`] and [`for_each_object`]. The collector
/// holds spans as `*mut Span` from [`alloc_small_span`], [`alloc_large_span`],
/// [`span_of`] and [`for_each_gc_span`]; span records are never unmapped.
#[repr(transparent)]
pub struct Span(HeapSpan);

impl Span {
    /// The heap's record.
    #[inline(always)]
    fn heap(&self) -> &HeapSpan {
        &self.0
    }
}

/// The span record holding `addr` (arena map -> span), or null outside the heap. Any
/// span: a malloc span ([`Span::kind`] `None`), a free run, the collector's.
#[inline(always)]
pub fn span_of(addr: usize) -> *mut Span {
    arena::span_of(addr).cast()
}

/// The kind of objects a collector span holds: the byte stored in `Span::gc` (0 there is a
/// malloc span, `KIND_MALLOC`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// Objects that hold GC pointers: a one-word header, scanned by the collector.
    Scan = 1,
    /// Pointer-free objects with a destructor: a one-word header, never scanned.
    NoscanDrop = 2,
    /// Pointer-free objects without a destructor: no header, never scanned (tiny blocks too).
    Noscan = 3,
}

impl ObjectKind {
    /// The kind stored as `byte` in `Span::gc`; `None` for a malloc span (0).
    #[inline(always)]
    const fn from_byte(byte: u8) -> Option<ObjectKind> {
        match byte {
            1 => Some(ObjectKind::Scan),
            2 => Some(ObjectKind::NoscanDrop),
            3 => Some(ObjectKind::Noscan),
            _ => None,
        }
    }
}

/// `Span::gc` of a malloc span: not the collector's.
pub(crate) const KIND_MALLOC: u8 = 0;

/// What the collector reads of any span record: its geometry, its object kind and its
/// sweep generation. (The fields themselves are the heap's; see `Span`.)
impl Span {
    /// True for a large-object span (one object).
    #[inline(always)]
    pub fn is_large(&self) -> bool {
        self.0.is_large()
    }

    /// One past the last byte of its pages.
    #[inline(always)]
    pub fn limit(&self) -> usize {
        self.0.limit()
    }

    /// The kind of the collector's objects it holds; `None` for a malloc span. Relaxed: for
    /// a span the caller reached through [`find_object`], [`span_of`] of one of its
    /// objects or its own lists, whose kind was published before.
    #[inline(always)]
    pub fn kind(&self) -> Option<ObjectKind> {
        ObjectKind::from_byte(self.0.gc.load(Ordering::Relaxed))
    }

    /// Address of the first page.
    #[inline(always)]
    pub fn base(&self) -> usize {
        self.0.base.get()
    }

    /// Pages in the span.
    #[inline(always)]
    pub fn npages(&self) -> usize {
        self.0.npages.get()
    }

    /// Slots (1 for a large span).
    #[inline(always)]
    pub fn nelems(&self) -> u32 {
        self.0.nelems.get()
    }

    /// Bytes per object: the slot size, or a large span's whole pages.
    #[inline(always)]
    pub fn object_size(&self) -> usize {
        if self.0.is_large() {
            self.0.npages.get() << PAGE_SHIFT
        } else {
            self.0.elemsize.get() as usize
        }
    }

    /// The size class of its slots ([`SizeClass::LARGE`] for a large span).
    #[inline(always)]
    pub fn size_class(&self) -> SizeClass {
        self.0.spanclass.get().size_class()
    }

    /// The collector's sweep generation of the span (Go's `mspan.sweepgen`): written only
    /// by the collector, which keeps its protocol (`gc/src/heap.rs`).
    #[inline(always)]
    pub fn sweepgen(&self) -> &crate::sync::AtomicU32 {
        &self.0.sweepgen
    }
}

/// A collector span that one of the collector's span caches owns (rule 1), or the empty
/// span: the cursor a mutator allocates with, Go's `mcache.alloc[spc]`. It wraps the
/// window protocol of `Span` (invariant 2 there): [`OwnedSpan::take_slot`] takes a slot
/// of the loaded window (`Span::next_free_fast`), [`OwnedSpan::commit`] writes the window
/// back to the allocation bitmap, [`OwnedSpan::reload_next`] / [`OwnedSpan::reload_from`]
/// load a later window with a free slot.
///
/// The empty cursor ([`OwnedSpan::EMPTY`]) points at a record with no free slot, so the
/// fast path needs no null test; it must never be committed or reloaded.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedSpan(*mut HeapSpan);

impl OwnedSpan {
    /// The empty cursor: [`OwnedSpan::take_slot`] returns null.
    pub const EMPTY: OwnedSpan = OwnedSpan(crate::mcache::EMPTY_SPAN_PTR);

    /// The cursor of span `s`.
    ///
    /// # Safety
    /// `s` is an in-use span of the collector that the caller's span cache takes into its
    /// ownership (rule 1): no other cache holds it, and no sweep or list touches it until
    /// the cache gives it back ([`OwnedSpan::as_ptr`]).
    #[inline]
    pub unsafe fn from_raw(s: *mut Span) -> OwnedSpan {
        OwnedSpan(s.cast())
    }

    /// The span record, to hand it back to a list or to mark in it.
    #[inline(always)]
    pub fn as_ptr(self) -> *mut Span {
        self.0.cast()
    }

    /// True for [`OwnedSpan::EMPTY`].
    #[inline(always)]
    pub fn is_empty(self) -> bool {
        self.0 == crate::mcache::EMPTY_SPAN_PTR
    }

    /// The span record, for its read-only facts (`Span::nelems`, `Span::object_size`, ...).
    #[inline(always)]
    pub fn span(&self) -> &'static Span {
        // SAFETY: a cursor names a live span record or the static empty span (its
        // constructors), and span records are never unmapped; `Span` is a transparent
        // wrapper of the record.
        unsafe { &*self.0.cast::<Span>() }
    }

    /// The heap's record.
    #[inline(always)]
    fn heap(&self) -> &'static HeapSpan {
        // SAFETY: a cursor names a live span record or the static empty span (its
        // constructors), and span records are never unmapped.
        unsafe { &*self.0 }
    }

    /// Takes a free slot of the loaded window: Go's `nextFreeFast`. Null when the window
    /// is empty (always for [`OwnedSpan::EMPTY`]).
    ///
    /// # Safety
    /// The calling thread's span cache holds the cursor (rule 1): no other thread uses the
    /// span's window meanwhile.
    #[inline(always)]
    pub unsafe fn take_slot(self) -> *mut u8 {
        self.heap().next_free_fast()
    }

    /// Writes the loaded window back into the allocation bitmap (`Span::commit_window`),
    /// so that `Span::allocated` and [`find_object`] see its slots as allocated.
    ///
    /// # Safety
    /// As for [`OwnedSpan::take_slot`]; not [`OwnedSpan::EMPTY`]; a window is loaded.
    #[inline]
    pub unsafe fn commit(self) {
        // SAFETY: the caller's cache owns the span and a window is loaded (# Safety).
        unsafe { self.heap().commit_window() }
    }

    /// Loads the first window after the committed one that has a free slot; false if
    /// none does (the span is full from there on).
    ///
    /// # Safety
    /// As for [`OwnedSpan::commit`], and the window is committed.
    #[inline]
    pub unsafe fn reload_next(self) -> bool {
        let s = self.heap();
        let next = s.window() + 64;
        // SAFETY: the caller's cache owns the span, its window committed (# Safety).
        next < s.nelems.get() && unsafe { s.load_window_from(next) }
    }

    /// Loads the first window at or after slot `from` that has a free slot; false if none
    /// does.
    ///
    /// # Safety
    /// As for [`OwnedSpan::commit`], and the window (if one is loaded) is committed.
    #[inline]
    pub unsafe fn reload_from(self, from: u32) -> bool {
        // SAFETY: the caller's cache owns the span, its window committed (# Safety).
        unsafe { self.heap().load_window_from(from) }
    }

    /// Sets the mark bits of the loaded window's free slots: allocate-black a window at a
    /// time (design §8 of the collector), so that each slot the cache takes from this
    /// window while a cycle marks is marked already and the allocation fast path stays as
    /// it is. Before the window is committed, [`OwnedSpan::unmark_free`] clears the bits of
    /// the slots still free (the sweep would take them for live objects).
    ///
    /// # Safety
    /// As for [`OwnedSpan::commit`]; a window loaded since the last commit, nothing taken
    /// from it yet, and a cycle marking (mark bits are accessed atomically: rule 3).
    #[inline]
    pub unsafe fn mark_free(self) {
        let s = self.heap();
        // SAFETY: a loaded window's first slot is below `nelems` (`Span` invariant 2).
        unsafe { mark_word(s, s.window() as usize) }.fetch_or(s.window_free(), Ordering::Relaxed);
    }

    /// Clears the mark bits of the loaded window's slots that are still free: undoes
    /// [`OwnedSpan::mark_free`] for the slots the cache did not take. Markers never set
    /// a free slot's bit (they mark allocated objects only), so no mark is lost.
    ///
    /// # Safety
    /// As for [`OwnedSpan::commit`], with the window not committed yet, and a cycle marking.
    #[inline]
    pub unsafe fn unmark_free(self) {
        let s = self.heap();
        // SAFETY: a loaded window's first slot is below `nelems` (`Span` invariant 2), and
        // the caller's cache owns the span (# Safety).
        unsafe { mark_word(s, s.window() as usize) }.fetch_and(!s.window_free(), Ordering::Relaxed);
    }

    /// Free slots in the loaded window (0 for [`OwnedSpan::EMPTY`]).
    #[inline]
    pub fn window_free(self) -> u32 {
        crate::cpu::popcount(self.heap().window_free())
    }

    /// Keeps the lowest `max` free slots of the loaded window for
    /// [`OwnedSpan::take_slot`] and returns the others, taken out of the window: a
    /// collector whose thread samples for the heap profile holds them back so that its
    /// fast path stops where the countdown runs out. They must go back
    /// ([`OwnedSpan::give_back`]) before the window is committed or unmarked.
    ///
    /// # Safety
    /// As for [`OwnedSpan::take_slot`].
    #[inline]
    pub unsafe fn hold_back(self, max: u32) -> u64 {
        let s = self.heap();
        let free = s.window_free();
        let keep = crate::span::lowest_bits(free, max);
        s.set_window_free(keep);
        free & !keep
    }

    /// Puts back into the loaded window the free slots [`OwnedSpan::hold_back`] returned.
    ///
    /// # Safety
    /// As for [`OwnedSpan::take_slot`]; `held` came from `hold_back` on this window, which
    /// is still loaded.
    #[inline]
    pub unsafe fn give_back(self, held: u64) {
        let s = self.heap();
        crate::check!(
            s.window_free() & held == 0,
            "held-back slots already in the window",
            held
        );
        s.set_window_free(s.window_free() | held);
    }

    /// Allocated slots: the bitmap's count (`Span::allocated`), exact while the window is
    /// committed or freshly loaded.
    ///
    /// # Safety
    /// As for [`OwnedSpan::commit`], and no slot was taken since the last commit or load.
    #[inline]
    pub unsafe fn allocated(self) -> u32 {
        // SAFETY: the caller's cache owns the span, its window committed (# Safety).
        unsafe { self.heap().allocated() }
    }
}

/// Allocates a fresh small-object span of `class` for the collector, with window 0 loaded
/// (every slot free) and sweep generation `sweepgen`. Null when out of memory.
pub fn alloc_small_span(class: SizeClass, kind: ObjectKind, sweepgen: u32) -> *mut Span {
    crate::check!(
        class != SizeClass::LARGE,
        "alloc_small_span: large class",
        class.0
    );
    let spc = SpanClass::new(class, kind != ObjectKind::Scan);
    let s = HEAP.lock().alloc_span(class.npages(), 0, spc);
    if !s.is_null() {
        // SAFETY: a fresh in-use span record, ours alone, not yet published to
        // `find_object` (`claim` does that); its mark bitmap slot has `bitmap_words()`
        // words, which `Span::init_in_use` leaves as the last span there left them.
        unsafe {
            core::ptr::write_bytes((*s).mark_bits.get(), 0, (*s).bitmap_words());
            claim(&*s, kind, sweepgen);
        }
    }
    s.cast()
}

/// Allocates a span holding one large object of `size` bytes aligned to `align` for the
/// collector. Its mark bit is clear. Null when out of memory or the request is impossible.
pub fn alloc_large_span(size: usize, align: usize, kind: ObjectKind, sweepgen: u32) -> *mut Span {
    if size > isize::MAX as usize - PAGE_SIZE || !align.is_power_of_two() || align > 1 << 40 {
        return core::ptr::null_mut();
    }
    let npages = size.max(1).div_ceil(PAGE_SIZE);
    let spc = SpanClass::new(SizeClass::LARGE, kind != ObjectKind::Scan);
    let s = HEAP.lock().alloc_span(npages, align, spc);
    if !s.is_null() {
        // SAFETY: a fresh in-use span record, ours alone; its mark bitmap slot has at
        // least one word (the bitmap slot of its first page).
        unsafe {
            (*s).mark_bits.get().write(0);
            claim(&*s, kind, sweepgen);
        }
    }
    s.cast()
}

/// Marks a fresh span as the collector's. The release store publishes the span's fields
/// to [`find_object`], which reads `gc` with acquire.
fn claim(s: &HeapSpan, kind: ObjectKind, sweepgen: u32) {
    s.sweepgen.store(sweepgen, Ordering::Relaxed);
    s.gc.store(kind as u8, Ordering::Release);
}

/// Returns one of the collector's spans to the page heap.
///
/// # Safety
/// `s` is an in-use span of the collector that no cache, list or live object references.
pub unsafe fn free_span(s: *mut Span) {
    let s = s.cast::<HeapSpan>();
    // SAFETY: `s` is an in-use collector span nothing else references (# Safety): a live
    // record ours alone, as `MHeap::free_span` requires.
    unsafe {
        crate::check!(
            (*s).gc.load(Ordering::Relaxed) != KIND_MALLOC,
            "gcapi::free_span of a malloc span",
            s
        );
        // A sampled object's span: its free is counted, as Go's sweep calls `mProf_Free`.
        if (*s).prof_bucket.get() != 0 {
            crate::profile::freed(&*s);
        }
        (*s).gc.store(KIND_MALLOC, Ordering::Release);
        HEAP.lock().free_span(s);
    }
}

/// Sets gomalloc up (its environment settings, the thread-exit and fork handlers) if no
/// allocation did yet: a program whose global allocator is not `GoMalloc` may use the
/// collector first. False while the set-up runs on this thread.
pub fn ensure_init() -> bool {
    crate::runtime::ensure_init()
}

/// An object of the collector's heap, found from an address.
/// Built only here: by [`find_object`] (checked), [`SlotMap::object`] and [`object_at`]
/// (whose callers vouch for the slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its span.
    span: *mut HeapSpan,
    /// Its slot index in the span (0 for a large object).
    index: usize,
    /// Address of its first byte.
    base: usize,
}

impl ObjectRef {
    /// The span record.
    #[inline]
    pub fn span(&self) -> &'static Span {
        // SAFETY: an `ObjectRef` names a live span record (see its constructors), and span
        // records are never unmapped; `Span` is a transparent wrapper of the record.
        unsafe { &*self.span.cast::<Span>() }
    }

    /// Address of the object's first byte.
    #[inline(always)]
    pub fn base(&self) -> usize {
        self.base
    }

    /// The object's slot index in its span (0 for a large object).
    #[inline(always)]
    pub fn index(&self) -> usize {
        self.index
    }
}

/// What maps an address inside a span to its slot, copied out of the span record: the
/// collector's one-entry span cache while marking (`gc/src/mark.rs`), so a child in its
/// parent's span costs a multiply and a shift, as in `find_object`, with no read of the
/// span record.
#[derive(Clone, Copy, Debug)]
pub struct SlotMap {
    span: *mut HeapSpan,
    base: usize,
    size: usize,
    magic: u32,
}

// SAFETY: the span pointer names a span record, which lives for the whole process and is
// only read through the map; a map may be handed to another marker thread.
unsafe impl Send for SlotMap {}

impl SlotMap {
    /// A map of no span; [`SlotMap::object`] must not be called on it.
    pub const NONE: SlotMap = SlotMap {
        span: core::ptr::null_mut(),
        base: 0,
        size: 0,
        magic: 0,
    };

    /// The map of the in-use span `span` (of the collector or not: only its geometry is
    /// read). A large span has one slot of its whole pages.
    ///
    /// # Safety
    /// `span` is a live span record (from [`span_of`] or the collector's lists) that stays
    /// in use while the map is used.
    #[inline]
    pub unsafe fn of(span: *mut Span) -> SlotMap {
        let span = span.cast::<HeapSpan>();
        // SAFETY: a live span record (# Safety).
        let s = unsafe { &*span };
        let (size, magic) = if s.is_large() {
            (s.npages.get() << PAGE_SHIFT, 0)
        } else {
            (s.elemsize.get() as usize, s.div_magic.get())
        };
        SlotMap {
            span,
            base: s.base.get(),
            size,
            magic,
        }
    }

    /// Bytes per slot (a large span: its pages).
    #[inline(always)]
    pub fn object_size(&self) -> usize {
        self.size
    }

    /// The address of slot `index` (no check that the span has that many).
    #[inline(always)]
    pub fn slot(&self, index: usize) -> usize {
        self.base + index * self.size
    }

    /// The object whose slot holds `addr`.
    ///
    /// # Safety
    /// The map is of a live span that has not been freed since [`SlotMap::of`], and `addr`
    /// lies inside one of its allocated (or just allocated) slots: nothing is checked, as
    /// `find_object` checks it.
    #[inline(always)]
    pub unsafe fn object(&self, addr: usize) -> ObjectRef {
        let index = obj_index(addr - self.base, self.magic);
        ObjectRef {
            span: self.span,
            index,
            base: self.base + index * self.size,
        }
    }
}

/// The object of span `span` whose slot holds `addr`, unchecked (allocating black, where
/// the caller has just allocated it).
///
/// # Safety
/// `span` is a live span record that stays in use while the result is used (as for
/// [`SlotMap::of`]), and `addr` lies inside one of its allocated (or just allocated) slots
/// (as for [`SlotMap::object`]): nothing is checked.
#[inline]
pub unsafe fn object_at(span: *mut Span, addr: usize) -> ObjectRef {
    // SAFETY: `span` is a live, in-use span record and `addr` lies inside one of its
    // allocated slots (# Safety), which is what `SlotMap::of` and `object` require.
    unsafe { SlotMap::of(span).object(addr) }
}

/// A small scan span's grey bitmap and queued word, for the collector's span-queued mark
/// (`GOMALLOC_GCGREENTEA=1`, after Go 1.26's "Green Tea" collector): a marker that greys
/// an object of the span sets the object's bit instead of queueing the object, and queues
/// the span when its queued word was zero; the marker that scans the span clears the word,
/// then takes the bits. The protocol is the collector's (`gc/src/greentea.rs`); this is
/// only the storage.
///
/// The bitmap is the span's remote-free bitmap, which no collector span uses otherwise
/// (remote frees never reach one: this module's doc). The queued word is the last word of
/// the bitmap region the span's pages reserve (`arena::BITMAP_WORDS_PER_PAGE` per page),
/// past the slots' words whenever the span holds fewer than 64 slots per bitmap word it
/// reserves: every span whose objects are 16 bytes or more, which every scan object is
/// (its header word and at least one traced word). Both are zero when a mark ends (each
/// set bit is taken by a scan and each queued span scanned), as a span's remote-free bitmap
/// must be when the span is freed (`Span::init_in_use` checks it).
#[derive(Clone, Copy, Debug)]
pub struct GreyMap {
    bits: *const AtomicU64,
    /// Words of the bitmap region the span's pages reserve; the last is the queued word.
    words: u32,
    /// Words of the slots' bits (`ceil(nelems / 64)`), below `words - 1`.
    slot_words: u32,
}

// SAFETY: the pointer names bitmap words of the arena records, which live for the whole
// process and are only accessed atomically through the map.
unsafe impl Send for GreyMap {}

impl GreyMap {
    /// The map of no span: no bits, and [`GreyMap::queued`] must not be called.
    pub const NONE: GreyMap = GreyMap {
        bits: core::ptr::null(),
        words: 0,
        slot_words: 0,
    };

    /// The grey map of the collector's small span `span`, or `None` if the span is large or
    /// its slots fill its bitmap region to the last word (slots under 16 bytes).
    ///
    /// # Safety
    /// `span` is a live span record of the collector that stays in use while the map is
    /// used (as for [`SlotMap::of`]).
    #[inline]
    pub unsafe fn of(span: *mut Span) -> Option<GreyMap> {
        // SAFETY: a live span record (# Safety).
        let s = unsafe { &*span.cast::<HeapSpan>() };
        let reserved = s.npages.get() * arena::BITMAP_WORDS_PER_PAGE;
        let slot_words = s.bitmap_words();
        if s.is_large() || slot_words >= reserved {
            return None;
        }
        // Both fit in 32 bits: a small span has at most `MAX_OBJS_PER_SPAN` slots and
        // reserves `BITMAP_WORDS_PER_PAGE` words for each of its few pages.
        Some(GreyMap {
            bits: s.xfree_bits.get(),
            words: reserved as u32,
            slot_words: slot_words as u32,
        })
    }

    /// Words of the grey bitmap that hold slots' bits: word `w` of [`GreyMap::word`] is
    /// one for every `w` below this.
    #[inline(always)]
    pub fn slot_words(&self) -> usize {
        self.slot_words as usize
    }

    /// Word `w` of the grey bitmap: the bits of slots `64 * w ..`.
    ///
    /// # Safety
    /// The map is of a live span (# Safety of [`GreyMap::of`]) and `w` is below its
    /// number of bitmap words.
    #[inline(always)]
    pub unsafe fn word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.slot_words as usize && self.slot_words < self.words);
        // SAFETY: `w` lies inside the span's reserved bitmap region (# Safety), words of
        // an arena record that are only ever accessed atomically.
        unsafe { &*self.bits.add(w) }
    }

    /// The span's queued word.
    ///
    /// # Safety
    /// The map is of a live span (# Safety of [`GreyMap::of`]).
    #[inline(always)]
    pub unsafe fn queued(&self) -> &AtomicU64 {
        debug_assert!(self.words > 0);
        // SAFETY: the last word of the span's reserved bitmap region, past its slots'
        // words (`GreyMap::of`), only ever accessed atomically.
        unsafe { &*self.bits.add(self.words as usize - 1) }
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
    let s = arena::span_of(addr);
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
unsafe fn alloc_word(span: &HeapSpan, w: usize) -> &AtomicU64 {
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
unsafe fn mark_word(span: &HeapSpan, index: usize) -> &AtomicU64 {
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
    unsafe { mark_word(obj.span().heap(), obj.index) }.fetch_or(m, Ordering::Relaxed) & m == 0
}

/// True if the object's mark bit is set.
///
/// # Safety
/// As for [`mark`].
#[inline(always)]
pub unsafe fn is_marked(obj: ObjectRef) -> bool {
    let m = 1u64 << (obj.index & 63);
    // SAFETY: `obj` names a slot of a span not swept or freed since (# Safety), so its
    // mark word is live.
    unsafe { mark_word(obj.span().heap(), obj.index) }.load(Ordering::Relaxed) & m != 0
}

/// Sweeps the bitmaps of one of the collector's spans (Go's `mspan.sweep`): calls
/// `on_free(object_address)` for every object allocated but not marked, then makes the
/// mark bitmap the allocation bitmap and clears the mark bitmap.
/// Returns the number of objects still allocated. For a large span: 1 if its object is
/// marked, else 0 after `on_free(base)`; the caller frees the span.
///
/// # Safety
/// The caller owns the span (its central lock, or it claimed the span's sweep), the span
/// is in no cache (its window is committed) and no marker runs.
pub unsafe fn sweep_bitmaps(span: &Span, mut on_free: impl FnMut(usize)) -> u32 {
    let span = span.heap();
    crate::check!(
        span.gc.load(Ordering::Relaxed) != KIND_MALLOC,
        "sweep_bitmaps of a malloc span",
        span as *const HeapSpan as usize
    );
    crate::check!(
        span.window_free() == 0,
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
    if crate::check::ENABLED {
        // The span-queued mark leaves no grey bit and no queued word behind (`GreyMap`):
        // the words are the span's remote-free bitmap, which must be clear when it is
        // freed, whatever class takes its pages next.
        let reserved = span.npages.get() * arena::BITMAP_WORDS_PER_PAGE;
        for i in 0..reserved {
            // SAFETY: `i` is inside the bitmap region the span's pages reserve, words of
            // an arena record only ever accessed atomically.
            let w = unsafe { (*span.xfree_bits.get().add(i)).load(Ordering::Relaxed) };
            crate::check!(w == 0, "grey bit or queued word left after a mark", base);
        }
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
    span.set_window(0);
    if freed_any {
        span.needzero.set(true);
    }
    live
}

/// Calls `f(object address)` for every allocated object of the collector's span `span`
/// (a large span: its one object), in address order.
///
/// # Safety
/// `span` is a live span of the collector whose window is committed and whose allocation
/// bitmap does not change meanwhile (the world is stopped, or the caller owns it).
pub unsafe fn for_each_object(span: &Span, mut f: impl FnMut(usize)) {
    let span = span.heap();
    let base = span.base.get();
    if span.is_large() {
        f(base);
        return;
    }
    let size = span.elemsize.get() as usize;
    for w in 0..span.bitmap_words() {
        // SAFETY: `w < bitmap_words`, a live collector span (# Safety).
        let mut bits = unsafe { alloc_word(span, w) }.load(Ordering::Relaxed);
        while bits != 0 {
            let idx = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            f(base + idx * size);
        }
    }
}

/// Calls `f` for the record of every span the arena map's start-of-span bits
/// (`page_in_use`) name, malloc's and the collector's. Spans created or freed meanwhile may
/// or may not be seen.
fn for_each_span_start(mut f: impl FnMut(*mut HeapSpan)) {
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
                if !s.is_null() {
                    f(s);
                }
            }
        }
    });
}

/// Calls `f` for every in-use span of the collector, found through the arena map's
/// start-of-span bits. Spans created or freed meanwhile may or may not be seen.
pub fn for_each_gc_span(mut f: impl FnMut(*mut Span)) {
    for_each_span_start(|s| {
        // SAFETY: arena-map entries point to live span records (arena invariant 1).
        if unsafe { (*s).gc.load(Ordering::Acquire) } != KIND_MALLOC {
            f(s.cast());
        }
    });
}

/// The slots of word `w` of malloc span `s` that hold allocated blocks: the loaded
/// window's from `window_bits` (`Span::window_free`), the others' from the allocation bitmap,
/// less the slots freed remotely and not yet collected (the remote-free bitmap).
///
/// # Safety
/// `s` is an in-use small malloc span and `w < s.bitmap_words()`. The span's owner (the
/// thread whose cache holds it, or its mcentral) writes `window_bits`, the window and the
/// bitmap without synchronisation: the answer is exact only while that owner is stopped
/// (see [`for_each_malloc_block`]).
unsafe fn malloc_alloc_word(s: &HeapSpan, w: usize) -> u64 {
    let nelems = s.nelems.get();
    let mask = crate::span::window_mask(w as u32 * 64, nelems);
    let bits = if s.in_window(w * 64) {
        mask & !s.window_free()
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
/// pages (a large block's interior too, through [`arena::span_containing`]).
fn malloc_span_of(addr: usize) -> Option<&'static HeapSpan> {
    let s = arena::span_containing(addr);
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
    for_each_span_start(|s| {
        // SAFETY: arena-map entries point to live span records (arena invariant 1).
        let sr = unsafe { &*s };
        if sr.gc.load(Ordering::Acquire) != KIND_MALLOC || sr.state() != SpanState::InUse {
            return;
        }
        let base = sr.base.get();
        if sr.is_large() {
            f(base, sr.usable_size());
            return;
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
        // The interior pages of a large block have no arena-map entry (`Span::ends_only`):
        // found all the same.
        let mid = large as usize + 50_000;
        assert!(crate::arena::span_of(mid).is_null());
        assert_eq!(find_malloc_block(mid).map(|(b, _)| b), Some(large as usize));
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
        let s = alloc_small_span(size_to_class(48), ObjectKind::Scan, 2);
        assert!(!s.is_null());
        // SAFETY: our span; we are its only user.
        let sr = unsafe { &*s };
        // SAFETY: a fresh span, ours alone.
        let cur = unsafe { OwnedSpan::from_raw(s) };
        // SAFETY: we own the span; its window 0 is loaded.
        let (a, b, c) = unsafe {
            let slots = (cur.take_slot(), cur.take_slot(), cur.take_slot());
            cur.commit();
            (slots.0 as usize, slots.1 as usize, slots.2 as usize)
        };
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

    /// The cursor's window protocol: a window's 64 slots, then null; commit counts them;
    /// the next window follows; the span's facts and its objects read back.
    #[test]
    fn owned_span_walks_its_windows() {
        // SAFETY: the empty cursor has no free slot.
        assert!(unsafe { OwnedSpan::EMPTY.take_slot() }.is_null());
        assert!(OwnedSpan::EMPTY.is_empty());
        let class = size_to_class(16);
        let s = alloc_small_span(class, ObjectKind::Noscan, 4);
        assert!(!s.is_null());
        // SAFETY: a fresh span, ours alone.
        let cur = unsafe { OwnedSpan::from_raw(s) };
        let sr = cur.span();
        assert!(!cur.is_empty() && sr.nelems() > 128);
        assert_eq!(
            (sr.kind(), sr.size_class(), sr.object_size()),
            (Some(ObjectKind::Noscan), class, 16)
        );
        assert_eq!(sr.sweepgen().load(Ordering::Relaxed), 4);
        // SAFETY: we own the span; each window is committed before the next is loaded.
        unsafe {
            let first: Vec<usize> = (0..64).map(|_| cur.take_slot() as usize).collect();
            assert!(cur.take_slot().is_null(), "window 0 has 64 slots");
            assert_eq!(first[63], sr.base() + 63 * 16);
            cur.commit();
            assert_eq!(cur.allocated(), 64);
            assert!(cur.reload_next());
            assert_eq!(cur.take_slot() as usize, sr.base() + 64 * 16);
            cur.commit();
            assert_eq!(cur.allocated(), 65);
            let o = object_at(s, first[5] + 3);
            assert_eq!((o.base(), o.index()), (first[5], 5));
            assert_eq!(find_object(first[5] + 3), Some(o));
            let mut n = 0;
            for_each_object(sr, |p| {
                assert_eq!(p, sr.base() + n * 16);
                n += 1;
            });
            assert_eq!(n, 65);
            assert!(cur.reload_from(0), "free slots left in window 64");
            assert_eq!(cur.take_slot() as usize, sr.base() + 65 * 16);
            cur.commit();
            assert_eq!(sweep_bitmaps(sr, |_| {}), 0);
            free_span(s);
        }
    }

    #[test]
    fn large_objects_have_one_mark_bit() {
        let s = alloc_large_span(100 << 10, 8, ObjectKind::Noscan, 0);
        // SAFETY: our span.
        let base = unsafe { (*s).base() };
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
