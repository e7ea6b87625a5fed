//! `GcVec<T>`: a growable vector whose storage is a GC slice (design §1, §4).
//!
//! The vector is a value (a field of a traced struct, `#[derive(Trace)]`) holding a
//! `Gc<[Lock<Option<T>>]>` backing slice and a length. Every element write goes through a
//! [`Lock`], so it applies the write barrier; the collector traces the whole backing slice
//! (slots past the length hold `None`). Growing allocates a slice of twice the capacity,
//! copies the elements into it, shades them while a cycle marks (they now sit in an
//! object allocated black), and swaps the backing slice through its `Lock` (which shades
//! the old and the new slice). Slices only grow: a reader that saw a length `n` finds at
//! least `n` slots in whatever backing slice it loads next.
//!
//! Concurrent writers (`push`, `pop`, `set`, `clear` from several threads on one shared
//! vector) take turns on a spin flag; a waiter reaches a safepoint on every spin, so a
//! writer that stops for a collection while it holds the flag does not hold up the world.
//! Readers take no flag: they read the length and the slots atomically (a `Lock`), which is
//! also what makes the vector safe for a marker running concurrently with its owner (§8).

use crate::cell::{marking, shade};
use crate::mark::Tracer;
use crate::{Gc, Lock, Mutator, Trace};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One element slot of the backing slice: `None` past the length.
type Slot<T> = Lock<Option<T>>;

/// A growable vector of `Copy` values (typically `Gc<U>`) stored in the GC heap.
///
/// Use it, not a `std::vec::Vec`, to keep GC pointers in a collection: a `Vec<Gc<U>>`
/// inside a GC object is traced but cannot change after construction (the collector never
/// sees a `&mut`), and a `Vec<Gc<U>>` anywhere else is not a root at all (the rooting rule,
/// `docs/gc-design.md` §2). A `GcVec` lives inside a GC object (or in a `Root`/`Local`
/// held object), and its methods take `&self`: writes take `&Mutator` for the barrier.
///
#[cfg_attr(not(feature = "precise"), doc = "```")]
#[cfg_attr(feature = "precise", doc = "```ignore")]
/// use gc::{Gc, GcVec, Trace};
///
/// #[derive(Trace)]
/// struct Graph {
///     nodes: GcVec<Gc<u64>>,
/// }
///
/// let m = gc::attach();
/// let g = Gc::new(&m, Graph { nodes: GcVec::new() });
/// for i in 0..1000 {
///     let n = Gc::new(&m, i);
///     g.nodes.push(&m, n);
/// }
/// gc::collect();
/// assert_eq!(g.nodes.len(), 1000);
/// assert_eq!(*g.nodes.get(999).unwrap(), 999);
/// ```
pub struct GcVec<T: Copy + Trace + Send + Sync + 'static> {
    /// Held by the one writer at a time.
    busy: AtomicBool,
    /// Elements in use: slots `[0, len)` of `buf` hold `Some`.
    len: AtomicUsize,
    /// The backing slice; `None` until the first push.
    buf: Lock<Option<Gc<[Slot<T>]>>>,
}

