//! Many mutator threads building and dropping shared graphs while collections run, with
//! parallel marking forced on (ThreadSanitizer runs this file: `scripts/sanitizers.sh`).
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
#[path = "common/serial.rs"]
mod serial;

use common::{Link, list_sum};

use gc::{Gc, Lock, RefLock, Root, Trace};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

// The tests of this file run one at a time: `gc::debug::check_heap` counts every span
// that is neither listed nor in the caller's cache as lost, so it needs the other test's
// threads, and their cached spans, gone (and a failed check, a panic inside a collection,
// would leave the other test's threads waiting for the end of the cycle).
use serial::serial;

/// A shared list all threads push onto (through the barriered `Lock`), rooted precisely.
#[derive(Trace)]
struct Shared {
    head: Lock<Option<Gc<Link>>>,
}

#[test]
fn many_mutators_share_graphs_while_collecting() {
    let _s = serial();
    const THREADS: u64 = 6;
    const PER: u64 = 2_000;
    let mut m = gc::attach();
    let shared = Arc::new(Root::new(Gc::new(
        &m,
        Shared {
            head: Lock::new(None),
        },
    )));
    let lock = Arc::new(std::sync::Mutex::new(()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = shared.clone();
            let lock = lock.clone();
            std::thread::spawn(move || {
                let mut m = gc::attach();
                for i in 0..PER {
                    // Private garbage: a short list checked right away.
                    let mut local = None;
                    for k in 0..50 {
                        local = Some(Gc::new(
                            &m,
                            Link {
                                value: k,
                                next: Lock::new(local),
                            },
                        ));
                    }
                    assert_eq!(list_sum(local), (50, 49 * 50 / 2));
                    // One shared node, linked under a std lock taken in a blocking region.
                    let v = t * 1_000_000 + i;
                    let node = Gc::new(
                        &m,
                        Link {
                            value: v,
                            next: Lock::new(None),
                        },
                    );
                    let g = m.blocking(|| lock.lock().unwrap());
                    node.next.set(&m, shared.head.get());
                    shared.head.set(&m, Some(node));
                    drop(g);
                    if i % 500 == 0 {
                        gc::collect();
                    }
                }
                drop(m);
            })
        })
        .collect();
    for h in handles {
        m.blocking(|| h.join().unwrap());
    }
    gc::collect();
    let (n, s) = list_sum(shared.head.get());
    assert_eq!(n, THREADS * PER);
    let want: u64 = (0..THREADS)
        .map(|t| (0..PER).map(|i| t * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(s, want, "shared list corrupted");
    let st = gc::stats();
    assert!(st.cycles >= 6, "{st:?}");
    assert!(st.objects_freed > 0, "{st:?}");
    gc::debug::check_heap(&m);
}

/// A wide node: tracing it greys `FAN` objects at once, so the collecting marker, whose
/// grey stack passes 1024 objects, hands half to the idle helpers.
#[derive(Trace)]
struct Fan {
    seed: u64,
    kids: RefLock<Vec<Gc<Link>>>,
}

const FAN: u64 = 3_000;

/// `FAN` two-node lists `(seed + k) -> 1` under one `Fan`. Each kid goes into the fan (a GC
/// object on this stack) before the next allocation, so nothing waits unrooted.
#[inline(never)]
fn build_fan(m: &gc::Mutator, seed: u64) -> Gc<Fan> {
    let f = Gc::new(
        m,
        Fan {
            seed,
            kids: RefLock::new(Vec::with_capacity(FAN as usize)),
        },
    );
    for k in 0..FAN {
        let tail = Gc::new(
            m,
            Link {
                value: 1,
                next: Lock::new(None),
            },
        );
        let kid = Gc::new(
            m,
            Link {
                value: seed + k,
                next: Lock::new(Some(tail)),
            },
        );
        f.kids.borrow_mut(m).push(kid);
    }
    f
}

/// Panics unless `f` is a complete, intact fan.
fn check_fan(f: Gc<Fan>) {
    let kids = f.kids.borrow();
    assert_eq!(kids.len() as u64, FAN, "fan {} lost kids", f.seed);
    for (k, &kid) in kids.iter().enumerate() {
        assert_eq!(
            list_sum(Some(kid)),
            (2, f.seed + k as u64 + 1),
            "fan {} kid {k} corrupted",
            f.seed
        );
    }
}

/// One slot per thread, each holding that thread's latest fan or nothing.
#[derive(Trace)]
struct Table {
    slots: Vec<Lock<Option<Gc<Fan>>>>,
}

#[test]
fn parallel_marking_while_mutators_build_and_drop_shared_graphs() {
    let _s = serial();
    const THREADS: usize = 3;
    const ROUNDS: u64 = 30;
    const MARKERS: usize = 4;
    // Every cycle marks in parallel, with 4 markers whatever the machine.
    gc::debug::set_parallel_mark_min(0);
    // The stopped mark's helpers are what this tests: the concurrent mark (the default)
    // uses a quarter of the markers.
    gc::debug::set_concurrent(false);
    gc::debug::set_mark_workers(MARKERS);
    let mut m = gc::attach();
    let table = Arc::new(Root::new(Gc::new(
        &m,
        Table {
            slots: (0..THREADS).map(|_| Lock::new(None)).collect(),
        },
    )));
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let table = table.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let m = gc::attach();
                for i in 0..ROUNDS {
                    let f = build_fan(&m, ((t as u64) << 40) + (i << 20));
                    check_fan(f);
                    // Publish it: the previous fan of this slot becomes garbage.
                    table.slots[t].set(&m, Some(f));
                    // Read a neighbour's fan while it may be replaced or dropped.
                    if let Some(other) = table.slots[(t + 1) % THREADS].get() {
                        check_fan(other);
                    }
                    // Every third round, drop the whole shared graph of this slot.
                    if i % 3 == 2 {
                        table.slots[t].set(&m, None);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                drop(m);
            })
        })
        .collect();
    // Collect while they run; after every cycle, every published graph is intact. Keep
    // going (bounded) until the helpers have marked something, so that the assertion
    // below is about the collector, not about scheduling.
    let mut cycles = 0;
    while done.load(Ordering::SeqCst) < THREADS
        || (gc::stats().helper_marked_objects == 0 && cycles < 2_000)
    {
        gc::collect();
        cycles += 1;
        let st = gc::stats();
        assert_eq!(st.mark_workers, MARKERS, "{st:?}");
        for slot in &table.slots {
            if let Some(f) = slot.get() {
                check_fan(f);
            }
        }
        if done.load(Ordering::SeqCst) == THREADS {
            // The workers are gone: publish a fan of our own so that cycles still have
            // work to share.
            table.slots[0].set(&m, Some(build_fan(&m, 7 << 50)));
        }
    }
    for h in handles {
        m.blocking(|| h.join().unwrap());
    }
    gc::collect();
    for slot in &table.slots {
        if let Some(f) = slot.get() {
            check_fan(f);
        }
    }
    let st = gc::stats();
    assert_eq!(st.mark_workers, MARKERS, "{st:?}");
    assert!(
        st.helper_marked_objects > 0,
        "helper markers never marked anything: {st:?}"
    );
    assert!(
        st.objects_freed > 0,
        "dropped graphs were not freed: {st:?}"
    );
    gc::debug::check_heap(&m);
}

