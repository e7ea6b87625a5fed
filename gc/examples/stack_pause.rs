//! World-stopped pauses with a deep stack full of GC pointers: one attached thread recurses
//! `DEPTH` frames (default 2048), each holding 1,024 copies of a pointer to an object of
//! its own that nothing else references, then allocates garbage for `SECONDS` (default 3)
//! while the pacer's cycles run; prints the cycles, their median and longest pause, and
//! checks on the way back up that every frame's object survived. Mark start reads no
//! mutator's stack: the thread scans its own as it leaves the stop, and the collecting
//! thread's own is scanned after the restart (`docs/gc-design.md` §8 step 3), so the pauses
//! do not grow with `DEPTH`.
//!
//! `cargo run --release -p gomalloc-gc --example stack_pause [DEPTH [SECONDS]]`

use gc::{Gc, Mutator, Trace};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// 32 bytes: past the tiny allocator.
#[derive(Trace)]
struct Node {
    value: u64,
    _pad: [u64; 3],
}

/// Pointers to its object each frame holds (8 KiB of stack).
const PER_FRAME: usize = 1024;

/// The garbage loop at the bottom of the stack: returns (cycles, median, longest pause).
fn churn(m: &Mutator, seconds: f64) -> (usize, Duration, Duration) {
    let c0 = gc::stats().cycles;
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < seconds {
        for i in 0..1000 {
            black_box(Gc::new(
                m,
                Node {
                    value: i,
                    _pad: [0; 3],
                },
            ));
        }
    }
    let s = gc::stats();
    let ran = (s.cycles - c0) as usize;
    let mut p = s.recent_pauses[s.recent_pauses.len().saturating_sub(ran)..].to_vec();
    p.sort();
    match p.last() {
        Some(&max) => (ran, p[p.len() / 2], max),
        None => (0, Duration::ZERO, Duration::ZERO),
    }
}

/// Recurses `depth` frames, each holding its own object only on the stack; returns the sum
/// of the objects' values (0 + 1 + ... + depth) and the stack's depth in bytes.
#[inline(never)]
fn deep(m: &Mutator, depth: usize, seconds: f64, top: usize) -> (u64, usize) {
    let node = Gc::new(
        m,
        Node {
            value: depth as u64,
            _pad: [0; 3],
        },
    );
    let frame: [Gc<Node>; PER_FRAME] = black_box([node; PER_FRAME]);
    if depth == 0 {
        let bytes = top - &frame as *const _ as usize;
        let (cycles, p50, max) = churn(m, seconds);
        println!(
            "{} KiB of stack: {cycles} cycles, world-stopped pause p50 {p50:?}, max {max:?}",
            bytes >> 10
        );
        return (black_box(frame)[PER_FRAME - 1].value, bytes);
    }
    let (sum, bytes) = deep(m, depth - 1, seconds, top);
    (sum + black_box(frame)[PER_FRAME - 1].value, bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let depth: usize = args
        .next()
        .map_or(2048, |a| a.parse().expect("DEPTH: frames"));
    let seconds: f64 = args
        .next()
        .map_or(3.0, |a| a.parse().expect("SECONDS: a time"));
    std::thread::Builder::new()
        .stack_size(PER_FRAME * 8 * 4 * (depth + 64))
        .spawn(move || {
            let m = gc::attach();
            let top = 0usize;
            let top = &top as *const usize as usize;
            let (sum, _) = deep(&m, depth, seconds, top);
            let want = (depth * (depth + 1) / 2) as u64;
            assert_eq!(sum, want, "an object held only by the stack was lost");
            println!("every frame's object survived (sum {sum})");
        })
        .expect("spawn the deep thread")
        .join()
        .expect("the deep thread");
}
