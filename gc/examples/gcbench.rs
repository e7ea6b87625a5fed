//! Boehm's GCBench (Hans Boehm, John Ellis, after John Ellis and Pete Kovac's Java
//! original), on the collector: top-down construction mutates nodes through `Lock`, so the
//! write barrier is on the measured path. `cargo run --release --example gcbench [DEPTH]`:
//! `DEPTH` (default 16, the original's) is the long-lived and the deepest tree's depth, the
//! stretch tree is 2 deeper; CI runs a small one in a debug build. The program checks its
//! trees and exits with status 1 on a wrong one.

use gc::{Gc, Lock, Mutator, Trace};
use std::time::Instant;

const ARRAY_SIZE: usize = 500_000;
const MIN_TREE_DEPTH: i32 = 4;

#[derive(Trace)]
struct Node {
    left: Lock<Option<Gc<Node>>>,
    right: Lock<Option<Gc<Node>>>,
    #[allow(dead_code)]
    i: i32,
    #[allow(dead_code)]
    j: i32,
}

fn new_node(m: &Mutator, l: Option<Gc<Node>>, r: Option<Gc<Node>>) -> Gc<Node> {
    Gc::new(
        m,
        Node {
            left: Lock::new(l),
            right: Lock::new(r),
            i: 0,
            j: 0,
        },
    )
}

fn tree_size(i: i32) -> i32 {
    (1 << (i + 1)) - 1
}

fn num_iters(stretch_depth: i32, i: i32) -> i32 {
    2 * tree_size(stretch_depth) / tree_size(i)
}

/// Nodes in the tree under `n`: complete trees of depth `d` have `tree_size(d)`.
fn count(n: Gc<Node>) -> i32 {
    1 + n.left.get().map_or(0, count) + n.right.get().map_or(0, count)
}

/// Exits with status 1 when a tree has the wrong number of nodes.
fn check(what: &str, n: Gc<Node>, depth: i32) {
    if count(n) != tree_size(depth) {
        println!("Failed: {what} of depth {depth} has {} nodes", count(n));
        std::process::exit(1);
    }
}

/// Builds a tree top down, writing children into existing nodes.
fn populate(m: &Mutator, depth: i32, node: Gc<Node>) {
    if depth <= 0 {
        return;
    }
    let (l, r) = (new_node(m, None, None), new_node(m, None, None));
    node.left.set(m, Some(l));
    node.right.set(m, Some(r));
    populate(m, depth - 1, l);
    populate(m, depth - 1, r);
}

/// Builds a tree bottom up.
fn make_tree(m: &Mutator, depth: i32) -> Gc<Node> {
    if depth <= 0 {
        new_node(m, None, None)
    } else {
        let l = make_tree(m, depth - 1);
        let r = make_tree(m, depth - 1);
        new_node(m, Some(l), Some(r))
    }
}

fn print_diagnostics() {
    let s = gc::stats();
    println!(
        " Heap goal = {} Live = {} (bytes)",
        s.heap_goal, s.heap_live
    );
}

fn time_construction(m: &Mutator, stretch_depth: i32, depth: i32) {
    let iters = num_iters(stretch_depth, depth);
    println!("Creating {iters} trees of depth {depth}");
    let t = Instant::now();
    for i in 0..iters {
        let temp = new_node(m, None, None);
        populate(m, depth, temp);
        if i == iters - 1 {
            check("a top-down tree", temp, depth);
        }
    }
    println!(
        "\tTop down construction took {} msec",
        t.elapsed().as_millis()
    );
    let t = Instant::now();
    for i in 0..iters {
        let t = make_tree(m, depth);
        if i == iters - 1 {
            check("a bottom-up tree", t, depth);
        }
    }
    println!(
        "\tBottom up construction took {} msec",
        t.elapsed().as_millis()
    );
}

fn main() {
    let max_tree_depth: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16)
        .max(MIN_TREE_DEPTH);
    let (long_lived_tree_depth, stretch_tree_depth) = (max_tree_depth, max_tree_depth + 2);
    let m = gc::attach();
    let start = Instant::now();
    println!("Garbage Collector Test");
    println!(
        " Live storage will peak at {} bytes.\n",
        2 * std::mem::size_of::<Node>() as i32 * tree_size(long_lived_tree_depth)
            + (std::mem::size_of::<f64>() * ARRAY_SIZE) as i32
    );
    println!(" Stretching memory with a binary tree of depth {stretch_tree_depth}");
    print_diagnostics();
    check(
        "the stretch tree",
        make_tree(&m, stretch_tree_depth),
        stretch_tree_depth,
    );

    println!(" Creating a long-lived binary tree of depth {long_lived_tree_depth}");
    let long_lived = new_node(&m, None, None);
    populate(&m, long_lived_tree_depth, long_lived);

    println!(" Creating a long-lived array of {ARRAY_SIZE} doubles");
    // In the GC heap, as Go's and Boehm's arrays are.
    let array = Gc::from_fn(&m, ARRAY_SIZE, |i| {
        if i < ARRAY_SIZE / 2 {
            1.0 / i as f64
        } else {
            0.0
        }
    });
    print_diagnostics();

    let mut d = MIN_TREE_DEPTH;
    while d <= max_tree_depth {
        time_construction(&m, stretch_tree_depth, d);
        d += 2;
    }
    if array[1000] != 1.0 / 1000.0 {
        println!("Failed: the long-lived array changed");
        std::process::exit(1);
    }
    check("the long-lived tree", long_lived, long_lived_tree_depth);
    print_diagnostics();
    println!("Completed in {} msec", start.elapsed().as_millis());
    let s = gc::stats();
    println!(
        "Completed {} collections, longest pause {} ms",
        s.cycles,
        gc::fmt_ms(s.pause_max)
    );
    if std::env::var_os("GCSTATS").is_some() {
        eprintln!(
            "gc-stats cycles={} objects_marked_by_helpers={}",
            s.cycles, s.helper_marked_objects
        );
    }
}