#[derive(Trace)]
struct TreeNode {
    left: Lock<Option<Gc<TreeNode>>>,
    right: Lock<Option<Gc<TreeNode>>>,
}

fn tree(m: &gc::Mutator, depth: u32) -> Gc<TreeNode> {
    let (l, r) = if depth > 1 {
        (Some(tree(m, depth - 1)), Some(tree(m, depth - 1)))
    } else {
        (None, None)
    };
    Gc::new(
        m,
        TreeNode {
            left: Lock::new(l),
            right: Lock::new(r),
        },
    )
}

fn tree_size(n: Gc<TreeNode>) -> usize {
    1 + n.left.get().map_or(0, tree_size) + n.right.get().map_or(0, tree_size)
}

/// A single binary tree is the one grey root of each cycle, and its depth-first mark keeps
/// about one entry per level on the marker's stack: the helper markers must still get
/// work (the collecting marker gives the bottom of its stack away whenever one is idle).
/// Bounded retries, as above: a helper that is not scheduled before the mark ends marks
/// nothing in that cycle.
#[test]
fn helper_markers_get_work_from_a_single_tree() {
    let _s = serial();
    const DEPTH: u32 = 19;
    gc::debug::set_parallel_mark_min(0);
    gc::debug::set_concurrent(false); // as in the test above
    gc::debug::set_mark_workers(2);
    let m = gc::attach();
    let root = Root::new(tree(&m, DEPTH));
    let before = gc::stats().helper_marked_objects;
    let mut cycles = 0;
    while gc::stats().helper_marked_objects == before && cycles < 200 {
        gc::collect();
        cycles += 1;
    }
    let st = gc::stats();
    assert_eq!(st.mark_workers, 2, "{st:?}");
    assert!(
        st.helper_marked_objects > before,
        "the helper marked nothing of a {DEPTH}-level tree in {cycles} cycles: {st:?}"
    );
    assert_eq!(tree_size(root.get()), (1 << DEPTH) - 1);
    gc::debug::check_heap(&m);
}

