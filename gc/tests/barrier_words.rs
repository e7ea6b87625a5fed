//! The barrier of a word cell (`Lock<Option<Gc<_>>>`): a store shades its old and its new
//! value, except a null one or one whose object is marked already, which it only tests.
//! What a store shades goes to the thread's barrier buffer, so the buffer's length says
//! which values each store shaded.
//!
//! One test per binary: incremental cycles need a single attached thread.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/obj.rs"]
mod common_obj;
use common_obj::{Obj, obj};
use gc::Gc;
use gc::debug::{IncrementalCycle, barrier_buffered};

/// root.list = [a, b, c, x], with x.slot = d: five objects that stay white when a cycle
/// starts, since only the root's list reaches them and no mark step runs.
#[inline(never)]
fn build(m: &gc::Mutator, root: &gc::Root<Obj>) {
    let x = obj(m, 4);
    x.slot.set(m, Some(obj(m, 5)));
    let mut list = root.list.borrow_mut(m);
    list.extend([obj(m, 1), obj(m, 2), obj(m, 3), x]);
}

/// The listed object `i`, read without a barrier (reads have none).
fn listed(root: &gc::Root<Obj>, i: usize) -> Gc<Obj> {
    root.list.borrow()[i]
}

#[inline(never)]
fn stores(m: &gc::Mutator, root: &gc::Root<Obj>) {
    let shaded = |before: usize| barrier_buffered(m) - before;
    let (a, b, c, x) = (
        listed(root, 0),
        listed(root, 1),
        listed(root, 2),
        listed(root, 3),
    );
    // Objects allocated while a cycle marks are black.
    let h = obj(m, 10);
    let n = barrier_buffered(m);

    // Into an empty cell: the null old value is skipped, the white new one shaded.
    h.slot.set(m, Some(a));
    assert_eq!(shaded(n), 1, "a white value stored over None is shaded");
    // The same again: both values are marked now.
    h.slot.set(m, Some(a));
    assert_eq!(shaded(n), 1, "a marked value is not shaded twice");
    // A black object over a marked one.
    h.slot.set(m, Some(obj(m, 11)));
    assert_eq!(
        shaded(n),
        1,
        "a black value over a marked one shades nothing"
    );
    // A white object over a black one, then another white one over it.
    h.slot.set(m, Some(b));
    assert_eq!(shaded(n), 2, "a white value over a black one is shaded");
    let old = h.slot.replace(m, Some(c));
    assert!(Gc::ptr_eq(old.unwrap(), b));
    assert_eq!(shaded(n), 3, "a white value over a marked one is shaded");
    // Emptied: the old value is marked, the new one null.
    h.slot.set(m, None);
    assert_eq!(
        shaded(n),
        3,
        "emptying a cell of a marked value shades nothing"
    );
    // Emptied of a white value (the deletion half): the old value is shaded.
    x.slot.set(m, None);
    assert_eq!(shaded(n), 4, "a white value deleted from a cell is shaded");
}

#[test]
fn a_word_store_shades_only_unmarked_values() {
    // Counts buffered objects: the span-queued mark would buffer their spans instead.
    gc::debug::set_green_tea(false);
    let m = gc::attach();
    let root = gc::Root::new(obj(&m, 0));
    build(&m, &root);
    gc::debug::clear_stack(64 << 10);
    let cycle = IncrementalCycle::start(&m);
    stores(&m, &root);
    cycle.finish();
    gc::debug::check_heap(&m);
}
