//! Barriered cells: the only way to change a GC pointer stored in a GC object (design §4).
//!
//! Go's hybrid write barrier (`mbarrier.go`): while a cycle marks concurrently with
//! mutators, a pointer write `*slot = new` first shades the old `*slot` (Yuasa deletion
//! barrier: the snapshot stays reachable) and shades `new` (Dijkstra insertion barrier: a
//! pointer moved from a grey stack into a black object is not lost).

use crate::collector::{SHADE, SHADE_BYTES};
use crate::mark::Tracer;
use crate::mutator::{Mutator, GC_FLAGS, MARKING};
use crate::Trace;
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// Shades everything `v` references: sets mark bits and queues the objects grey.
#[cold]
pub(crate) fn shade<T: Trace + ?Sized>(v: &T) {
    let mut t = Tracer::new();
    v.trace(&mut t);
    SHADE_BYTES.fetch_add(t.marked_bytes, Ordering::Relaxed);
    let mut grey = Vec::new();
    t.take_grey(&mut grey);
    if !grey.is_empty() {
        SHADE.lock().unwrap().extend(grey);
    }
}

/// The write barrier's check: one relaxed load when no cycle is marking.
#[inline(always)]
fn marking() -> bool {
    GC_FLAGS.load(Ordering::Relaxed) & MARKING != 0
}

/// A barriered cell for `Copy` values (typically `Gc<T>` or `Option<Gc<T>>`), in the spirit
/// of gc-arena's `Lock`. Reads need nothing; writes need `&Mutator` and apply the hybrid
/// barrier. A tiny spin lock makes it `Sync` (when `T` is) and lets a concurrent marker
/// read it without a data race.
pub struct Lock<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: every access to `value` happens with `busy` held (acquire/release).
unsafe impl<T: Send + Sync> Sync for Lock<T> {}

impl<T: Copy> Lock<T> {
    /// A new cell.
    pub const fn new(value: T) -> Lock<T> {
        Lock {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held: no other access to `value` exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> T {
        self.with(|v| *v)
    }
}

impl<T: Copy + Trace> Lock<T> {
    /// Stores `value`, shading the old and the new value while a cycle marks.
    #[inline]
    pub fn set(&self, m: &Mutator, value: T) {
        self.replace(m, value);
    }

    /// Stores `value` and returns the old one (with the same barrier as [`Lock::set`]).
    #[inline]
    pub fn replace(&self, m: &Mutator, value: T) -> T {
        let _ = m;
        let old = self.with(|v| std::mem::replace(v, value));
        if marking() {
            shade(&old);
            shade(&value);
        }
        old
    }
}

// SAFETY: traces the value (rule 1), reading it under the cell's lock (so a concurrent
// marker never races a writer).
unsafe impl<T: Copy + Trace> Trace for Lock<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            self.get().trace(t)
        }
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for Lock<T> {
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
/// Barrier: [`RefLock::borrow_mut`] shades everything the value references before handing
/// out `&mut T`, and the [`RefMut`] shades everything it references when dropped.
pub struct RefLock<T> {
    /// > 0: shared borrows; -1: borrowed mutably; 0: free.
    flag: AtomicIsize,
    value: UnsafeCell<T>,
}

// SAFETY: the atomic flag enforces the borrow rules across threads; `T: Sync` for shared
// borrows on several threads, `T: Send` for mutable access from any thread.
unsafe impl<T: Send + Sync> Sync for RefLock<T> {}

impl<T> RefLock<T> {
    /// A new cell.
    pub const fn new(value: T) -> RefLock<T> {
        RefLock {
            flag: AtomicIsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Borrows the value, or `None` if it is borrowed mutably.
    pub fn try_borrow(&self) -> Option<Ref<'_, T>> {
        let mut f = self.flag.load(Ordering::Relaxed);
        loop {
            if f < 0 {
                return None;
            }
            match self
                .flag
                .compare_exchange_weak(f, f + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(Ref { cell: self }),
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
    /// If it is borrowed.
    pub fn borrow_mut<'a>(&'a self, m: &'a Mutator) -> RefMut<'a, T> {
        assert!(
            self.flag
                .compare_exchange(0, -1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            "RefLock already borrowed"
        );
        if T::NEEDS_TRACE {
            m.open_borrow();
            if marking() {
                // SAFETY: we hold the exclusive borrow.
                shade(unsafe { &*self.value.get() });
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

/// A mutable borrow of a [`RefLock`]; shades the new contents when dropped (while a cycle
/// marks).
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
        // SAFETY: as above.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T: Trace> Drop for RefMut<'_, T> {
    fn drop(&mut self) {
        if T::NEEDS_TRACE {
            if marking() {
                shade(&**self);
            }
            self.m.close_borrow();
        }
        self.cell.flag.store(0, Ordering::Release);
    }
}

// SAFETY: traces the value (rule 1) through a shared borrow, so it never reads a value
// that is mutably borrowed. Skipping a mutably borrowed cell is sound (design §8): no cycle
// starts or ends while a `RefMut` of a traced type is alive (its thread does not stop, and
// `collect` and the incremental mode refuse to run on it), so such a borrow was opened
// while marking, when `borrow_mut` shaded the old contents, and its drop shades the new.
unsafe impl<T: Trace> Trace for RefLock<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            match self.try_borrow() {
                Some(v) => v.trace(t),
                None => debug_assert!(marking(), "a RefLock borrowed mutably in a pause"),
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
