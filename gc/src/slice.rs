//! `Gc<[T]>` and `Gc<str>`: slices allocated directly in the GC heap (design §1).
//!
//! A slice object of a kind with a header (elements that are traced or have drop glue) is
//!
//! ```text
//! [&'static VTable][padding][count: AtomicUsize][element 0][element 1]...
//!  ^ object start                               ^ value (OFFSET bytes in)
//! ```
//!
//! `count` is the number of initialised elements, in the word just before the value. The
//! vtable's `trace` and `drop` read it there: they get only the value's address, and the
//! collector knows an object by its address alone. [`Gc::from_fn`] writes the elements in
//! place, one at a time, raising `count` after each (a `Release` store), so a collection
//! that runs while an element is made (the closure may allocate) traces and drops exactly
//! the elements written, and a panicking closure leaves a well-formed object for the sweep.
//! Nothing is built on the stack and moved: a slice of megabytes needs no stack beyond one
//! element. A slice of pointer-free elements without drop glue (and so `Gc<str>`) has no
//! header, like a sized `NOSCAN` object: its value starts at the object start.
//!
//! The `Gc` is a fat pointer (address, length); the address lies inside the object (the
//! object takes at least one byte past `OFFSET`, even when empty or of zero-sized
//! elements), so the conservative scan finds it from that one word, and interior pointers
//! (a `&T` to any element) keep the whole object alive.

use crate::heap::Kind;
use crate::mark::Tracer;
use crate::ptr::{Layout, VTable};
use crate::{Gc, Mutator, Trace};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Compile-time layout of `Gc<[T]>` objects.
pub(crate) struct SliceLayout<T>(PhantomData<T>);

impl<T: Trace> SliceLayout<T> {
    /// The object kind: that of a single `T`.
    pub const KIND: Kind = Layout::<T>::KIND;
    /// Offset of the first element: the vtable and count words, padded to `T`'s alignment;
    /// 0 for a kind without a header.
    pub const OFFSET: usize = if matches!(Self::KIND, Kind::Noscan) {
        0
    } else if std::mem::align_of::<T>() > 16 {
        std::mem::align_of::<T>()
    } else {
        16
    };
    /// Alignment of the object (as for one `T`).
    pub const ALIGN: usize = Layout::<T>::ALIGN;
    /// The slice type's vtable.
    pub const VTABLE: VTable = VTable {
        trace: trace_slice::<T>,
        drop: drop_slice::<T>,
        offset: Self::OFFSET,
        name: std::any::type_name::<[T]>,
    };

    /// Bytes of an object of `len` elements (at least one byte of value: see the module
    /// header).
    ///
    /// # Panics
    /// If the size overflows `isize`.
    fn size(len: usize) -> usize {
        std::mem::size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.max(1).checked_add(Self::OFFSET))
            .filter(|&s| s <= isize::MAX as usize / 2)
            .expect("Gc<[T]>: capacity overflow")
    }
}

/// The initialised-element count of the slice whose value is at `p`.
///
/// # Safety
/// `p` is the value address of a live slice object with a header (kind not `NOSCAN`),
/// and the returned reference is not used after the object is freed.
#[inline(always)]
unsafe fn count<'a>(p: *const u8) -> &'a AtomicUsize {
    // SAFETY: `p` is the value of a live headed slice object (# Safety), so the count word
    // lies just before it, inside the object, 8-aligned (OFFSET is a multiple of 8 and the
    // object at least 8-aligned), and is only ever accessed atomically once written.
    unsafe { &*p.cast::<AtomicUsize>().sub(1) }
}

/// # Safety
/// `p` is the value address of a live slice object of `T` with a header.
unsafe fn trace_slice<T: Trace>(p: *const u8, t: &mut Tracer) {
    // SAFETY: `p` is the value of a live headed slice object of `T` (# Safety), so `count`
    // may read its count word and `p` is aligned for `T`; `Acquire` pairs with `from_fn`'s
    // `Release`: the first `n` elements are written and never written again.
    unsafe {
        let n = count(p).load(Ordering::Acquire);
        std::slice::from_raw_parts(p.cast::<T>(), n).trace(t)
    }
}

/// # Safety
/// `p` is the value address of a live slice object of `T` with a header, owned by the
/// caller (the sweep) and never used again.
unsafe fn drop_slice<T>(p: *mut u8) {
    // SAFETY: `p` is the value of a headed slice object of `T` (# Safety), so `count` may
    // read its count word and `p` is aligned for `T`; the first `count` elements are
    // initialised, and the caller owns the object and never uses it again (# Safety).
    unsafe {
        let n = count(p).load(Ordering::Acquire);
        std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(p.cast::<T>(), n))
    }
}

/// Runs `f` with `gc` rooted: in the precise mode by a handle, in the default mode by the
/// stack (the `Gc` is live until after `f`).
#[inline]
fn rooted<T: ?Sized + Trace, R>(m: &Mutator, gc: Gc<T>, f: impl FnOnce() -> R) -> R {
    if cfg!(feature = "precise") {
        m.scope(|s| {
            s.handle(gc);
            f()
        })
    } else {
        let r = f();
        crate::keep_alive(gc);
        r
    }
}

