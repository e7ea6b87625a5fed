//! Each half of Go's hybrid write barrier, alone: one scenario that only the deletion half
//! (shade the old value) survives, one that only the insertion half (shade the new value)
//! survives. Either test fails when its half is taken out of `Lock::replace`. A third
//! scenario does the insertion half's work through `RefLock` (its `RefMut`'s drop queues
//! the holding object for another scan) and fails when that is taken out; a fourth counts
//! what `RefLock`'s barrier traces over many borrows of a large value in one mark.
//!
//! Roots are `Root`s, so the tests run in both modes: CI runs them in the conservative mode
//! with the other tests, and in the precise mode with `precise.rs` (natively).

#[path = "common/serial.rs"]
mod serial;

use gc::debug::IncrementalCycle;
use gc::{Gc, Lock, Root, Trace, Weak};

// Incremental cycles need a single attached thread: the tests attach one at a time.
use serial::serial;

#[derive(Trace)]
struct Obj {
    id: u32,
    slot: Lock<Option<Gc<Obj>>>,
}

/// A `Weak` is a GC object: rooted through this in both modes.
#[derive(Trace)]
struct Watch {
    w: Weak<Obj>,
}

fn obj(m: &gc::Mutator, id: u32, slot: Option<Gc<Obj>>) -> Gc<Obj> {
    Gc::new(
        m,
        Obj {
            id,
            slot: Lock::new(slot),
        },
    )
}

fn watch(m: &gc::Mutator, target: Gc<Obj>) -> Root<Watch> {
    Root::new(Gc::new(
        m,
        Watch {
            w: Weak::new(m, target),
        },
    ))
}

/// root -> g -> x.
#[inline(never)]
fn deletion_setup(m: &gc::Mutator) -> (Root<Obj>, Root<Watch>) {
    let x = obj(m, 2, None);
    let g = obj(m, 1, Some(x));
    (Root::new(obj(m, 0, Some(g))), watch(m, x))
}

/// Yuasa's case. Nothing is traced yet (root grey, g and x white). `x` is read out of `g`
/// and moved into a new object — allocated black, and a constructor applies no barrier —
/// then deleted from `g`. The new object goes into `root` (still grey: the insertion half
/// shades only an object that is black already). `x` now sits only in a black object and
/// in this frame, which the collector scanned before the cycle started: only the deletion
/// half (shading `x` when `g.slot` is overwritten) keeps it.
#[inline(never)]
fn deletion_mutate(m: &gc::Mutator, root: &Root<Obj>) {
    let g = root.slot.get().unwrap();
    let x = g.slot.get().unwrap();
    let holder = obj(m, 3, Some(x));
    g.slot.set(m, None);
    root.slot.set(m, Some(holder));
}

#[test]
fn deletion_half_keeps_an_object_moved_out_of_a_grey_object() {
    let _s = serial();
    let m = gc::attach();
    let (root, wx) = deletion_setup(&m);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(&m);
    deletion_mutate(&m, &root);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(1) {}
    cycle.finish();
    assert!(
        !wx.w.is_cleared(),
        "an object deleted from a grey object was lost: the deletion half is missing"
    );
    gc::collect();
    let holder = root.slot.get().unwrap();
    assert_eq!(holder.id, 3);
    assert_eq!(holder.slot.get().unwrap().id, 2);
    assert!(!wx.w.is_cleared());
}

/// Hides `Gc` addresses from the collector (a malloc'ed box holds them, inverted).
struct Hidden(Box<usize>);

/// A rooted `root` and an object `w` that nothing the collector can see points to.
#[inline(never)]
fn insertion_setup(m: &gc::Mutator) -> (Root<Obj>, Root<Watch>, Hidden) {
    let w = obj(m, 5, None);
    (
        Root::new(obj(m, 0, None)),
        watch(m, w),
        Hidden(Box::new(!(Gc::as_ptr(w) as usize))),
    )
}

/// Dijkstra's case. `w` stands for a pointer on a stack the collector has not scanned
/// (Go's grey stack: the concurrent version scans stacks one at a time, design §8; here a
/// word the collector cannot see at all). Marking is over — `root` is black — when the
/// mutator stores `w` into `root` and drops its own copy. The old value is `None`, so only
/// the insertion half (shading `w`) keeps it.
#[inline(never)]
fn insertion_mutate(m: &gc::Mutator, root: &Root<Obj>, hidden: Hidden) {
    // SAFETY: `w` was allocated before the cycle started and nothing is swept before the
    // cycle finishes: the object is alive.
    let w = unsafe { Gc::from_ptr(!*hidden.0 as *const Obj) };
    root.slot.set(m, Some(w));
}