/// Releases the writer flag on drop (also when a write panics).
struct Writing<'a>(&'a AtomicBool);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<T: Copy + Trace + Send + Sync + 'static> GcVec<T> {
    /// An empty vector; allocates nothing.
    pub const fn new() -> GcVec<T> {
        GcVec {
            busy: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            buf: Lock::new(None),
        }
    }

    /// An empty vector with room for `cap` elements. A safepoint. In the precise mode, the
    /// vector must reach a rooted object before the next safepoint (as any `Gc` made and
    /// not yet stored).
    pub fn with_capacity(m: &Mutator, cap: usize) -> GcVec<T> {
        let v = GcVec::new();
        if cap > 0 {
            let b: Gc<[Slot<T>]> = Gc::from_fn(m, cap, |_| Lock::new(None));
            v.buf.set(m, Some(b));
        }
        v
    }

    /// Elements in use.
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True if there are no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements the backing slice holds without growing.
    pub fn capacity(&self) -> usize {
        self.buf.get().map_or(0, |b| b.len())
    }

    /// Element `i`, or `None` past the end (or when another thread pops it meanwhile).
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        // The length was read first: the slice loaded now has at least `i + 1` slots.
        self.buf.get().and_then(|b| b[i].get())
    }

    /// The last element.
    pub fn last(&self) -> Option<T> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Takes the writer flag, reaching a safepoint while another writer holds it.
    fn write<'a>(&'a self, m: &Mutator) -> Writing<'a> {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            m.safepoint();
            std::thread::yield_now();
        }
        Writing(&self.busy)
    }

    /// Replaces element `i` (through the barrier).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn set(&self, m: &Mutator, i: usize, value: T) {
        let _w = self.write(m);
        let len = self.len.load(Ordering::Relaxed);
        assert!(i < len, "GcVec::set: index {i} out of bounds (len {len})");
        self.buf
            .get()
            .expect("a non-empty GcVec has a backing slice")[i]
            .set(m, Some(value));
    }

    /// Appends `value`, growing the backing slice (twice the capacity, at least 4) when it
    /// is full. A safepoint when it grows.
    pub fn push(&self, m: &Mutator, value: T) {
        let _w = self.write(m);
        let len = self.len.load(Ordering::Relaxed);
        let buf = match self.buf.get() {
            Some(b) if b.len() > len => b,
            old => self.grow(m, old, len),
        };
        buf[len].set(m, Some(value));
        self.len.store(len + 1, Ordering::Release);
    }

    /// A new backing slice holding the `len` elements of `old`, installed (writer flag
    /// held).
    #[cold]
    fn grow(&self, m: &Mutator, old: Option<Gc<[Slot<T>]>>, len: usize) -> Gc<[Slot<T>]> {
        let cap = old.map_or(0, |b| b.len());
        let new_cap = cap.checked_mul(2).expect("GcVec: capacity overflow").max(4);
        // `old` stays reachable from `self.buf` while `from_fn` allocates (a safepoint).
        let new: Gc<[Slot<T>]> = Gc::from_fn(m, new_cap, |i| match old {
            Some(b) if i < len => Lock::new(b[i].get()),
            _ => Lock::new(None),
        });
        if marking() {
            // The new slice was allocated black: the elements copied into it would not
            // be traced through it (insertion half of the barrier). They are reachable
            // through the old slice too, which the `set` below shades, but shading them
            // here keeps the rule local: a write into a black object shades the value.
            shade(m, &*new);
        }
        self.buf.set(m, Some(new));
        new
    }

    /// Removes and returns the last element (its slot is cleared through the barrier).
    pub fn pop(&self, m: &Mutator) -> Option<T> {
        let _w = self.write(m);
        let len = self.len.load(Ordering::Relaxed);
        if len == 0 {
            return None;
        }
        let buf = self
            .buf
            .get()
            .expect("a non-empty GcVec has a backing slice");
        let v = buf[len - 1].replace(m, None);
        self.len.store(len - 1, Ordering::Release);
        v
    }

    /// Removes every element (clearing their slots through the barrier); keeps the
    /// capacity.
    pub fn clear(&self, m: &Mutator) {
        let _w = self.write(m);
        let len = self.len.load(Ordering::Relaxed);
        self.len.store(0, Ordering::Release);
        if let Some(buf) = self.buf.get() {
            for slot in &buf[..len] {
                slot.set(m, None);
            }
        }
    }

    /// The elements, in order. Reads the length and the backing slice once, at the start:
    /// elements pushed meanwhile are not seen; a slot popped meanwhile ends the iteration.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        let len = self.len();
        let buf = self.buf.get();
        (0..len).map_while(move |i| buf.and_then(|b| b[i].get()))
    }

    /// A `std::vec::Vec` copy of the elements (for reading; a `Vec` of `Gc`s is not a
    /// root: hold it only between safepoints, or root what it holds).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }
}

impl<T: Copy + Trace + Send + Sync + 'static> Default for GcVec<T> {
    fn default() -> Self {
        GcVec::new()
    }
}

// SAFETY: traces the backing slice (rule 1), which traces its slots; `NEEDS_TRACE` is true
// even for pointer-free `T` because the backing slice itself is a GC object. The slice
// pointer is read through its `Lock` (atomically or under its stripe lock), never racing a
// writer. Slots change only through `Lock::set`/`replace` (rule 4).
unsafe impl<T: Copy + Trace + Send + Sync + 'static> Trace for GcVec<T> {
    fn trace(&self, t: &mut Tracer) {
        self.buf.trace(t)
    }
}

impl<T: Copy + Trace + Send + Sync + fmt::Debug + 'static> fmt::Debug for GcVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
