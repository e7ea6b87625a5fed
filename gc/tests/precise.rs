//! The precise mode (`--features precise`): roots are `Root`s and handle scopes only, no
//! conservative stack scan, so the collector never reads raw stack words and Miri can
//! check it:
//!
//! ```text
//! MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-permissive-provenance -Zmiri-ignore-leaks" \
//!     cargo +nightly miri test -p gomalloc-gc --features precise --test precise
//! ```
//!
//! (`-Zmiri-ignore-leaks`: the finalizer thread lives until the process exits, by design.)
//!
//! Precision makes liveness exact, so these tests also check that what is *not* rooted
//! dies (a `Weak` to it is cleared), which the conservative mode cannot promise.
#![cfg(feature = "precise")]

mod common;

use common::{Link, list_sum};
use gc::debug::IncrementalCycle;
use gc::{Gc, Lock, RefLock, Root, Trace, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tests that collect run one at a time (the incremental cycle needs a single mutator;
/// exact liveness needs no other test's garbage in flight).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Miri is slow: small sizes there, bigger natively.
const N: u64 = if cfg!(miri) { 40 } else { 2_000 };

#[derive(Trace)]
struct Bag {
    items: RefLock<Vec<Gc<Link>>>,
    name: String,
}

/// A `Weak` is a GC object too: in the precise mode it needs a root like any other.
#[derive(Trace)]
struct Watch {
    w: Weak<Link>,
}

fn watch(m: &gc::Mutator, target: Gc<Link>) -> Root<Watch> {
    Root::new(Gc::new(
        m,
        Watch {
            w: Weak::new(m, target),
        },
    ))
}

#[test]
fn handles_keep_lists_and_unrooted_objects_die() {
    let _s = serial();
    let m = gc::attach();
    let freed0 = gc::stats().objects_freed;
    let (weak_dead, weak_live) = m.scope(|s| {
        let mut head = s.handle(Gc::new(
            &m,
            Link {
                value: 0,
                next: Lock::new(None),
            },
        ));
        for v in 1..N {
            let n = Gc::new(
                &m,
                Link {
                    value: v,
                    next: Lock::new(Some(head.get())),
                },
            );
            head = s.handle(n);
        }
        // Garbage: only a weak reference, made in an inner scope that ends at once.
        let weak_dead = m.scope(|inner| {
            let g = inner.handle(Gc::new(
                &m,
                Link {
                    value: 99,
                    next: Lock::new(None),
                },
            ));
            watch(&m, g.get())
        });
        gc::collect();
        gc::collect();
        assert_eq!(list_sum(Some(head.get())), (N, N * (N - 1) / 2));
        (weak_dead, watch(&m, head.get()))
    });
    assert!(weak_dead.w.is_cleared(), "an unrooted object survived");
    assert!(!weak_live.w.is_cleared());
    // The scope is gone: the list is garbage now.
    gc::collect();
    gc::collect();
    assert!(weak_live.w.is_cleared(), "a list outliving its scope");
    assert!(gc::stats().objects_freed - freed0 >= N as usize);
    gc::debug::check_heap(&m);
}

/// A handle belongs to the scope that made it, not to the innermost one open: made through
/// an outer scope while an inner one is open, it roots its object until the outer scope
/// ends.
#[test]
fn an_outer_handle_made_inside_an_inner_scope_outlives_the_inner_scope() {
    let _s = serial();
    let m = gc::attach();
    m.scope(|outer| {
        let kept = m.scope(|_inner| {
            let n = Gc::new(
                &m,
                Link {
                    value: 7,
                    next: Lock::new(None),
                },
            );
            outer.handle(n)
        });
        let w = watch(&m, kept.get());
        gc::collect();
        assert!(
            !w.w.is_cleared(),
            "the inner scope's end unrooted an outer handle"
        );
        assert_eq!(kept.value, 7);
    });
}

#[test]
fn roots_refs_and_the_tiny_allocator() {
    let _s = serial();
    let m = gc::attach();
    let bag = Root::new(Gc::new(
        &m,
        Bag {
            items: RefLock::new(Vec::new()),
            name: "bag".to_string(),
        },
    ));
    for v in 0..N {
        let n = Gc::new(
            &m,
            Link {
                value: v,
                next: Lock::new(None),
            },
        );
        // `n` is in no handle: it must be stored before the next safepoint.
        bag.items.borrow_mut(&m).push(n);
    }
    m.scope(|s| {
        // Tiny objects share 16-byte blocks; each keeps its value across collections.
        let tiny: Vec<_> = (0..N as u32).map(|i| s.handle(Gc::new(&m, i))).collect();
        let bytes: Vec<_> = (0..N as u8).map(|i| s.handle(Gc::new(&m, i))).collect();
        gc::collect();
        for (i, (t, b)) in tiny.iter().zip(&bytes).enumerate() {
            assert_eq!((**t, **b), (i as u32, i as u8));
        }
    });
    gc::collect();
    assert_eq!(bag.name, "bag");
    let items = bag.items.borrow();
    assert_eq!(items.len() as u64, N);
    assert!(items.iter().enumerate().all(|(i, n)| n.value == i as u64));
    drop(items);
    gc::debug::check_heap(&m);
}

static FINALIZED: AtomicUsize = AtomicUsize::new(0);

fn finalize(_: &gc::Mutator, n: Gc<Link>) {
    assert_eq!(n.value, 7);
    FINALIZED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn finalizers_run_once() {
    let _s = serial();
    let mut m = gc::attach();
    m.scope(|s| {
        let n = s.handle(Gc::new(
            &m,
            Link {
                value: 7,
                next: Lock::new(None),
            },
        ));
        gc::set_finalizer(&m, n.get(), finalize);
        gc::collect();
    });
    assert_eq!(
        FINALIZED.load(Ordering::SeqCst),
        0,
        "finalized while rooted"
    );
    gc::collect();
    m.run_finalizers();
    gc::collect();
    m.run_finalizers();
    assert_eq!(FINALIZED.load(Ordering::SeqCst), 1);
}

/// What `finalize_after_collecting` read from its object (value, child's value).
static SEEN: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// Collects and allocates before touching its object: the object (and its child) must
/// stay rooted while the finalizer runs (design §7), though no handle holds it and the
/// precise mode does not scan the finalizer thread's stack.
fn finalize_after_collecting(m: &gc::Mutator, n: Gc<Link>) {
    gc::collect();
    for v in 0..N {
        Gc::new(
            m,
            Link {
                value: v,
                next: Lock::new(None),
            },
        );
    }
    gc::collect();
    let child = n.next.get().expect("the child is still linked");
    *SEEN.lock().unwrap() = Some((n.value, child.value));
}

#[test]
fn a_running_finalizer_keeps_its_object() {
    let _s = serial();
    let mut m = gc::attach();
    let weak = m.scope(|s| {
        let child = s.handle(Gc::new(
            &m,
            Link {
                value: 8,
                next: Lock::new(None),
            },
        ));
        let n = Gc::new(
            &m,
            Link {
                value: 7,
                next: Lock::new(Some(child.get())),
            },
        );
        gc::set_finalizer(&m, n, finalize_after_collecting);
        watch(&m, n)
    });
    gc::collect();
    m.run_finalizers();
    assert_eq!(*SEEN.lock().unwrap(), Some((7, 8)));
    // Not resurrected: once its finalizer returned the object is garbage again.
    gc::collect();
    assert!(
        weak.w.is_cleared(),
        "a finalized object outlived its finalizer"
    );
    gc::debug::check_heap(&m);
}

#[test]
fn barrier_keeps_what_marking_would_miss() {
    let _s = serial();
    let m = gc::attach();
    m.scope(|s| {
        let root = s.handle(Gc::new(
            &m,
            Link {
                value: 0,
                next: Lock::new(None),
            },
        ));
        let hidden = m.scope(|inner| {
            let a = inner.handle(Gc::new(
                &m,
                Link {
                    value: 1,
                    next: Lock::new(None),
                },
            ));
            let b = inner.handle(Gc::new(
                &m,
                Link {
                    value: 2,
                    next: Lock::new(None),
                },
            ));
            a.next.set(&m, Some(b.get()));
            root.next.set(&m, Some(a.get()));
            watch(&m, b.get())
        });
        // Marking starts (root grey) and blackens `root` only (handles are greyed last,
        // so traced first); then `b` moves from `a` into the black `root` and is cut from
        // `a`. Only the barrier keeps `b`. (Draining all marking here would mark `b` before
        // the mutation and prove nothing.)
        let mut cycle = IncrementalCycle::start(&m);
        assert!(!cycle.mark_some(1), "`a` is still grey after one step");
        let a = root.next.get().unwrap();
        let b = a.next.replace(&m, None);
        root.next.set(&m, b);
        while !cycle.mark_some(1) {}
        cycle.finish();
        assert!(!hidden.w.is_cleared(), "the barrier lost an object");
        gc::collect();
        assert_eq!(root.next.get().unwrap().value, 2);
    });
}

/// A node whose link is a pair: not one word, so its `Lock` takes the striped-lock path.
#[derive(Trace)]
struct PairNode {
    value: u64,
    next: Lock<(u64, Option<Gc<PairNode>>)>,
}

fn pair_node(m: &gc::Mutator, value: u64) -> Gc<PairNode> {
    Gc::new(
        m,
        PairNode {
            value,
            next: Lock::new((0, None)),
        },
    )
}

#[test]
fn lock_cells_word_and_striped_keep_the_barrier() {
    let _s = serial();
    // A `Lock` is as big as its value: an atomic word for `Option<Gc>`, a plain copy under a
    // stripe lock for anything else.
    assert_eq!(
        std::mem::size_of::<Lock<Option<Gc<Link>>>>(),
        std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::size_of::<Lock<(u64, Option<Gc<PairNode>>)>>(),
        std::mem::size_of::<(u64, Option<Gc<PairNode>>)>()
    );
    let m = gc::attach();
    m.scope(|s| {
        // root -> a -> b, the links striped cells.
        let root = s.handle(pair_node(&m, 0));
        m.scope(|inner| {
            let a = inner.handle(pair_node(&m, 1));
            let b = pair_node(&m, 2);
            a.next.set(&m, (2, Some(b)));
            root.next.set(&m, (1, Some(a.get())));
        });
        // Marking starts and traces one object (the root, the only grey one): then `b` is
        // cut from the grey `a` and stored into the black root. Only the barrier (the old
        // value shaded by `replace`, the new one by `set`) keeps `b`.
        let mut cycle = IncrementalCycle::start(&m);
        cycle.mark_some(1);
        let a = s.handle(root.next.get().1.unwrap());
        let (tag, b) = a.next.replace(&m, (0, None));
        root.next.set(&m, (tag, b));
        while !cycle.mark_some(1) {}
        cycle.finish();
        gc::collect();
        let (tag, b) = root.next.get();
        assert_eq!((tag, b.map(|b| b.value)), (2, Some(2)));
        assert_eq!(a.next.get().0, 0);
    });
    gc::debug::check_heap(&m);
}

#[test]
fn threads_share_a_rooted_list() {
    let _s = serial();
    const THREADS: u64 = 2;
    let per = N / 2;
    let mut m = gc::attach();
    let shared = Arc::new(Root::new(Gc::new(
        &m,
        Link {
            value: u64::MAX,
            next: Lock::new(None),
        },
    )));
    let lock = Arc::new(Mutex::new(()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (shared, lock) = (shared.clone(), lock.clone());
            std::thread::spawn(move || {
                let mut m = gc::attach();
                for i in 0..per {
                    let node = Gc::new(
                        &m,
                        Link {
                            value: t * 1_000 + i,
                            next: Lock::new(None),
                        },
                    );
                    // Rooted across the blocking region (a safepoint).
                    let node = Root::new(node);
                    let g = m.blocking(|| lock.lock().unwrap());
                    node.next.set(&m, shared.next.get());
                    shared.next.set(&m, Some(node.get()));
                    drop(g);
                    if i % 8 == 0 {
                        gc::collect();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        m.blocking(|| h.join().unwrap());
    }
    gc::collect();
    let (n, s) = list_sum(shared.next.get());
    assert_eq!(n, THREADS * per);
    let want: u64 = (0..THREADS)
        .map(|t| (0..per).map(|i| t * 1_000 + i).sum::<u64>())
        .sum();
    assert_eq!(s, want);
    gc::debug::check_heap(&m);
}

#[test]
fn marking_skips_a_mutably_borrowed_reflock() {
    let _s = serial();
    let m = gc::attach();
    m.scope(|s| {
        let bag = s.handle(Gc::new(
            &m,
            Bag {
                items: RefLock::new(Vec::new()),
                name: String::new(),
            },
        ));
        for v in 0..4 {
            let n = Gc::new(
                &m,
                Link {
                    value: v,
                    next: Lock::new(None),
                },
            );
            bag.items.borrow_mut(&m).push(n);
        }
        let mut cycle = IncrementalCycle::start(&m);
        {
            // Opened while marking: the old contents are shaded now, the new ones when
            // the borrow ends; the marker meets the borrowed cell and skips it.
            let mut items = bag.items.borrow_mut(&m);
            while !cycle.mark_some(1) {}
            let first = items.remove(0);
            items.push(Gc::new(
                &m,
                Link {
                    value: 4,
                    next: Lock::new(Some(first)),
                },
            ));
        }
        while !cycle.mark_some(1) {}
        cycle.finish();
        gc::collect();
        let items = bag.items.borrow();
        let values: Vec<u64> = items.iter().map(|n| n.value).collect();
        assert_eq!(values, [1, 2, 3, 4]);
        assert_eq!(items[3].next.get().unwrap().value, 0);
    });
}

#[test]
#[should_panic(expected = "mutably borrowed")]
fn collect_refuses_to_run_inside_a_mutable_borrow() {
    let _s = serial();
    let m = gc::attach();
    let bag = Root::new(Gc::new(
        &m,
        Bag {
            items: RefLock::new(Vec::new()),
            name: String::new(),
        },
    ));
    let _items = bag.items.borrow_mut(&m);
    gc::collect();
}

/// A slice element that counts its drops (exact in the precise mode).
#[derive(Trace)]
#[gc(unsafe_drop)]
struct Elem {
    link: Gc<Link>,
}
static ELEM_DROPS: AtomicUsize = AtomicUsize::new(0);
impl Drop for Elem {
    fn drop(&mut self) {
        // Touches no GC pointer (Trace rule 5).
        ELEM_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct VecHolder {
    items: gc::GcVec<Gc<Link>>,
}

#[test]
fn slices_and_gcvecs_through_handles_and_roots() {
    let _s = serial();
    let m = gc::attach();
    let n = N as usize;
    let d0 = ELEM_DROPS.load(Ordering::SeqCst);
    m.scope(|s| {
        // The element closure allocates: the half-built slice is rooted meanwhile, and a
        // collection in the middle traces the elements made so far.
        let kept = s.handle(Gc::from_fn(&m, n, |i| {
            if i == n / 2 {
                gc::collect();
            }
            Elem {
                link: Gc::new(
                    &m,
                    Link {
                        value: i as u64,
                        next: Lock::new(None),
                    },
                ),
            }
        }));
        let name = s.handle(Gc::from_str(&m, "precise"));
        // Unrooted: dies at the next collection, each element dropped once.
        Gc::from_fn(&m, n, |i| Elem { link: kept[i].link });
        let h = Root::new(Gc::new(
            &m,
            VecHolder {
                items: gc::GcVec::new(),
            },
        ));
        for i in 0..N {
            let l = Gc::new(
                &m,
                Link {
                    value: i,
                    next: Lock::new(None),
                },
            );
            h.items.push(&m, l);
        }
        gc::collect();
        assert_eq!(ELEM_DROPS.load(Ordering::SeqCst) - d0, n);
        assert_eq!(&*name, "precise");
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, e)| e.link.value == i as u64)
        );
        assert_eq!(h.items.len(), n);
        assert!(h.items.iter().enumerate().all(|(i, l)| l.value == i as u64));
        assert_eq!(h.items.pop(&m).map(|l| l.value), Some(N - 1));
    });
    gc::collect();
    assert_eq!(ELEM_DROPS.load(Ordering::SeqCst) - d0, 2 * n);
}