#[test]
fn insertion_half_keeps_an_object_stored_into_a_black_object() {
    let _s = serial();
    let m = gc::attach();
    let (root, ww, hidden) = insertion_setup(&m);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(&m);
    // Trace everything reachable: `root` is black, `w` white.
    while !cycle.mark_some(1) {}
    insertion_mutate(&m, &root, hidden);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(1) {}
    cycle.finish();
    assert!(
        !ww.w.is_cleared(),
        "an object stored into a black object was lost: the insertion half is missing"
    );
    gc::collect();
    assert_eq!(root.slot.get().unwrap().id, 5);
    assert!(!ww.w.is_cleared());
}

#[derive(Trace)]
struct Bag {
    items: gc::RefLock<Vec<Gc<Obj>>>,
}

/// Dijkstra's case through a `RefLock`: marking is over (the bag is black) when the
/// mutator pushes `w`, which nothing the collector can see points to, into the bag's
/// vector through `borrow_mut`. The old contents are empty, so only the insertion half of
/// `RefLock`'s barrier (the `RefMut`'s drop shading the new contents) keeps it.
#[test]
fn reflock_insertion_half_keeps_an_object_pushed_into_a_black_vector() {
    let _s = serial();
    let m = gc::attach();
    let (bag, ww, hidden) = reflock_setup(&m);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(&m);
    // Trace everything reachable: the bag is black, `w` white.
    while !cycle.mark_some(1) {}
    reflock_mutate(&m, &bag, hidden);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(1) {}
    cycle.finish();
    assert!(
        !ww.w.is_cleared(),
        "an object pushed into a black RefLock was lost: its insertion half is missing"
    );
    gc::collect();
    assert_eq!(
        bag.items.borrow().iter().map(|o| o.id).collect::<Vec<_>>(),
        [7]
    );
    assert!(!ww.w.is_cleared());
}

/// A rooted empty bag and an object `w` that nothing the collector can see points to.
#[inline(never)]
fn reflock_setup(m: &gc::Mutator) -> (Root<Bag>, Root<Watch>, Hidden) {
    let w = obj(m, 7, None);
    let bag = Gc::new(
        m,
        Bag {
            items: gc::RefLock::new(Vec::new()),
        },
    );
    (
        Root::new(bag),
        watch(m, w),
        Hidden(Box::new(!(Gc::as_ptr(w) as usize))),
    )
}

#[inline(never)]
fn reflock_mutate(m: &gc::Mutator, bag: &Root<Bag>, hidden: Hidden) {
    // SAFETY: `w` was allocated before the cycle started and nothing is swept before the
    // cycle finishes: the object is alive.
    let w = unsafe { Gc::from_ptr(!*hidden.0 as *const Obj) };
    bag.items.borrow_mut(m).push(w);
}

/// How many times a [`Counted`] was traced.
static TRACED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A GC pointer that counts its traces.
struct Counted(Gc<Obj>);

// SAFETY: reports its one GC pointer, as `Gc`'s own impl does.
unsafe impl Trace for Counted {
    fn trace(&self, t: &mut gc::Tracer) {
        TRACED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.trace(t);
    }
}

#[derive(Trace)]
struct BigBag {
    items: gc::RefLock<Vec<Counted>>,
}

/// A large vector in a `RefLock`, borrowed mutably 100 times during one mark, each borrow
/// moving its last element to the front (a deletion and an insertion): the barrier traces
/// the vector once (the first borrow's deletion half), not twice per borrow, and the
/// marker's scans of the bag that the drops queued keep every element.
#[test]
fn reflock_barrier_traces_a_large_value_once_per_mark() {
    let _s = serial();
    let m = gc::attach();
    const N: usize = 1000;
    let bag = Root::new(Gc::new(
        &m,
        BigBag {
            items: gc::RefLock::new((0..N as u32).map(|i| Counted(obj(&m, i, None))).collect()),
        },
    ));
    let mut cycle = IncrementalCycle::start(&m);
    let before = TRACED.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..100 {
        let mut v = bag.items.borrow_mut(&m);
        let last = v.pop().unwrap();
        v.insert(0, last);
    }
    let by_barrier = TRACED.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(
        by_barrier, N,
        "the barrier traced {by_barrier} elements over 100 borrows"
    );
    while !cycle.mark_some(64) {}
    let by_marker = TRACED.load(std::sync::atomic::Ordering::Relaxed) - before - by_barrier;
    assert!(
        by_marker >= N,
        "the marker traced {by_marker} elements: the bag was not scanned"
    );
    cycle.finish();
    gc::collect();
    let ids: Vec<u32> = bag.items.borrow().iter().map(|c| c.0.id).collect();
    let mut want: Vec<u32> = (0..N as u32).collect();
    want.rotate_right(100);
    assert_eq!(ids, want);
}
