//! Many mutator threads building and dropping shared graphs while collections run.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
use common::{list_sum, Link};

use gc::{Gc, Lock, Root, Trace};
use std::sync::Arc;

/// A shared list all threads push onto (through the barriered `Lock`), rooted precisely.
#[derive(Trace)]
struct Shared {
    head: Lock<Option<Gc<Link>>>,
}

#[test]
fn many_mutators_share_graphs_while_collecting() {
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
