//! Barriered cells: the only way to change a GC pointer stored in a GC object (design §4).
//!
//! Go's hybrid write barrier (`mbarrier.go`): while a cycle marks concurrently with
//! mutators, a pointer write `*slot = new` first shades the old `*slot` (Yuasa deletion
//! barrier: the snapshot stays reachable) and shades `new` (Dijkstra insertion barrier: a
//! pointer moved from a grey stack into a black object is not lost).

use crate::Trace;
use crate::collector::SHADE_BYTES;
use crate::mark::Tracer;
use crate::mutator::{GC_FLAGS, MARKING, Mutator};
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, Ordering};

/// Addresses a thread's barrier buffer holds before it is flushed to the collector's
/// shared grey list (`collector::SHADE`).
pub(crate) const BARRIER_BUF: usize = 256;

/// Shades everything `v` references: sets mark bits and queues the objects grey in the
/// mutator's barrier buffer, which goes to the collector's shared grey list (one lock
/// round) when it holds [`BARRIER_BUF`] addresses and whenever the thread stops
/// (`Mutator::flush_barrier`).
#[cold]
pub(crate) fn shade<T: Trace + ?Sized>(m: &Mutator, v: &T) {
    shade_values(m, Some(v), None);
}

/// [`shade`] of `a` and `b`, those that are present, with one tracer: a pointer write's
/// old and new values.
#[cold]
fn shade_values<T: Trace + ?Sized>(m: &Mutator, a: Option<&T>, b: Option<&T>) {
    if crate::debug::BARRIER_BROKEN.load(Ordering::Relaxed) {
        return;
    }
    let mut t = Tracer::for_barrier();
    for v in [a, b].into_iter().flatten() {
        v.trace(&mut t);
    }
    // What a store shades is usually marked already (objects allocated while marking
    // are black): then the shared counter is not touched.
    if t.marked_bytes != 0 {
        SHADE_BYTES.fetch_add(t.marked_bytes, Ordering::Relaxed);
    }
    if m.buffer_grey(&mut t) >= BARRIER_BUF {
        m.flush_barrier();
    }
}

/// True when shading a word cell's value `w` would do nothing: `w` is null, or it points
/// into an object marked already. A word value is a `Gc` in disguise (`ATOMIC_WORD`'s
/// rule): null holds no GC pointer, and tracing any other word greys exactly the object it
/// points into. What a store shades is usually marked (objects allocated while marking
/// are black), and this test is a walk of the arena map and a bit test, where a trace
/// sets up a tracer and a span cache.
///
/// Called only while a cycle marks, from a mutator that is not at a safepoint, so no span
/// is swept meanwhile (sweeping waits for the mark's end, which stops every mutator).
#[inline(always)]
fn shaded_already(w: *mut u8) -> bool {
    if w.is_null() {
        return true;
    }
    let addr = w as usize;
    let span = gomalloc::gcapi::span_of(addr);
    debug_assert!(!span.is_null(), "Gc {addr:#x} outside the heap");
    // SAFETY: a non-null word of a word cell is a `Gc` (`ATOMIC_WORD`), which points into
    // an allocated object of an in-use GC span (the rooting rule: the old value was
    // reachable from the cell, the new one is held by this thread), and no span is swept
    // while the cycle marks (above): what `object_at` and `is_marked` require.
    unsafe { gomalloc::gcapi::is_marked(gomalloc::gcapi::object_at(span, addr)) }
}

/// Queues the scan object at `base`, marked already, for one more scan (`RefLock`'s
/// insertion half): into the mutator's barrier buffer, flushed as [`shade`]'s is.
#[cold]
fn rescan(m: &Mutator, base: usize) {
    if crate::debug::BARRIER_BROKEN.load(Ordering::Relaxed) {
        return;
    }
    if m.buffer_rescan(base) >= BARRIER_BUF {
        m.flush_barrier();
    }
}

/// The write barrier's check: one relaxed load when no cycle is marking.
#[inline(always)]
pub(crate) fn marking() -> bool {
    GC_FLAGS.load(Ordering::Relaxed) & MARKING != 0
}

