//! World-stopped pauses with a large weak-reference table: `N` weak references (default
//! 1,000,000) to objects that die at once, then five forced collections; prints how many
//! were cleared and each collection's pause. The tables of weak references and finalizers
//! are walked after mark termination's stop, so the pauses do not grow with `N`
//! (`docs/gc-design.md` §7).
//!
//! `cargo run --release -p gomalloc-gc --example weak_pause [N]`

use gc::{Gc, Root, Trace, Weak};

/// A 32-byte target: past the tiny allocator (which packs objects under 16 bytes into
/// shared blocks, alive while any of them is, as in Go).
#[derive(Trace)]
struct Target {
    value: u64,
    _pad: [u64; 3],
}

fn main() {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("N: a count of weak references"),
        None => 1_000_000,
    };
    let m = gc::attach();
    // The weak references live in a rooted slice; their targets are referenced nowhere.
    let weaks: Gc<[Weak<Target>]> = Gc::from_fn(&m, n, |i| {
        Weak::new(
            &m,
            Gc::new(
                &m,
                Target {
                    value: i as u64,
                    _pad: [0; 3],
                },
            ),
        )
    });
    let weaks = Root::new(weaks);
    let c0 = gc::stats().cycles;
    for _ in 0..5 {
        gc::collect();
    }
    let s = gc::stats();
    let ran = (s.cycles - c0) as usize;
    let pauses = &s.recent_pauses[s.recent_pauses.len().saturating_sub(ran)..];
    let cleared = weaks.get().iter().filter(|w| w.is_cleared()).count();
    println!(
        "{cleared} of {n} weak references cleared; pauses of the last {ran} collections: {pauses:?}"
    );
}
