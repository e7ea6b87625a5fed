//! The intrusive doubly-linked list, the one list type of the allocator's metadata: the
//! page heap's size bins and its dirty list (`mheap`), an mcentral's partial spans and a
//! thread cache's retained spans (`mcentral`, `mcache`), and the cache pool's active and
//! free records (`mcache`). Go's runtime has the same one type, `mSpanList`.
//!
//! A node carries a [`Links`] per list it can be in; a [`Link`] type names which one a
//! list threads through, so one record can be in two lists at once (a free span is in a
//! size bin and on the dirty list). Nothing allocates: the lists are three words and
//! the links live in the records.
//!
//! Invariants of a [`List`] (checked by [`List::for_each`] in checked builds):
//! 1. `head` is null iff `tail` is null iff `len == 0`.
//! 2. Following `next` from `head` visits exactly `len` nodes and ends at `tail`; each
//!    node's `prev` is the node before it (null for `head`).
//! 3. Every node in the list is a valid record that stays valid while it is listed, and is
//!    in no other list of the same [`Link`].
//!
//! A list is not synchronised: its owner's lock (or its owner thread) serialises every
//! use, which the `&mut self` of every mutating method carries.
//!
//! Layer: primitives (the crate root's module map, `lib.rs`).

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr;

/// The two links a node keeps for one kind of list.
pub struct Links<T> {
    next: Cell<*mut T>,
    prev: Cell<*mut T>,
}

impl<T> Links<T> {
    /// Links of a node in no list.
    pub const fn new() -> Self {
        Links {
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
        }
    }
}

impl<T> Default for Links<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which [`Links`] of its nodes a list threads through.
pub trait Link {
    /// The record type the list holds.
    type Node;
    /// The node's links for this kind of list.
    fn links(node: &Self::Node) -> &Links<Self::Node>;
}

/// A doubly-linked list of `L::Node` records through their `L` links (invariants in the
/// module header).
pub struct List<L: Link> {
    head: *mut L::Node,
    tail: *mut L::Node,
    len: usize,
    _link: PhantomData<L>,
}

// SAFETY: a list is a set of pointers to allocator metadata; whoever owns the list (a lock,
// or the one thread that owns a cache) serialises every access to the nodes' links.
unsafe impl<L: Link> Send for List<L> {}

impl<L: Link> List<L> {
    /// An empty list.
    pub const fn new() -> Self {
        List {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
            _link: PhantomData,
        }
    }

    /// Nodes in the list.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no node.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The first node, or null.
    #[inline]
    pub fn front(&self) -> *mut L::Node {
        self.head
    }

    /// The node after `n`, or null.
    ///
    /// # Safety
    /// `n` is in this list (invariant 3: it is a valid record).
    #[inline]
    pub unsafe fn next(&self, n: *mut L::Node) -> *mut L::Node {
        // SAFETY: `n` is a listed node, so a valid record (invariant 3, # Safety).
        L::links(unsafe { &*n }).next.get()
    }

    /// Adds `n` at the front.
    ///
    /// # Safety
    /// `n` is a valid record in no list of this [`Link`], and stays valid while listed.
    pub unsafe fn push_front(&mut self, n: *mut L::Node) {
        // SAFETY: `n` is valid (# Safety); `head`, if not null, is a listed node (inv. 3).
        unsafe {
            let l = L::links(&*n);
            l.prev.set(ptr::null_mut());
            l.next.set(self.head);
            if self.head.is_null() {
                self.tail = n;
            } else {
                L::links(&*self.head).prev.set(n);
            }
        }
        self.head = n;
        self.len += 1;
    }

    /// Adds `n` at the back.
    ///
    /// # Safety
    /// `n` is a valid record in no list of this [`Link`], and stays valid while listed.
    pub unsafe fn push_back(&mut self, n: *mut L::Node) {
        // SAFETY: `n` is valid (# Safety); `tail`, if not null, is a listed node (inv. 3).
        unsafe {
            let l = L::links(&*n);
            l.next.set(ptr::null_mut());
            l.prev.set(self.tail);
            if self.tail.is_null() {
                self.head = n;
            } else {
                L::links(&*self.tail).next.set(n);
            }
        }
        self.tail = n;
        self.len += 1;
    }

    /// Takes `n` out of the list.
    ///
    /// # Safety
    /// `n` is in this list.
    pub unsafe fn remove(&mut self, n: *mut L::Node) {
        // SAFETY: `n` is listed (# Safety), so it and its neighbours are valid (inv. 3).
        unsafe {
            let l = L::links(&*n);
            let (p, x) = (l.prev.get(), l.next.get());
            if p.is_null() {
                self.head = x;
            } else {
                L::links(&*p).next.set(x);
            }
            if x.is_null() {
                self.tail = p;
            } else {
                L::links(&*x).prev.set(p);
            }
        }
        self.len -= 1;
    }

    /// Takes the first node, or returns null.
    pub fn pop_front(&mut self) -> *mut L::Node {
        let n = self.head;
        if !n.is_null() {
            // SAFETY: `n` is the head, so in this list.
            unsafe { self.remove(n) };
        }
        n
    }

