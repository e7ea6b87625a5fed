//! The write barrier's per-thread buffer: objects a mutator shades stay in its own buffer
//! (no shared lock per shade) until it holds 256, and mark termination still scans every
//! one of them. Each hidden object has a child reachable only through it, so an object
//! whose mark bit the barrier set but that nobody scanned loses its child.
//!
//! One test per binary: incremental cycles need a single attached thread.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/obj.rs"]
mod common_obj;
use common_obj::{Obj, obj};
use gc::debug::IncrementalCycle;
use gc::{Gc, RefLock, Trace, Weak};

/// The weak references to the children, kept in a GC object (a `Vec` on the malloc heap
/// is not scanned, and the weak cells are GC objects).
#[derive(Trace)]
struct Weaks {
    list: RefLock<Vec<Weak<Obj>>>,
}

/// root.slot -> holder; holder.list -> `n` parents, each parent.slot -> its child. Returns
/// weak references to the children.
#[inline(never)]
fn build(m: &gc::Mutator, root: &gc::Root<Obj>, n: u32) -> gc::Root<Weaks> {
    let holder = obj(m, 0);
    let weaks = gc::Root::new(Gc::new(
        m,
        Weaks {
            list: RefLock::new(Vec::new()),
        },
    ));
    for i in 0..n {
        let parent = obj(m, 1000 + i);
        let child = obj(m, 2000 + i);
        parent.slot.set(m, Some(child));
        holder.list.borrow_mut(m).push(parent);
        weaks.list.borrow_mut(m).push(Weak::new(m, child));
    }
    root.slot.set(m, Some(holder));
    weaks
}

/// Moves every parent out of the (grey, unscanned) holder into a new holder, allocated
/// black, and drops the old holder: only the deletion barrier's shading keeps the
/// parents, and only a scan of each shaded parent keeps its child.
#[inline(never)]
fn hide(m: &gc::Mutator, root: &gc::Root<Obj>) {
    let old = root.slot.get().unwrap();
    let parents = std::mem::take(&mut *old.list.borrow_mut(m));
    let new = obj(m, 1);
    *new.list.borrow_mut(m) = parents;
    root.slot.set(m, Some(new));
}

#[inline(never)]
fn check(m: &gc::Mutator, root: &gc::Root<Obj>, weaks: &gc::Root<Weaks>) {
    let weaks = weaks.list.borrow();
    let holder = root.slot.get().unwrap();
    let parents = holder.list.borrow();
    assert_eq!(parents.len(), weaks.len());
    for (i, (p, w)) in parents.iter().zip(weaks.iter()).enumerate() {
        let c = w
            .upgrade(m)
            .expect("child of an object shaded by the barrier was freed");
        assert_eq!(c.id, 2000 + i as u32);
        assert!(Gc::ptr_eq(p.slot.get().unwrap(), c));
    }
}

/// One cycle: build `n` hidden parents, hide them after one mark step, then either keep
/// marking (`mark_on`) or finish at once. Returns what the barrier buffer held after the
/// hide.
#[inline(never)]
fn cycle(m: &gc::Mutator, root: &gc::Root<Obj>, n: u32, mark_on: bool) -> usize {
    let weaks = build(m, root, n);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(m);
    // Trace exactly one object (a root); the holder is grey or white, the parents and
    // children white.
    assert!(!cycle.mark_some(1));
    hide(m, root);
    let buffered = gc::debug::barrier_buffered(m);
    gc::debug::clear_stack(64 << 10);
    if mark_on {
        while !cycle.mark_some(16) {}
        assert_eq!(gc::debug::barrier_buffered(m), 0);
    }
    cycle.finish();
    gc::debug::clear_stack(64 << 10);
    gc::collect();
    check(m, root, &weaks);
    root.slot.set(m, None);
    buffered
}

#[test]
fn barrier_buffer_is_drained_by_termination_and_flushed_when_full() {
    // Counts buffered objects: the span-queued mark would buffer their spans instead.
    gc::debug::set_green_tea(false);
    let m = gc::attach();
    let root = gc::Root::new(obj(&m, 0));
    // Few shades: all in this thread's buffer, and `finish` alone (no `mark_some`) must
    // still scan them.
    let held = cycle(&m, &root, 10, false);
    assert!(
        (10..256).contains(&held),
        "the parents shaded by the deletion barrier stay buffered ({held} held)"
    );
    // Many: the buffer went to the shared list when it reached 256; marking on drains it.
    let held = cycle(&m, &root, 300, true);
    assert!(held < 256, "a full buffer is flushed ({held} held)");
    let held = cycle(&m, &root, 300, false);
    assert!(held < 256, "a full buffer is flushed ({held} held)");
    gc::debug::check_heap(&m);
}