impl<T: Trace + Send + 'static> Gc<[T]> {
    /// Allocates a slice of `len` elements in the GC heap, element `i` being `f(i)`, written
    /// in place (no copy of the slice passes through the stack). A safepoint; `f` may
    /// allocate (the slice is rooted meanwhile, and a collection sees the elements made so
    /// far). If `f` panics, the elements made so far are dropped by the sweep.
    ///
    #[cfg_attr(not(feature = "precise"), doc = "```")]
    #[cfg_attr(feature = "precise", doc = "```ignore")]
    /// use gc::Gc;
    /// let m = gc::attach();
    /// let squares: Gc<[u64]> = Gc::from_fn(&m, 1 << 20, |i| (i * i) as u64); // 8 MiB
    /// gc::collect();
    /// assert_eq!(squares[1000], 1_000_000);
    /// ```
    ///
    /// # Panics
    /// If the object's size overflows `isize`.
    pub fn from_fn(m: &Mutator, len: usize, mut f: impl FnMut(usize) -> T) -> Gc<[T]> {
        let base = m.alloc_object(
            SliceLayout::<T>::KIND,
            SliceLayout::<T>::size(len),
            SliceLayout::<T>::ALIGN,
        );
        // SAFETY: `base` is a fresh object of `size(len)` bytes aligned to ALIGN: the
        // header words and `len` elements fit at their offsets.
        let value = unsafe { base.add(SliceLayout::<T>::OFFSET) };
        let headed = SliceLayout::<T>::KIND != Kind::Noscan;
        if headed {
            // SAFETY: `base` is a fresh object of `size(len)` bytes aligned to ALIGN, so the
            // vtable word at `base` and the count word just before `value` lie inside it,
            // 8-aligned; nothing can collect before the header is written (no safepoint
            // lies between the allocation and these writes), and the count says no element
            // is initialised yet.
            unsafe {
                base.cast::<&'static VTable>()
                    .write(&const { SliceLayout::<T>::VTABLE });
                value
                    .cast::<AtomicUsize>()
                    .sub(1)
                    .write(AtomicUsize::new(0));
            }
        }
        let elems = value.cast::<T>();
        // SAFETY: `elems` is the value's address inside the object just allocated.
        let gc = unsafe {
            Gc::from_non_null(NonNull::slice_from_raw_parts(
                NonNull::new_unchecked(elems),
                len,
            ))
        };
        rooted(m, gc, || {
            for i in 0..len {
                let v = f(i);
                // SAFETY: element `i` lies in the object; it is written once, before the
                // count publishes it.
                unsafe {
                    elems.add(i).write(v);
                    if headed {
                        count(value).store(i + 1, Ordering::Release);
                    }
                }
            }
        });
        gc
    }

    /// Allocates a copy of `items` in the GC heap (each element cloned in place).
    pub fn from_slice(m: &Mutator, items: &[T]) -> Gc<[T]>
    where
        T: Clone,
    {
        Gc::from_fn(m, items.len(), |i| items[i].clone())
    }

    /// Allocates a slice holding the items of an iterator of known length, in place.
    ///
    /// # Panics
    /// If the iterator yields fewer items than its `len()` said (the items made so far are
    /// dropped by the sweep); items beyond it are not taken.
    pub fn from_iter<I>(m: &Mutator, items: I) -> Gc<[T]>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: ExactSizeIterator,
    {
        let mut it = items.into_iter();
        let len = it.len();
        Gc::from_fn(m, len, |_| {
            it.next()
                .expect("Gc::from_iter: the iterator yielded fewer items than its len()")
        })
    }
}

impl<T: Trace> Deref for Gc<[T]> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.check_live(SliceLayout::<T>::KIND, SliceLayout::<T>::OFFSET);
        // SAFETY: the object is alive while the pointer is rooted (the rooting rule), its
        // `len` elements were initialised by `from_fn` before the `Gc` was returned, and
        // only shared references to them are ever made.
        unsafe { &*Gc::as_ptr(*self) }
    }
}

impl Gc<str> {
    /// Allocates a copy of `s` in the GC heap (a pointer-free object without header; under
    /// 16 bytes it goes to the tiny allocator).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(m: &Mutator, s: &str) -> Gc<str> {
        let bytes = Gc::<[u8]>::from_slice(m, s.as_bytes());
        // SAFETY: the bytes are a copy of a `str`: valid UTF-8, in a live object.
        unsafe { Gc::from_non_null(NonNull::new_unchecked(Gc::as_ptr(bytes) as *mut str)) }
    }

    /// The string's bytes, the same object.
    pub fn as_bytes(this: Gc<str>) -> Gc<[u8]> {
        // SAFETY: the same object seen as its bytes (a `str` is its UTF-8 bytes).
        unsafe { Gc::from_non_null(NonNull::new_unchecked(Gc::as_ptr(this) as *mut [u8])) }
    }
}

impl Deref for Gc<str> {
    type Target = str;
    #[inline(always)]
    fn deref(&self) -> &str {
        // SAFETY: a rooted object (the rooting rule) holding UTF-8 bytes written by
        // `from_str` before the `Gc` was returned; only shared references are made.
        unsafe { &*Gc::as_ptr(*self) }
    }
}
