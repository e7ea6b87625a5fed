//! `Gc<T>`: the collector's pointer, and the object header that lets the collector trace and
//! drop an object it knows only by address.

use crate::Mutator;
use crate::heap::Kind;
use crate::mark::Tracer;
use crate::trace::Trace;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

/// Byte written over freed objects in debug builds.
pub(crate) const POISON: u8 = 0xdb;
/// A header word that was poisoned.
const POISON_WORD: usize = usize::from_ne_bytes([POISON; 8]);

/// What the collector knows about an object's type. Objects of kinds `SCAN`, `SCAN_DROP` and
/// `NOSCAN_DROP` start with a `&'static VTable` word; the value follows at `offset`.
pub(crate) struct VTable {
    /// Traces the value at the given address.
    pub trace: unsafe fn(*const u8, &mut Tracer),
    /// Drops the value at the given address in place.
    pub drop: unsafe fn(*mut u8),
    /// Bytes from the object's start to the value.
    pub offset: usize,
    /// The value's type name (for fatal errors).
    pub name: fn() -> &'static str,
}

/// Compile-time layout of `Gc<T>` objects.
pub(crate) struct Layout<T>(PhantomData<T>);

impl<T: Trace> Layout<T> {
    /// The object kind of `T`: a gomalloc span kind, or the collector's own
    /// [`Kind::ScanDrop`] (in `Kind::Scan` spans).
    pub const KIND: Kind = if T::NEEDS_TRACE && std::mem::needs_drop::<T>() {
        Kind::ScanDrop
    } else if T::NEEDS_TRACE {
        Kind::Scan
    } else if std::mem::needs_drop::<T>() {
        Kind::NoscanDrop
    } else {
        Kind::Noscan
    };
    /// Offset of the value in the object: a header word, padded to `T`'s alignment.
    pub const OFFSET: usize = if matches!(Self::KIND, Kind::Noscan) {
        0
    } else if std::mem::align_of::<T>() > 8 {
        std::mem::align_of::<T>()
    } else {
        8
    };
    /// Bytes of the object: the value takes at least one byte, so that the value's address
    /// (`OFFSET`) lies inside the object even for a zero-sized `T`. Were it
    /// `OFFSET + size_of::<T>()`, a zero-sized value with a header would point one past its
    /// object, at the next slot: roots would mark that neighbour, and the object itself
    /// would be swept (its destructor run) while still referenced.
    pub const SIZE: usize = {
        let value = if std::mem::size_of::<T>() == 0 {
            1
        } else {
            std::mem::size_of::<T>()
        };
        Self::OFFSET + value
    };
    /// Alignment of the object.
    pub const ALIGN: usize = if matches!(Self::KIND, Kind::Noscan) || std::mem::align_of::<T>() > 8
    {
        std::mem::align_of::<T>()
    } else {
        8
    };
    /// The type's vtable.
    pub const VTABLE: VTable = VTable {
        trace: trace_erased::<T>,
        drop: drop_erased::<T>,
        offset: Self::OFFSET,
        name: std::any::type_name::<T>,
    };
}

/// # Safety
/// `p` points to a live, initialised, aligned `T` (an object's value, at its vtable's
/// `offset`).
unsafe fn trace_erased<T: Trace>(p: *const u8, t: &mut Tracer) {
    // SAFETY: `p` is a live, initialised, aligned `T` (# Safety), so a shared reference to
    // it is valid for the call.
    unsafe { (*p.cast::<T>()).trace(t) }
}

/// # Safety
/// `p` points to a live, initialised, aligned `T` (an object's value, at its vtable's
/// `offset`) that the caller owns and that is never used again.
unsafe fn drop_erased<T>(p: *mut u8) {
    // SAFETY: `p` is a live, initialised, aligned `T`, owned by the caller and never used
    // again (# Safety): what `drop_in_place` requires.
    unsafe { std::ptr::drop_in_place(p.cast::<T>()) }
}