/// Marks begun so far: the number of the one running while [`marking`] is true. It changes
/// only with the world stopped, just before the marking flag is set
/// ([`begin_marking`]), so a mutator that sees the flag reads the current number.
static MARK_CYCLE: AtomicU64 = AtomicU64::new(0);

/// Numbers the new mark and turns the barrier on. Called with the world stopped.
pub(crate) fn begin_marking() {
    MARK_CYCLE.fetch_add(1, Ordering::Relaxed);
    GC_FLAGS.fetch_or(MARKING, Ordering::SeqCst);
}

/// The number of the running mark (see [`MARK_CYCLE`]; at least 1 while [`marking`]).
#[inline]
fn mark_cycle() -> u64 {
    MARK_CYCLE.load(Ordering::Relaxed)
}

/// A barriered cell for `Copy` values (typically `Gc<T>` or `Option<Gc<T>>`), in the spirit
/// of gc-arena's `Lock`. Reads need nothing; writes need `&Mutator` and apply the hybrid
/// barrier. `Sync` when `T` is, and readable by a concurrent marker without a data race:
///
/// * a pointer-sized `T` that says so ([`Trace::ATOMIC_WORD`]: `Gc<U>`, `Option<Gc<U>>`)
///   is stored as an atomic word: a read is one load, a write one store; the cell is
///   exactly as big as `T`;
/// * any other `T` is read and written under one of 64 global stripe spin locks chosen
///   by the cell's address (crossbeam's `AtomicCell` does the same), so the cell still
///   takes no more room than `T`.
#[repr(transparent)]
pub struct Lock<T> {
    value: UnsafeCell<T>,
}

// SAFETY: every access to `value` is atomic (word cells) or happens with the cell's stripe
// lock held (acquire/release): no data race. `T: Send` because any thread may write it,
// `T: Sync` because any thread may read it.
unsafe impl<T: Send + Sync> Sync for Lock<T> {}

/// Number of global stripe locks serialising the non-word [`Lock`] cells.
const STRIPES: usize = 64;

/// The stripe locks of non-word cells (test-and-test-and-set spin locks; a critical section
/// is one copy of a `T`).
static STRIPE_LOCKS: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

