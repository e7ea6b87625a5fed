//! Go's hybrid write barrier, exercised by the incremental test mode: marking advances in
//! steps between the mutator's writes, as a concurrent collector would see the heap. Each
//! scenario hides an object in a way that loses it without the barrier.
//!
//! One test per binary: incremental cycles need a single attached thread.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/obj.rs"]
mod common_obj;
use common_obj::{Obj, obj};
use gc::debug::IncrementalCycle;
use gc::{Gc, Weak};

/// root -> a -> b. Start marking (root grey, then black after one step), move `b` from `a`
/// into `root` (a black object) and cut it from `a`. Without the barrier `b` is never
/// traced: `root` is already black and `a` no longer points to it.
#[inline(never)]
fn lock_scenario(m: &gc::Mutator, root: &gc::Root<Obj>) -> Weak<Obj> {
    let a = obj(m, 1);
    let b = obj(m, 2);
    a.slot.set(m, Some(b));
    root.slot.set(m, Some(a));
    Weak::new(m, b)
}

#[inline(never)]
fn hide_via_lock(m: &gc::Mutator, root: &gc::Root<Obj>) {
    let a = root.slot.get().unwrap();
    let b = a.slot.get().unwrap();
    // `root` holds `a` in `slot`; give `b` to root's list and drop it from `a`.
    root.list.borrow_mut(m).push(b);
    a.slot.set(m, None);
}

#[inline(never)]
fn refill_scenario(m: &gc::Mutator, root: &gc::Root<Obj>) -> Weak<Obj> {
    let c = obj(m, 3);
    root.list.borrow_mut(m).push(c);
    Weak::new(m, c)
}

#[inline(never)]
fn hide_via_reflock(m: &gc::Mutator, root: &gc::Root<Obj>) {
    // Take `c` out of root's list (deletion: must be shaded) and store it in a fresh
    // object allocated black (insertion into a black object).
    let c = root.list.borrow_mut(m).remove(0);
    assert_eq!(c.id, 3);
    let holder = obj(m, 4);
    holder.slot.set(m, Some(c));
    root.slot.set(m, Some(holder));
}

#[test]
fn hybrid_barrier_keeps_hidden_objects() {
    let m = gc::attach();
    let root = gc::Root::new(obj(&m, 0));
    let wb = lock_scenario(&m, &root);
    let wc = refill_scenario(&m, &root);
    gc::debug::clear_stack(64 << 10);

    let mut cycle = IncrementalCycle::start(&m);
    // Trace exactly one object: the root (now black); `a` and `c` are grey, `b` white.
    assert!(!cycle.mark_some(1));
    hide_via_lock(&m, &root);
    hide_via_reflock(&m, &root);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(16) {}
    cycle.finish();

    // A second full cycle: everything still reachable must still be there and intact.
    gc::debug::clear_stack(64 << 10);
    gc::collect();
    check(&m, &root, wb, wc);
    gc::debug::check_heap(&m);
}

#[inline(never)]
fn check(m: &gc::Mutator, root: &gc::Root<Obj>, wb: Weak<Obj>, wc: Weak<Obj>) {
    let b = wb
        .upgrade(m)
        .expect("object moved behind a black object was freed");
    assert_eq!(b.id, 2);
    assert!(Gc::ptr_eq(root.list.borrow()[0], b));
    let c = wc
        .upgrade(m)
        .expect("object taken out of a RefLock was freed");
    assert_eq!(c.id, 3);
    let holder = root.slot.get().unwrap();
    assert_eq!(holder.id, 4);
    assert!(Gc::ptr_eq(holder.slot.get().unwrap(), c));
}