/// Allocates an object that nothing references; returns its address inverted (invisible to
/// the conservative scan) and a weak reference to it.
#[inline(never)]
fn unreferenced_link(m: &gc::Mutator) -> (usize, gc::Weak<Link>) {
    let n = Gc::new(
        m,
        Link {
            value: 1,
            next: Lock::new(None),
        },
    );
    (!(Gc::as_ptr(n) as usize), gc::Weak::new(m, n))
}

/// A blocking closure may write the caller's locals, which lie above the stack pointer the
/// thread published on entering the region. The collector must not read them meanwhile (a
/// data race): it scans the stack as the thread left it on entry. Here the closure writes
/// the only pointer to an object into such a local while another thread collects; the
/// cycle does not see it, so the object dies. (The rule this implies: a `Gc` a blocking
/// closure obtains is not a root until the region ends.)
#[test]
fn the_collector_does_not_read_what_a_blocking_closure_writes() {
    let _s = serial();
    let mut m = gc::attach();
    let (hidden, weak) = unreferenced_link(&m);
    gc::debug::clear_stack(64 << 10);
    let mut slot = 0usize;
    let slot_ptr: *mut usize = &mut slot;
    m.blocking(|| {
        // SAFETY: `slot` is a live local of the caller; volatile, so that the store is made
        // before the collection and is not merged with the one after it.
        unsafe { std::ptr::write_volatile(slot_ptr, !hidden) };
        std::thread::spawn(gc::collect).join().unwrap();
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(slot_ptr, 0) };
    });
    assert!(
        weak.is_cleared(),
        "the collector read a word the blocking closure wrote"
    );
}

/// The data race itself, for ThreadSanitizer (`scripts/sanitizers.sh tsan` runs this file):
/// a blocking closure keeps writing a captured local, with no synchronisation, while
/// another thread runs collections. A collector that scanned the blocking thread's live
/// stack read those words as they were written (TSan reported the race); it scans the copy
/// the thread made on entry. Natively this checks that the collections ran and the writes
/// went on meanwhile.
#[test]
fn a_blocking_closure_writes_captured_locals_while_collections_run() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicBool = AtomicBool::new(false);
    let _s = serial();
    let mut m = gc::attach();
    let cycles0 = gc::stats().cycles;
    let mut counters = [0u64; 16];
    let collector = std::thread::spawn(|| {
        while !STARTED.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        for _ in 0..10 {
            gc::collect();
        }
        DONE.store(true, Ordering::Relaxed);
    });
    m.blocking(|| {
        // Relaxed flags: no happens-before edge orders the writes and the scans.
        loop {
            for c in counters.iter_mut() {
                // SAFETY: `c` is a live element of the caller's array; volatile, so that
                // each store is made in the loop.
                unsafe { std::ptr::write_volatile(c, *c + 1) };
            }
            STARTED.store(true, Ordering::Relaxed);
            if DONE.load(Ordering::Relaxed) {
                break;
            }
        }
        collector.join().unwrap();
    });
    assert!(gc::stats().cycles >= cycles0 + 10, "the collections ran");
    assert!(counters.iter().all(|&c| c > 0), "the closure wrote");
}