/// A pointer to a garbage-collected `T`.
///
/// `Copy`, and `Send + Sync` when `T` is. Dereferencing gives `&T` only: fields that hold GC
/// pointers change through [`Lock`](crate::Lock) and [`RefLock`](crate::RefLock), which apply
/// the write barrier.
///
/// **The rooting rule** (see `docs/gc-design.md` §2): a `Gc<T>` keeps its target alive while
/// it is on the stack (or in the registers) of an attached thread, inside another GC object,
/// or held by a [`Root`](crate::Root). Anywhere else — a `std` collection, a channel, a
/// static, a thread that is not attached — the collector cannot see it, and the target may be
/// freed at the next safepoint of any thread. Hold a `Root<T>` there instead. In debug builds
/// freed memory is poisoned and dereferencing a dead object with a header panics.
///
/// `T` may be a slice or `str` ([`Gc::from_fn`], [`Gc::from_slice`], [`Gc::from_iter`],
/// [`Gc::from_str`]): such a `Gc` is two words (the value's address and its length), and
/// the first is enough for the conservative stack scan to find the object.
#[repr(transparent)]
pub struct Gc<T: ?Sized + 'static> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

impl<T: ?Sized> Clone for Gc<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Gc<T> {}

// SAFETY: sharing a `Gc<T>` shares `&T` (needs `T: Sync`); the collector may drop the value
// on another thread (needs `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Send for Gc<T> {}
// SAFETY: sharing a `Gc<T>` across threads hands out `&T` on each (needs `T: Sync`), and
// any of them may let the collector drop it elsewhere (needs `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for Gc<T> {}

impl<T: Trace + Send + 'static> Gc<T> {
    /// Allocates `value` on the GC heap. A safepoint: may collect first.
    ///
    /// Objects of types that hold GC pointers go to scan spans; pointer-free types to
    /// noscan spans, and pointer-free types without drop glue smaller than 16 bytes to the
    /// tiny allocator. `T: Send` because the collector may drop the value on any thread.
    #[inline]
    pub fn new(m: &Mutator, value: T) -> Gc<T> {
        let base = m.alloc_object(Layout::<T>::KIND, Layout::<T>::SIZE, Layout::<T>::ALIGN);
        // SAFETY: `base` is a fresh object of SIZE bytes aligned to ALIGN; the header (if
        // any) and the value fit at their offsets. Nothing can collect before we return: no
        // safepoint lies between the allocation and these writes.
        unsafe {
            if Layout::<T>::KIND != Kind::Noscan {
                base.cast::<&'static VTable>()
                    .write(&const { Layout::<T>::VTABLE });
            }
            let p = base.add(Layout::<T>::OFFSET).cast::<T>();
            p.write(value);
            Gc {
                ptr: NonNull::new_unchecked(p),
                _owns: PhantomData,
            }
        }
    }
}

impl<T: ?Sized> Gc<T> {
    /// The value's address.
    #[inline(always)]
    pub fn as_ptr(this: Gc<T>) -> *const T {
        this.ptr.as_ptr()
    }

    /// True if both point to the same object (for slices: the same address, whatever
    /// the lengths).
    #[inline(always)]
    pub fn ptr_eq(a: Gc<T>, b: Gc<T>) -> bool {
        std::ptr::addr_eq(a.ptr.as_ptr(), b.ptr.as_ptr())
    }

    /// Rebuilds a `Gc` from [`Gc::as_ptr`].
    ///
    /// # Safety
    /// `p` came from `Gc::as_ptr` of a `Gc<T>` whose object is still alive.
    #[inline(always)]
    pub unsafe fn from_ptr(p: *const T) -> Gc<T> {
        Gc {
            // SAFETY: `p` came from `Gc::as_ptr` of a live `Gc<T>` (# Safety), whose pointer
            // is a `NonNull`, so it is not null.
            ptr: unsafe { NonNull::new_unchecked(p as *mut T) },
            _owns: PhantomData,
        }
    }

    /// A `Gc` of the value at `ptr`.
    ///
    /// # Safety
    /// `ptr` is the value's address inside an allocated, initialised GC object.
    #[inline(always)]
    pub(crate) unsafe fn from_non_null(ptr: NonNull<T>) -> Gc<T> {
        Gc {
            ptr,
            _owns: PhantomData,
        }
    }

    /// The value's address as an integer (for the collector).
    #[inline(always)]
    pub(crate) fn addr(self) -> usize {
        self.ptr.as_ptr().cast::<u8>() as usize
    }

