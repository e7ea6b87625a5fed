//! `Root<T>`: precise roots for GC pointers kept outside stacks and the GC heap.

use crate::mark::Tracer;
use crate::{Gc, Trace};
use std::fmt;
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard};

/// The root table: object addresses (0 = free slot) and the free slots.
struct Table {
    slots: Vec<usize>,
    free: Vec<usize>,
}

static ROOTS: Mutex<Table> = Mutex::new(Table {
    slots: Vec::new(),
    free: Vec::new(),
});

/// Address and size of the root table's static (for the misuse checker).
pub(crate) fn table_range() -> (usize, usize) {
    (&ROOTS as *const _ as usize, std::mem::size_of_val(&ROOTS))
}

fn roots() -> MutexGuard<'static, Table> {
    ROOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered, precise root: keeps its object alive wherever the `Root` itself lives (a
/// `std` collection, a static, a channel message, a thread that is not attached).
///
/// `Clone` registers another root; dropping unregisters. `Send + Sync` when `T` is.
/// An unattached thread may dereference a `Root` (shared access only) while it holds it.
/// `T` may be a slice or `str` (a `Root<[T]>` of a [`Gc::from_fn`] slice).
pub struct Root<T: ?Sized + 'static> {
    gc: Gc<T>,
    slot: usize,
}

impl<T: ?Sized + Trace> Root<T> {
    /// Roots `gc`.
    pub fn new(gc: Gc<T>) -> Root<T> {
        let mut r = roots();
        let slot = match r.free.pop() {
            Some(i) => {
                r.slots[i] = gc.addr();
                i
            }
            None => {
                r.slots.push(gc.addr());
                r.slots.len() - 1
            }
        };
        Root { gc, slot }
    }

    /// The rooted pointer. It stays valid at least as long as this `Root`.
    #[inline]
    pub fn get(&self) -> Gc<T> {
        self.gc
    }
}

impl<T: ?Sized> Drop for Root<T> {
    fn drop(&mut self) {
        let mut r = roots();
        r.slots[self.slot] = 0;
        r.free.push(self.slot);
    }
}

impl<T: ?Sized + Trace> Clone for Root<T> {
    fn clone(&self) -> Self {
        Root::new(self.gc)
    }
}

impl<T: ?Sized + Trace> Deref for Root<T>
where
    Gc<T>: Deref<Target = T>,
{
    type Target = T;
    fn deref(&self) -> &T {
        &self.gc
    }
}

impl<T: ?Sized + Trace + fmt::Debug> fmt::Debug for Root<T>
where
    Gc<T>: Deref<Target = T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Root").field(&&**self).finish()
    }
}

/// Greys every rooted object; returns the bytes of root table scanned. The root table stays
/// locked until the end of the call: a blocking thread dropping a `Root` mid-scan waits.
pub(crate) fn mark_roots(t: &mut Tracer) -> usize {
    let r = roots();
    for &p in r.slots.iter() {
        if p != 0 {
            t.mark_addr(p);
        }
    }
    r.slots.len() * 8
}

/// Live roots now (for tests and statistics).
pub fn root_count() -> usize {
    let r = roots();
    r.slots.len() - r.free.len()
}
