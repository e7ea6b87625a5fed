//! The `Trace` trait: how the collector finds the GC pointers inside a value, and its impls
//! for std types.

use crate::mark::Tracer;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

/// A type whose GC pointers the collector can find.
///
/// Use `#[derive(Trace)]`; write an impl by hand only for a type the derive cannot handle.
///
/// # Safety
///
/// An implementation promises:
///
/// 1. `trace` calls [`Trace::trace`] on every [`Gc`](crate::Gc), [`Lock`](crate::Lock),
///    [`RefLock`](crate::RefLock) or other `Trace` value that `self` owns and through which a
///    GC pointer can be reached. Missing one lets the collector free a reachable object.
/// 2. `NEEDS_TRACE` is `false` only if no value of the type can ever hold a GC pointer;
///    such values are placed in noscan spans and never traced.
/// 3. `trace` does not allocate GC objects, write barriered cells, create or drop
///    [`Root`](crate::Root)s, or otherwise call into the collector except through the
///    `Tracer` it is given; it does not panic; it may run on any thread, at any safepoint
///    of any mutator (so it reads only what it could read through `&self`).
/// 4. GC pointers held by the type can only change through `Lock`/`RefLock` (which apply
///    the write barrier), never through `Cell`, `RefCell`, `UnsafeCell`, atomics or
///    locks: a pointer written behind the collector's back during marking may be lost.
/// 5. The type's destructor (if any) does not dereference GC pointers: objects are swept in
///    no particular order, so the target may already be freed. (`#[derive(Trace)]`
///    forbids `Drop` impls unless `#[gc(unsafe_drop)]`.)
/// 6. `ATOMIC_WORD` is `true` only if every value of the type is one fully initialised,
///    pointer-sized word (no padding, no uninitialised bytes, no `union`), so that
///    [`Lock`](crate::Lock) may store it in an `AtomicPtr` and copy its bits back out; and
///    its only niche, if it has one, is the null word (as for `NonNull`), so that
///    `Option<Self>`, when it is one word, is one initialised word too; and the type is a
///    `Gc` in disguise: a value whose word is null, if there is one, holds no GC pointer,
///    and tracing any other value greys exactly the object its word points into, as
///    `Gc::trace` does (the write barrier of [`Lock`](crate::Lock) tests that object's mark
///    bit instead of tracing the value). Leave it `false` (the default) unless the type is
///    a `Gc` in disguise.
pub unsafe trait Trace {
    /// False if values of this type never hold GC pointers (see rule 2).
    const NEEDS_TRACE: bool = true;

    /// True if a value is exactly one initialised pointer-sized word (see rule 6):
    /// [`Lock`](crate::Lock) then reads and writes it with single atomic instructions.
    /// `Gc<T>` and `Option<Gc<T>>` say so.
    const ATOMIC_WORD: bool = false;

    /// Reports every GC pointer owned by `self` to `t` (see rule 1).
    fn trace(&self, t: &mut Tracer);
}

/// Marker for types that can never hold a GC pointer: the only types allowed inside
/// `Cell`, `RefCell`, `Mutex`, `RwLock`, `OnceCell`, `Rc` and `Arc` fields of GC objects.
///
/// # Safety
/// The type holds no `Gc`, `Weak`, `Lock` or `RefLock`, directly or indirectly, and its
/// `Trace` impl has `NEEDS_TRACE == false`.
pub unsafe trait Untraced: Trace {}

macro_rules! untraced {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: holds no GC pointer (rules 1-2).
        unsafe impl Trace for $t {
            const NEEDS_TRACE: bool = false;
            #[inline(always)]
            fn trace(&self, _: &mut Tracer) {}
        }
        // SAFETY: holds no `Gc`, `Weak`, `Lock` or `RefLock`, and its `Trace` impl just above
        // has `NEEDS_TRACE == false`.
        unsafe impl Untraced for $t {}
    )*};
}

untraced!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    str,
    std::path::PathBuf,
    std::time::Duration,
    std::time::Instant,
    std::num::NonZeroUsize,
    std::num::NonZeroU64,
    std::num::NonZeroU32,
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicIsize,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicU8,
);

// SAFETY: holds no GC pointer.
unsafe impl<T: ?Sized> Trace for PhantomData<T> {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer) {}
}
// SAFETY: a `PhantomData` holds no value, so no GC pointer, and its `Trace` impl just above
// has `NEEDS_TRACE == false`.
unsafe impl<T: ?Sized> Untraced for PhantomData<T> {}

/// Containers whose elements are traced in turn: `NEEDS_TRACE` iff the element's.
macro_rules! container {
    ($(impl<$($g:ident),*> for $t:ty => |$s:ident, $tr:ident| $body:expr, needs: $needs:expr;)*) => {$(
        // SAFETY: traces every element (rule 1); needs tracing iff an element type does.
        unsafe impl<$($g: Trace),*> Trace for $t {
            const NEEDS_TRACE: bool = $needs;
            #[inline]
            fn trace(&self, $tr: &mut Tracer) {
                if Self::NEEDS_TRACE {
                    let $s = self;
                    $body
                }
            }
        }
        // SAFETY: no GC pointer if no element type holds one.
        unsafe impl<$($g: Untraced),*> Untraced for $t {}
    )*};
}