    /// Debug builds: panics if the object's header (`offset` bytes before the value) was
    /// poisoned by the sweep, i.e. the object was freed while this `Gc` was unrooted.
    #[inline(always)]
    pub(crate) fn check_live(self, kind: Kind, offset: usize) {
        if cfg!(debug_assertions) && kind != Kind::Noscan {
            // SAFETY: a live object's header word precedes the value by `offset` bytes; a
            // freed one is still mapped (GC spans go back to the page heap, which keeps
            // its pages mapped) and poisoned.
            let h = unsafe { ((self.addr() - offset) as *const usize).read() };
            assert!(
                h != POISON_WORD,
                "use after free: Gc<{}> at {:#x} points to a swept object (was it rooted?)",
                std::any::type_name::<T>(),
                self.addr()
            );
        }
    }
}

impl<T: Trace> Deref for Gc<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        self.check_live(Layout::<T>::KIND, Layout::<T>::OFFSET);
        // SAFETY: the object is alive while the pointer is rooted (rooting rule above) and
        // only shared references to it are ever made.
        unsafe { self.ptr.as_ref() }
    }
}

/// Keeps `gc`'s object alive at least until this call, like Go's `runtime.KeepAlive`.
///
/// The conservative stack scan roots a `Gc` only while the compiled code still holds it, in
/// a stack slot or a register, and the optimiser lets a value go after its last use. A
/// reference derived from the object that does not point into it (a `&[u8]` into a buffer
/// the object owns in the malloc heap, say) does not keep the object alive: once the
/// `Gc`'s last use has passed, the next safepoint may free the object, and its destructor
/// the buffer under the reference. `keep_alive(gc)` after the reference's last use keeps
/// the `Gc` live (so rooted) up to that point.
///
#[cfg_attr(not(feature = "precise"), doc = "```")]
#[cfg_attr(feature = "precise", doc = "```ignore")]
/// use gc::{Gc, Trace};
///
/// #[derive(Trace)]
/// struct Owner {
///     buf: Vec<u8>,
/// }
///
/// let m = gc::attach();
/// let owner = Gc::new(&m, Owner { buf: vec![7; 4096] });
/// let bytes: &[u8] = &owner.buf; // points into the malloc heap, not into `owner`
/// gc::collect();                 // `owner` is kept: it is used below
/// assert!(bytes.iter().all(|&b| b == 7));
/// gc::keep_alive(owner);
/// ```
///
/// In the precise mode (`feature = "precise"`) no stack is scanned and this roots nothing:
/// hold the object in a [`Local`](crate::Local) or a [`Root`](crate::Root) instead.
#[inline(always)]
pub fn keep_alive<T: ?Sized>(gc: Gc<T>) {
    #[cfg(not(feature = "precise"))]
    // SAFETY: an empty instruction sequence that takes the pointer in a register and
    // changes no register, flag or stack memory. Its only effect is on the compiler: the
    // value must exist here, and (no `nomem`: the block may touch memory, as far as the
    // compiler knows) the block stays ordered after every call before it.
    unsafe {
        std::arch::asm!(
            "/* gc::keep_alive {0} */",
            in(reg) gc.ptr.as_ptr().cast::<u8>(),
            options(nostack, preserves_flags)
        );
    }
    #[cfg(feature = "precise")]
    std::hint::black_box(gc);
}

// SAFETY: reports the one GC pointer (rule 1). A `Gc` of a sized `T` is a transparent
// non-null pointer: one initialised word (rule 6); a `Gc<[T]>` or `Gc<str>` is two words and
// says no.
unsafe impl<T: ?Sized + 'static> Trace for Gc<T> {
    const ATOMIC_WORD: bool = std::mem::size_of::<Gc<T>>() == std::mem::size_of::<usize>();
    #[inline(always)]
    fn trace(&self, t: &mut Tracer) {
        t.mark_gc(self.addr());
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Gc<T>
where
    Gc<T>: Deref<Target = T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for Gc<T>
where
    Gc<T>: Deref<Target = T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized> fmt::Pointer for Gc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&self.ptr, f)
    }
}