impl<T: Copy> Lock<T> {
    /// A new cell.
    pub const fn new(value: T) -> Lock<T> {
        Lock {
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: Copy + Trace> Lock<T> {
    /// True when the cell is used as an atomic word (checked at compile time per `T`).
    const WORD: bool = T::ATOMIC_WORD
        && std::mem::size_of::<T>() == std::mem::size_of::<*mut u8>()
        && std::mem::align_of::<T>() == std::mem::align_of::<*mut u8>();

    /// The cell as an atomic pointer (word cells only).
    #[inline(always)]
    fn word(&self) -> &AtomicPtr<u8> {
        debug_assert!(Self::WORD);
        // SAFETY: `WORD`: `T` has the size and alignment of a pointer, so the cell is a
        // valid, aligned `AtomicPtr` location; every access to it goes through this atomic
        // view once the cell is shared (`new` wrote it before anyone could see it).
        unsafe { AtomicPtr::from_ptr(self.value.get().cast::<*mut u8>()) }
    }

    /// Runs `f` on the value with the cell's stripe lock held (non-word cells).
    #[inline(always)]
    fn with_stripe<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let lock = &STRIPE_LOCKS[(self.value.get() as usize >> 3) % STRIPES];
        while lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while lock.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        // SAFETY: the stripe lock is held: every other access to `value` waits for it.
        // `f` (a copy or a swap of a `Copy` value) takes no other stripe lock.
        let r = f(unsafe { &mut *self.value.get() });
        lock.store(false, Ordering::Release);
        r
    }

    /// The current value.
    #[inline(always)]
    pub fn get(&self) -> T {
        if Self::WORD {
            // SAFETY: the word was stored from a valid `T` (`new`, `set` or `replace`), and
            // `ATOMIC_WORD` promises every byte of a `T` is initialised: the bits are a `T`.
            unsafe { Self::from_word(self.word().load(Ordering::Acquire)) }
        } else {
            self.with_stripe(|v| *v)
        }
    }

    /// Stores `value`, shading the old and the new value while a cycle marks.
    #[inline]
    pub fn set(&self, m: &Mutator, value: T) {
        if Self::WORD && !marking() {
            // No barrier to apply, so the old value is not needed: one store. (The
            // marking flag changes only while every mutator is stopped, never between
            // this check and the store.)
            let _ = m;
            self.word().store(Self::to_word(value), Ordering::Release);
        } else {
            self.set_barriered(m, value);
        }
    }

    /// [`Lock::set`] with its barrier, out of line: nothing is live across the call, so
    /// the caller of `set` keeps no register for it.
    #[inline(never)]
    fn set_barriered(&self, m: &Mutator, value: T) {
        self.replace(m, value);
    }

    /// Stores `value` and returns the old one (with the same barrier as [`Lock::set`]).
    #[inline]
    pub fn replace(&self, m: &Mutator, value: T) -> T {
        if Self::WORD {
            let new = Self::to_word(value);
            let old = self.word().swap(new, Ordering::AcqRel);
            if marking() {
                Self::shade_words(m, old, new);
            }
            // SAFETY: the word was stored from a valid `T` (`new`, `set` or `replace`), and
            // `ATOMIC_WORD` promises every byte of a `T` is initialised: the bits are a `T`.
            unsafe { Self::from_word(old) }
        } else {
            let old = self.with_stripe(|v| std::mem::replace(v, value));
            if marking() {
                shade_values(m, Some(&old), Some(&value));
            }
            old
        }
    }

    /// The barrier of a word cell's store of `new` over `old`, while a cycle marks: shades
    /// the values whose objects are not marked already. Out of line, so that a store made
    /// while no cycle marks stays a few instructions wherever it is inlined.
    #[inline(never)]
    fn shade_words(m: &Mutator, old: *mut u8, new: *mut u8) {
        let (old_done, new_done) = (shaded_already(old), shaded_already(new));
        if old_done && new_done {
            return;
        }
        // SAFETY: both words were stored from valid `T`s (`new`, `set` or `replace`), and
        // `ATOMIC_WORD` promises every byte of a `T` is initialised: the bits are `T`s.
        let (old, new) = unsafe { (Self::from_word(old), Self::from_word(new)) };
        shade_values(m, (!old_done).then_some(&old), (!new_done).then_some(&new));
    }

    /// A word cell's value as the word stored.
    #[inline(always)]
    fn to_word(value: T) -> *mut u8 {
        debug_assert!(Self::WORD);
        // SAFETY: `WORD`: `T` is pointer-sized and fully initialised (`ATOMIC_WORD`).
        unsafe { std::mem::transmute_copy::<T, *mut u8>(&value) }
    }

    /// # Safety
    /// `w` came from [`Lock::to_word`] (of this `T`).
    #[inline(always)]
    unsafe fn from_word(w: *mut u8) -> T {
        // SAFETY: `w` came from `to_word` of a `T` (# Safety), so its bits are those of a
        // valid, fully initialised `T` of the same size (`WORD`).
        unsafe { std::mem::transmute_copy::<*mut u8, T>(&w) }
    }
}

// SAFETY: traces the value (rule 1), reading it atomically or under the cell's stripe lock
// (so a concurrent marker never races a writer).
unsafe impl<T: Copy + Trace> Trace for Lock<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    #[inline(always)]
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            self.get().trace(t)
        }
    }
}

impl<T: Copy + Trace + fmt::Debug> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lock").field(&self.get()).finish()
    }
}

impl<T: Copy + Default> Default for Lock<T> {
    fn default() -> Self {
        Lock::new(T::default())
    }
}

