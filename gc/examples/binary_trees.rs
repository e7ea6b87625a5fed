//! The Benchmarks Game's binary-trees, on the collector: allocate and walk many perfect
//! binary trees, keeping one long-lived tree. `cargo run --release --example binary_trees 21`
//! (output format identical to the Benchmarks Game's reference output).

use gc::{Gc, Mutator, Trace};

#[derive(Trace)]
struct Node {
    left: Option<Gc<Node>>,
    right: Option<Gc<Node>>,
}

fn bottom_up(m: &Mutator, depth: u32) -> Gc<Node> {
    if depth == 0 {
        return Gc::new(
            m,
            Node {
                left: None,
                right: None,
            },
        );
    }
    let left = bottom_up(m, depth - 1);
    let right = bottom_up(m, depth - 1);
    Gc::new(
        m,
        Node {
            left: Some(left),
            right: Some(right),
        },
    )
}

fn check(n: &Node) -> u32 {
    1 + match (n.left, n.right) {
        (Some(l), Some(r)) => check(&l) + check(&r),
        _ => 0,
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let m = gc::attach();
    let min_depth = 4;
    let max_depth = (min_depth + 2).max(n);
    let stretch = max_depth + 1;
    println!(
        "stretch tree of depth {}\t check: {}",
        stretch,
        check(&bottom_up(&m, stretch))
    );
    let long_lived = bottom_up(&m, max_depth);
    let mut d = min_depth;
    while d <= max_depth {
        let iterations = 1u32 << (max_depth - d + min_depth);
        let mut chk = 0;
        for _ in 0..iterations {
            chk += check(&bottom_up(&m, d));
        }
        println!("{iterations}\t trees of depth {d}\t check: {chk}");
        d += 2;
    }
    println!(
        "long lived tree of depth {}\t check: {}",
        max_depth,
        check(&long_lived)
    );
    if std::env::var_os("GCSTATS").is_some() {
        let s = gc::stats();
        eprintln!(
            "gc-stats cycles={} pause_max_us={} pause_total_us={} objects_marked_by_helpers={}",
            s.cycles,
            s.pause_max.as_micros(),
            s.pause_total.as_micros(),
            s.helper_marked_objects
        );
    }
}
