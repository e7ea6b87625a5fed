//! Handle scopes: precise roots for `Gc` pointers held in Rust locals (design §10).
//!
//! A [`HandleScope`] is a region of a mutator's *shadow stack*: [`HandleScope::handle`]
//! pushes an object's address, and the scope pops everything it pushed when it ends. The
//! collector reads every attached thread's shadow stack as precise roots, while that
//! thread is stopped, in both modes:
//!
//! * with the default conservative stack scan, handles are simply extra roots (code written
//!   for the precise mode runs unchanged);
//! * with `feature = "precise"` nothing else on a thread's stack or in its registers is a
//!   root: a `Gc` used after a safepoint (an allocation, [`Mutator::safepoint`], entering
//!   [`Mutator::blocking`], [`crate::collect`]) must be held by a [`Local`], a
//!   [`Root`](crate::Root), or a GC object reachable from those. This is the mode that Miri
//!   can check: the collector never reads raw stack words.

use crate::mark::Tracer;
use crate::mutator::Mutator;
use crate::{Gc, Trace};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Mutex;

/// A thread's shadow stack: the addresses of the objects its handles root, each tagged with
/// the depth of the scope that made the handle.
///
/// Invariants: scopes open and close in LIFO order (each is a frame of
/// [`Mutator::scope`]); `depth` is the number of open scopes; every entry's depth is at
/// most `depth`; the entries a scope of depth `d` made all lie at or above the length the
/// stack had when it opened. A scope's end removes the entries of its depth from there up,
/// keeping those made meanwhile through an outer scope (an outer `HandleScope` is usable
/// inside an inner scope's closure, and its `Local` outlives the inner scope).
pub(crate) struct ShadowStack(Mutex<Stack>);

struct Stack {
    /// `(object address, depth of the scope that made the handle)`.
    entries: Vec<(usize, u32)>,
    depth: u32,
}

impl ShadowStack {
    pub(crate) const fn new() -> ShadowStack {
        ShadowStack(Mutex::new(Stack {
            entries: Vec::new(),
            depth: 0,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stack> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a scope: returns its `(base, depth)`.
    fn open(&self) -> (usize, u32) {
        let mut s = self.lock();
        s.depth += 1;
        (s.entries.len(), s.depth)
    }

    fn push(&self, addr: usize, depth: u32) {
        self.lock().entries.push((addr, depth));
    }

    /// Closes the innermost scope, of depth `depth`, opened when the stack was `base` long.
    fn close(&self, base: usize, depth: u32) {
        let mut s = self.lock();
        debug_assert_eq!(s.depth, depth, "handle scopes closed out of order");
        let mut keep = base;
        for i in base..s.entries.len() {
            if s.entries[i].1 < depth {
                s.entries[keep] = s.entries[i];
                keep += 1;
            }
        }
        s.entries.truncate(keep);
        s.depth = depth - 1;
    }

    /// Greys every object the stack roots; returns the bytes of stack read.
    pub(crate) fn mark(&self, t: &mut Tracer) -> usize {
        let s = self.lock();
        for &(p, _) in s.entries.iter() {
            t.mark_addr(p);
        }
        s.entries.len() * std::mem::size_of::<usize>()
    }
}

/// A region of the calling thread's shadow stack; see [`Mutator::scope`]. Handles made in
/// it root their objects until the scope ends.
pub struct HandleScope<'m> {
    m: &'m Mutator,
    /// Length of the shadow stack when the scope opened.
    base: usize,
    /// Scopes open on the thread, this one included.
    depth: u32,
}

impl Mutator {
    /// Runs `f` with a new handle scope: every [`Local`] made through it roots its object
    /// precisely until `f` returns. Scopes nest; a `Local` cannot leave its scope. A handle
    /// belongs to the scope it was made through, not to the innermost one open: made
    /// through an outer scope inside an inner scope's closure, it lasts until the outer
    /// scope ends.
    ///
    /// ```
    /// use gc::{Gc, Lock, Trace};
    ///
    /// #[derive(Trace)]
    /// struct Node {
    ///     value: u64,
    ///     next: Lock<Option<Gc<Node>>>,
    /// }
    ///
    /// let m = gc::attach();
    /// let sum = m.scope(|s| {
    ///     let mut head = s.handle(Gc::new(&m, Node { value: 0, next: Lock::new(None) }));
    ///     for v in 1..10 {
    ///         // `head` stays rooted while `Gc::new` (a safepoint) runs.
    ///         let n = Gc::new(&m, Node { value: v, next: Lock::new(Some(head.get())) });
    ///         head = s.handle(n);
    ///     }
    ///     gc::collect();
    ///     let (mut sum, mut c) = (0, Some(head.get()));
    ///     while let Some(n) = c {
    ///         sum += n.value;
    ///         c = n.next.get();
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, 45);
    /// ```
    pub fn scope<R>(&self, f: impl for<'s> FnOnce(&'s HandleScope<'s>) -> R) -> R {
        let (base, depth) = self.rec().handles.open();
        let scope = HandleScope {
            m: self,
            base,
            depth,
        };
        f(&scope)
    }
}

impl Drop for HandleScope<'_> {
    fn drop(&mut self) {
        self.m.rec().handles.close(self.base, self.depth);
    }
}

impl<'s> HandleScope<'s> {
    /// Roots `gc` until this scope ends.
    pub fn handle<T: ?Sized + Trace>(&'s self, gc: Gc<T>) -> Local<'s, T> {
        self.m.rec().handles.push(gc.addr(), self.depth);
        Local {
            gc,
            _scope: PhantomData,
        }
    }

    /// The scope's mutator.
    pub fn mutator(&self) -> &'s Mutator {
        self.m
    }
}

/// A `Gc<T>` rooted by a [`HandleScope`]: valid, and its object alive, for the scope's
/// lifetime `'s`. `Copy`; dereferences to `T`.
pub struct Local<'s, T: ?Sized + 'static> {
    gc: Gc<T>,
    _scope: PhantomData<&'s ()>,
}

impl<T: ?Sized> Clone for Local<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Local<'_, T> {}

impl<'s, T: ?Sized + Trace> Local<'s, T> {
    /// The rooted pointer. It stays rooted while this handle's scope lasts, wherever the
    /// copy goes.
    #[inline]
    pub fn get(self) -> Gc<T> {
        self.gc
    }
}

impl<T: ?Sized + Trace> Deref for Local<'_, T>
where
    Gc<T>: Deref<Target = T>,
{
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // The `Gc` deref checks for a swept object in debug builds.
        &self.gc
    }
}

impl<T: ?Sized + Trace + fmt::Debug> fmt::Debug for Local<'_, T>
where
    Gc<T>: Deref<Target = T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Local").field(&&**self).finish()
    }
}
