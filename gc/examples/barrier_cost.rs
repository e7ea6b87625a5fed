//! The write barrier's cost while a cycle marks, for callgrind, which counts instructions
//! exactly: `bash scripts/barrier-cost.sh` runs each mode with two store counts, so that
//! the difference divided by the difference in stores is one loop iteration, start-up
//! cancelled out. An iteration includes its allocations (and for `grey` the allocation
//! and the `Root` of its white node, made before the cycle): the barrier's share is the
//! difference from `off`, whose loop is `fill`'s.
//!
//! `cargo run --release --example barrier_cost MODE STORES`, with the barrier on (an
//! [`gc::debug::IncrementalCycle`] is marking), `STORES` stores of one of:
//! * `fill`: a new node into the empty `Lock<Option<Gc>>` of another new node, as a tree
//!   built top down does (GCBench's `populate`): the old value is `None`, the new one black.
//! * `replace`: a new node over the new node a cell holds: both values are black.
//! * `grey`: a node allocated before the cycle (white) over another: each store greys one
//!   object, until all are grey.
//! * `off`: `fill` with no cycle marking: the barrier's one load and test.

use gc::{Gc, Lock, Mutator, Trace};

#[derive(Trace)]
struct Node {
    next: Lock<Option<Gc<Node>>>,
}

fn node(m: &Mutator) -> Gc<Node> {
    Gc::new(
        m,
        Node {
            next: Lock::new(None),
        },
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "fill".into());
    let stores: usize = args.next().map_or(100_000, |s| s.parse().expect("STORES"));
    let m = gc::attach();
    // White nodes for `grey`, rooted through a vector of roots (`Root` keeps them alive
    // whatever the stack holds).
    let white: Vec<gc::Root<Node>> = if mode == "grey" {
        (0..stores).map(|_| gc::Root::new(node(&m))).collect()
    } else {
        Vec::new()
    };
    let holder = node(&m);
    let cycle = (mode != "off").then(|| gc::debug::IncrementalCycle::start(&m));
    match mode.as_str() {
        "fill" | "off" => {
            for _ in 0..stores {
                let parent = node(&m);
                parent.next.set(&m, Some(node(&m)));
            }
        }
        "replace" => {
            for _ in 0..stores {
                holder.next.set(&m, Some(node(&m)));
            }
        }
        "grey" => {
            for w in &white {
                holder.next.set(&m, Some(w.get()));
            }
        }
        _ => panic!("MODE: fill, replace, grey or off"),
    }
    if let Some(c) = cycle {
        c.finish();
    }
    std::hint::black_box(holder);
}