// SAFETY: traces the value if there is one (rule 1). `ATOMIC_WORD` (rule 6): when `T` is a
// word type that `Option` stores through a niche (`Option<Gc<_>>`: `Gc` is a transparent
// `NonNull`, so `None` is the null word and the size stays one word), every `Option<T>` is
// one initialised word too.
unsafe impl<T: Trace> Trace for Option<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    const ATOMIC_WORD: bool =
        T::ATOMIC_WORD && std::mem::size_of::<Option<T>>() == std::mem::size_of::<T>();
    #[inline(always)]
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            if let Some(v) = self {
                v.trace(t)
            }
        }
    }
}
// SAFETY: no GC pointer if `T` holds none.
unsafe impl<T: Untraced> Untraced for Option<T> {}

container! {
    impl<T> for Box<T> => |s, t| (**s).trace(t), needs: T::NEEDS_TRACE;
    impl<T> for Box<[T]> => |s, t| for v in s.iter() { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<T> for Vec<T> => |s, t| for v in s { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<T> for VecDeque<T> => |s, t| for v in s { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<T> for LinkedList<T> => |s, t| for v in s { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<T> for BinaryHeap<T> => |s, t| for v in s.iter() { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<T> for BTreeSet<T> => |s, t| for v in s { v.trace(t) }, needs: T::NEEDS_TRACE;
    impl<K, V> for BTreeMap<K, V> => |s, t| for (k, v) in s { k.trace(t); v.trace(t) },
        needs: K::NEEDS_TRACE || V::NEEDS_TRACE;
    impl<T, E> for Result<T, E> => |s, t| match s { Ok(v) => v.trace(t), Err(e) => e.trace(t) },
        needs: T::NEEDS_TRACE || E::NEEDS_TRACE;
}

// SAFETY: traces every element (rule 1).
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            for v in self {
                v.trace(t)
            }
        }
    }
}
// SAFETY: no GC pointer if the element type holds none.
unsafe impl<T: Untraced, const N: usize> Untraced for [T; N] {}

// SAFETY: traces every key and value (rule 1).
unsafe impl<K: Trace, V: Trace, S> Trace for HashMap<K, V, S> {
    const NEEDS_TRACE: bool = K::NEEDS_TRACE || V::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if Self::NEEDS_TRACE {
            for (k, v) in self {
                k.trace(t);
                v.trace(t);
            }
        }
    }
}
// SAFETY: no GC pointer if neither key nor value type holds one.
unsafe impl<K: Untraced, V: Untraced, S> Untraced for HashMap<K, V, S> {}

// SAFETY: traces every element (rule 1).
unsafe impl<T: Trace, S> Trace for HashSet<T, S> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            for v in self {
                v.trace(t)
            }
        }
    }
}
// SAFETY: no GC pointer if the element type holds none.
unsafe impl<T: Untraced, S> Untraced for HashSet<T, S> {}

macro_rules! tuples {
    ($(($($n:tt $g:ident),+))*) => {$(
        // SAFETY: traces every field (rule 1).
        unsafe impl<$($g: Trace),+> Trace for ($($g,)+) {
            const NEEDS_TRACE: bool = false $(|| $g::NEEDS_TRACE)+;
            fn trace(&self, t: &mut Tracer) {
                $(self.$n.trace(t);)+
            }
        }
        // SAFETY: no GC pointer if no field type holds one.
        unsafe impl<$($g: Untraced),+> Untraced for ($($g,)+) {}
    )*};
}
tuples! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
}

/// Interior mutability and shared ownership outside the collector's barrier: allowed only
/// around pointer-free data (rule 4), so the collector never looks inside.
macro_rules! opaque {
    ($(impl<$g:ident> for $t:ty;)*) => {$(
        // SAFETY: `$g: Untraced`, so there is no GC pointer to report.
        unsafe impl<$g: Untraced + ?Sized> Trace for $t {
            const NEEDS_TRACE: bool = false;
            #[inline(always)]
            fn trace(&self, _: &mut Tracer) {}
        }
        // SAFETY: `$g: Untraced`, so the wrapper holds no GC pointer, directly or
        // indirectly, and its `Trace` impl just above has `NEEDS_TRACE == false`.
        unsafe impl<$g: Untraced + ?Sized> Untraced for $t {}
    )*};
}
opaque! {
    impl<T> for Cell<T>;
    impl<T> for RefCell<T>;
    impl<T> for Mutex<T>;
    impl<T> for RwLock<T>;
    impl<T> for Rc<T>;
    impl<T> for Arc<T>;
}
// SAFETY: `T: Untraced`, so there is no GC pointer to report.
unsafe impl<T: Untraced> Trace for OnceCell<T> {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer) {}
}
// SAFETY: `T: Untraced`, so the cell holds no GC pointer, directly or indirectly, and its
// `Trace` impl just above has `NEEDS_TRACE == false`.
unsafe impl<T: Untraced> Untraced for OnceCell<T> {}

// SAFETY: traces the elements (rule 1).
unsafe impl<T: Trace> Trace for [T] {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;
    fn trace(&self, t: &mut Tracer) {
        if T::NEEDS_TRACE {
            for v in self {
                v.trace(t)
            }
        }
    }
}