/// A barriered `RefCell` (gc-arena's `RefLock`): shared borrows need nothing, a mutable
/// borrow needs `&Mutator`. The borrow flag is atomic, so it is `Sync` when `T` is;
/// conflicting borrows panic, on any thread, like `RefCell`'s.
///
/// Barrier, while a cycle marks (design §4), at a cost that does not grow with the number
/// of borrows:
/// - deletion half: the first [`RefLock::borrow_mut`] of the mark shades everything the
///   value references; the later ones of the same mark need not, since the value's
///   references as of the mark's start are all shaded then;
/// - insertion half: dropping the [`RefMut`] queues the GC object holding the cell for one
///   more scan (a backward barrier, as gc-arena's), unless a scan queued by an earlier
///   drop is still to come. A cell outside the GC heap has no object to queue: its drop
///   shades everything the value references.
pub struct RefLock<T> {
    /// -1: borrowed mutably; 0: free; otherwise `users + markers * MARKER_BORROW`, the
    /// shared borrows of the program and of the collector's markers (which trace the value
    /// while mutators run: a `borrow_mut` waits for those, and panics only on the
    /// program's own borrows).
    flag: AtomicIsize,
    /// The mark ([`MARK_CYCLE`]) whose first `borrow_mut` shaded the value's references,
    /// 0 for none. Read and written only under the exclusive borrow.
    shaded_in: AtomicU64,
    /// The mark in which a `RefMut`'s drop queued the holding object for a scan that has
    /// not read the value yet; 0 when none is due. A tracer clears it before it reads the
    /// value ([`RefLock::trace`]), so a drop after that queues another scan.
    rescan_in: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: the atomic flag enforces the borrow rules across threads; `T: Sync` for shared
// borrows on several threads, `T: Send` for mutable access from any thread.
unsafe impl<T: Send + Sync> Sync for RefLock<T> {}

/// What a marker's shared borrow adds to a [`RefLock`]'s flag: more than the program's
/// shared borrows can ever count.
const MARKER_BORROW: isize = 1 << 40;

impl<T> RefLock<T> {
    /// A new cell.
    pub const fn new(value: T) -> RefLock<T> {
        RefLock {
            flag: AtomicIsize::new(0),
            shaded_in: AtomicU64::new(0),
            rescan_in: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Borrows the value, or `None` if it is borrowed mutably.
    pub fn try_borrow(&self) -> Option<Ref<'_, T>> {
        self.try_add_shared(1).then_some(Ref { cell: self })
    }

    /// Adds `n` to the count of shared borrows unless the value is borrowed mutably.
    fn try_add_shared(&self, n: isize) -> bool {
        let mut f = self.flag.load(Ordering::Relaxed);
        loop {
            if f < 0 {
                return false;
            }
            match self
                .flag
                .compare_exchange_weak(f, f + n, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => f = x,
            }
        }
    }

    /// Borrows the value.
    ///
    /// # Panics
    /// If it is borrowed mutably.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.try_borrow().expect("RefLock already mutably borrowed")
    }
}

impl<T: Trace> RefLock<T> {
    /// Borrows the value mutably, applying the barrier.
    ///
    /// While a `RefMut` of a type holding GC pointers is alive, its thread does not stop
    /// for collections (its safepoints let the world wait, and [`crate::collect`] on it
    /// panics): the collector never reads a value that is mutably borrowed. Keep such
    /// borrows short.
    ///
    /// # Panics
    /// If the program holds a borrow of it (a concurrent marker's borrow, which lasts one
    /// trace of the value, is waited for).
    pub fn borrow_mut<'a>(&'a self, m: &'a Mutator) -> RefMut<'a, T> {
        loop {
            match self
                .flag
                .compare_exchange_weak(0, -1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                // Only markers read it (a trace is short and takes no lock): wait.
                Err(f) if f >= 0 && f % MARKER_BORROW == 0 => std::hint::spin_loop(),
                Err(_) => panic!("RefLock already borrowed"),
            }
        }
        if T::NEEDS_TRACE {
            m.open_borrow();
            if marking() {
                // The deletion half, once per mark: until this mark's first `borrow_mut`
                // the value is what it was when the mark began (no `RefMut` is open across
                // a mark's start: §3), so shading it then shades every reference of the
                // snapshot, and what later borrows delete was either shaded then or
                // stored since, which the snapshot does not need.
                let cycle = mark_cycle();
                if self.shaded_in.load(Ordering::Relaxed) != cycle {
                    // SAFETY: we hold the exclusive borrow.
                    shade(m, unsafe { &*self.value.get() });
                    self.shaded_in.store(cycle, Ordering::Relaxed);
                }
            }
        }
        RefMut { cell: self, m }
    }
}

/// A shared borrow of a [`RefLock`].
pub struct Ref<'a, T> {
    cell: &'a RefLock<T>,
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the flag counts this shared borrow: no mutable borrow exists.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> Drop for Ref<'_, T> {
    fn drop(&mut self) {
        self.cell.flag.fetch_sub(1, Ordering::Release);
    }
}

