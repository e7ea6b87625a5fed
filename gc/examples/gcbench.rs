//! Boehm's GCBench (Hans Boehm, John Ellis, after John Ellis and Pete Kovac's Java
//! original), on the collector: top-down construction mutates nodes through `Lock`, so the
//! write barrier is on the measured path. `cargo run --release --example gcbench`.

use gc::{Gc, Lock, Mutator, Trace};
use std::time::Instant;

const STRETCH_TREE_DEPTH: i32 = 18;
const LONG_LIVED_TREE_DEPTH: i32 = 16;
const ARRAY_SIZE: usize = 500_000;
const MIN_TREE_DEPTH: i32 = 4;
const MAX_TREE_DEPTH: i32 = 16;

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

fn num_iters(i: i32) -> i32 {
    2 * tree_size(STRETCH_TREE_DEPTH) / tree_size(i)
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

fn time_construction(m: &Mutator, depth: i32) {
    let iters = num_iters(depth);
    println!("Creating {iters} trees of depth {depth}");
    let t = Instant::now();
    for _ in 0..iters {
        let temp = new_node(m, None, None);
        populate(m, depth, temp);
    }
    println!(
        "\tTop down construction took {} msec",
        t.elapsed().as_millis()
    );
    let t = Instant::now();
    for _ in 0..iters {
        let _ = make_tree(m, depth);
    }
    println!(
        "\tBottom up construction took {} msec",
        t.elapsed().as_millis()
    );
}

fn main() {
    let m = gc::attach();
    let start = Instant::now();
    println!("Garbage Collector Test");
    println!(
        " Live storage will peak at {} bytes.\n",
        2 * std::mem::size_of::<Node>() as i32 * tree_size(LONG_LIVED_TREE_DEPTH)
            + (std::mem::size_of::<f64>() * ARRAY_SIZE) as i32
    );
    println!(" Stretching memory with a binary tree of depth {STRETCH_TREE_DEPTH}");
    print_diagnostics();
    let _ = make_tree(&m, STRETCH_TREE_DEPTH);

    println!(" Creating a long-lived binary tree of depth {LONG_LIVED_TREE_DEPTH}");
    let long_lived = new_node(&m, None, None);
    populate(&m, LONG_LIVED_TREE_DEPTH, long_lived);

    println!(" Creating a long-lived array of {ARRAY_SIZE} doubles");
    let mut a = vec![0.0f64; ARRAY_SIZE];
    for (i, v) in a.iter_mut().enumerate().take(ARRAY_SIZE / 2) {
        *v = 1.0 / i as f64;
    }
    let array = Gc::new(&m, a);
    print_diagnostics();

    let mut d = MIN_TREE_DEPTH;
    while d <= MAX_TREE_DEPTH {
        time_construction(&m, d);
        d += 2;
    }
    if array[1000] != 1.0 / 1000.0 || long_lived.left.get().is_none() {
        println!("Failed");
    }
    print_diagnostics();
    println!("Completed in {} msec", start.elapsed().as_millis());
    let s = gc::stats();
    println!(
        "Completed {} collections, longest pause {} ms",
        s.cycles,
        gc::fmt_ms(s.pause_max)
    );
}