    /// Takes the first node out and adds `n` at the back, in one step: what
    /// [`List::pop_front`] then [`List::push_back`] do, without their length updates and
    /// empty-list tests. Returns the node taken out.
    ///
    /// # Safety
    /// The list is not empty; `n` is a valid record in no list of this [`Link`], and stays
    /// valid while listed.
    #[inline]
    pub unsafe fn swap_front_to_back(&mut self, n: *mut L::Node) -> *mut L::Node {
        let old = self.head;
        debug_assert!(!old.is_null());
        // SAFETY: the list is not empty (# Safety), so `old` and `tail` are listed nodes
        // (invariant 3), and so is `old`'s successor if any; `n` is valid (# Safety).
        unsafe {
            let second = L::links(&*old).next.get();
            let l = L::links(&*n);
            l.next.set(ptr::null_mut());
            if second.is_null() {
                l.prev.set(ptr::null_mut());
                self.head = n;
            } else {
                L::links(&*second).prev.set(ptr::null_mut());
                self.head = second;
                l.prev.set(self.tail);
                L::links(&*self.tail).next.set(n);
            }
        }
        self.tail = n;
        old
    }

    /// Moves the nodes from the front through `last` to the back, in order: what popping
    /// each and pushing it back would do, with four link writes whatever their number.
    ///
    /// # Safety
    /// `last` is in this list.
    pub unsafe fn rotate_through(&mut self, last: *mut L::Node) {
        // SAFETY: `last` is listed (# Safety), so a valid record (invariant 3).
        let new_head = unsafe { L::links(&*last).next.get() };
        if new_head.is_null() {
            return; // the whole list: the same order
        }
        // SAFETY: `new_head` follows `last`, so the list has a head and a tail, and all
        // four are listed nodes (invariant 3).
        unsafe {
            L::links(&*new_head).prev.set(ptr::null_mut());
            L::links(&*self.tail).next.set(self.head);
            L::links(&*self.head).prev.set(self.tail);
            L::links(&*last).next.set(ptr::null_mut());
        }
        self.head = new_head;
        self.tail = last;
    }

    /// Calls `f` on every node, front to back, checking invariants 1 and 2 on the way in
    /// checked builds. `f` must not change the list.
    pub fn for_each(&self, mut f: impl FnMut(*mut L::Node)) {
        let (mut n, mut prev, mut count) = (self.head, ptr::null_mut(), 0);
        while !n.is_null() {
            // SAFETY: listed nodes are valid records (invariant 3).
            let l = L::links(unsafe { &*n });
            crate::check!(l.prev.get() == prev, "list back link broken at", n as usize);
            f(n);
            count += 1;
            prev = n;
            n = l.next.get();
        }
        crate::check!(
            prev == self.tail && count == self.len,
            "list length or tail wrong",
            count
        );
    }
}

impl<L: Link> Default for List<L> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        id: usize,
        a: Links<Node>,
        b: Links<Node>,
    }
    struct A;
    impl Link for A {
        type Node = Node;
        fn links(n: &Node) -> &Links<Node> {
            &n.a
        }
    }
    struct B;
    impl Link for B {
        type Node = Node;
        fn links(n: &Node) -> &Links<Node> {
            &n.b
        }
    }

    fn ids<L: Link<Node = Node>>(l: &List<L>) -> std::vec::Vec<usize> {
        let mut v = std::vec::Vec::new();
        // SAFETY: the test's nodes outlive the lists.
        l.for_each(|n| v.push(unsafe { (*n).id }));
        v
    }

    #[test]
    fn one_node_in_two_lists() {
        let mut nodes: std::vec::Vec<Node> = (0..5)
            .map(|id| Node {
                id,
                a: Links::new(),
                b: Links::new(),
            })
            .collect();
        let p: std::vec::Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let (mut la, mut lb) = (List::<A>::new(), List::<B>::new());
        // SAFETY: every node is valid for the whole test and pushed once per list.
        unsafe {
            for &n in &p {
                la.push_back(n);
                lb.push_front(n);
            }
            assert_eq!(ids(&la), [0, 1, 2, 3, 4]);
            assert_eq!(ids(&lb), [4, 3, 2, 1, 0]);
            la.remove(p[2]);
            lb.remove(p[4]);
            lb.remove(p[0]);
            assert_eq!(ids(&la), [0, 1, 3, 4]);
            assert_eq!(ids(&lb), [3, 2, 1]);
            la.rotate_through(p[1]);
            assert_eq!(ids(&la), [3, 4, 0, 1]);
            la.rotate_through(p[1]);
            assert_eq!(ids(&la), [3, 4, 0, 1]);
            assert_eq!(la.next(p[4]), p[0]);
            assert_eq!(la.pop_front(), p[3]);
            assert_eq!((la.len(), lb.len()), (3, 3));
            while !lb.pop_front().is_null() {}
            assert!(lb.is_empty() && lb.front().is_null());
            assert_eq!(ids(&la), [4, 0, 1]);
            // The front goes, `n` comes in at the back, the length stays: with several
            // nodes, then with one (for_each checks the back links).
            assert_eq!(la.swap_front_to_back(p[3]), p[4]);
            assert_eq!(ids(&la), [0, 1, 3]);
            assert_eq!(la.len(), 3);
            lb.push_back(p[2]);
            assert_eq!(lb.swap_front_to_back(p[0]), p[2]);
            assert_eq!(ids(&lb), [0]);
            assert_eq!((lb.len(), lb.front()), (1, p[0]));
            lb.push_front(p[1]);
            assert_eq!(ids(&lb), [1, 0]);
        }
    }
}