/// A mutable borrow of a [`RefLock`]; when dropped while a cycle marks, queues the object
/// holding the cell for another scan (the insertion half of the cell's barrier).
pub struct RefMut<'a, T: Trace> {
    cell: &'a RefLock<T>,
    m: &'a Mutator,
}

impl<T: Trace> Deref for RefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the flag holds the exclusive borrow for this guard.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T: Trace> DerefMut for RefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the flag holds the exclusive borrow for this guard, and `&mut self` makes
        // this the guard's only live reference to the value.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T: Trace> Drop for RefMut<'_, T> {
    fn drop(&mut self) {
        // The insertion half, while a cycle marks: the object holding the cell is scanned
        // again, after this borrow ends. Outside the GC heap (a cell in a `Box`, on the
        // stack) there is no such object, and the new contents are shaded now instead.
        let holder = if T::NEEDS_TRACE && marking() {
            let o = gomalloc::gcapi::find_object(self.cell as *const RefLock<T> as usize);
            if o.is_none() {
                shade(self.m, &**self);
            }
            o
        } else {
            None
        };
        if T::NEEDS_TRACE {
            self.m.close_borrow();
        }
        // Release the borrow first, then queue (both orders matter): a tracer clears
        // `rescan_in` before it borrows the value (`RefLock::trace`). Either that clear
        // comes after this swap, which it then synchronises with, so the tracer's borrow
        // sees this release and reads the new contents; or the swap reads the clear and
        // queues a scan that will.
        self.cell.flag.store(0, Ordering::Release);
        if let Some(o) = holder {
            let cycle = mark_cycle();
            if self.cell.rescan_in.swap(cycle, Ordering::AcqRel) != cycle {
                rescan(self.m, o.base());
            }
        }
    }
}

// SAFETY: traces the value (rule 1) through a shared borrow, so it never reads a value
// that is mutably borrowed. Skipping a mutably borrowed cell is sound (design §8): no cycle
// starts or ends while a `RefMut` of a traced type is alive (its thread does not stop, and
// `collect` and the incremental mode refuse to run on it), so such a borrow was opened
// while marking: the mark's first `borrow_mut` shaded the contents the mark began with,
// and the borrow's drop queues another scan of the holding object (or, outside the GC
// heap, shades the new contents).
unsafe impl<T: Trace> Trace for RefLock<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            // The scan a `RefMut`'s drop queued, if any, is this one: a drop from now on
            // queues another (the ordering argument is at `RefMut::drop`).
            if self.rescan_in.load(Ordering::Relaxed) != 0 {
                self.rescan_in.swap(0, Ordering::AcqRel);
            }
            if self.try_add_shared(MARKER_BORROW) {
                // SAFETY: the flag counts this marker's shared borrow: no mutable borrow
                // exists until it is taken back below.
                unsafe { &*self.value.get() }.trace(t);
                self.flag.fetch_sub(MARKER_BORROW, Ordering::Release);
            } else {
                debug_assert!(marking(), "a RefLock borrowed mutably in a pause");
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RefLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_borrow() {
            Some(v) => f.debug_tuple("RefLock").field(&*v).finish(),
            None => f.write_str("RefLock(<borrowed>)"),
        }
    }
}

impl<T: Default> Default for RefLock<T> {
    fn default() -> Self {
        RefLock::new(T::default())
    }
}
