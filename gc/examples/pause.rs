//! The pause benchmark: a live graph of small objects, two attached threads replacing parts
//! of it, the world-stopped pauses measured. The same program in Go 1.19 is
//! `bench/gc/pause.go`; `python3 bench/gc/run.py --pause` runs both side by side.
//!
//! `cargo run --release -p gomalloc-gc --example pause [LIVE_MIB [SECONDS [PIECE_LEVELS]]]` (default 1024
//! MiB and 20 s). The live graph is `LIVE_MIB` of 48-byte nodes (a header word, three GC
//! pointers and a value: Go's 40-byte node takes the same 48-byte size class) in
//! subtrees of 1023 nodes: complete binary trees whose third pointer links each node to
//! the one built before it. A table of subtrees (a `Gc` rooted with `Root`) holds them;
//! each thread owns every other slot. After both threads built their half, each replaces
//! the subtree of a random slot of its own with a new one, for `SECONDS`, at the default
//! GOGC. Printed: the pauses of the cycles that began in that phase (max, p99, p50 from
//! `gc::stats()`'s `recent_pauses`: each cycle's world-stopped time), cycles, time
//! stopped, mutator throughput (subtrees and nodes replaced per second) and peak RSS;
//! last a `pause-result` line for `run.py`.
//!
//! `PIECE_LEVELS` (default 10, the whole subtree; the Go program takes it too) makes
//! each replacement a random piece of that many levels inside a subtree (3: 7 nodes) whose
//! nodes link only among themselves: the new pieces fill holes all over the heap, so the
//! live graph ends up scattered over many spans, the case of docs/GC-BENCHMARKS.md's
//! "Mark time on a scattered live heap".

use gc::{Gc, Lock, Mutator, Root, Trace};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Subtree depth: 2^10 - 1 = 1023 nodes.
const DEPTH: u32 = 10;
const SUBTREE_NODES: usize = (1 << DEPTH) - 1;
/// Bytes of a node's size class (a 40-byte object: header word + 32-byte `Node`).
const NODE_BYTES: usize = 48;
const THREADS: usize = 2;

#[derive(Trace)]
struct Node {
    left: Lock<Option<Gc<Node>>>,
    right: Lock<Option<Gc<Node>>>,
    /// The node built before this one in its subtree.
    other: Lock<Option<Gc<Node>>>,
    value: u64,
}

#[derive(Trace)]
struct Table {
    slots: Vec<Lock<Option<Gc<Node>>>>,
}

/// Builds a subtree of `depth` levels; `prev` is the node built last (the `other` link).
/// Each subtree of `piece` levels below is a unit of its own: its `other` links stay
/// inside it, so that replacing it frees it whole; the nodes above the pieces have no
/// `other` link.
fn build(m: &Mutator, depth: u32, piece: u32, prev: &mut Option<Gc<Node>>, value: u64) -> Gc<Node> {
    if depth == piece && piece < DEPTH {
        let n = build(m, depth, DEPTH, &mut None, value);
        *prev = None;
        return n;
    }
    let (l, r) = if depth > 1 {
        let l = build(m, depth - 1, piece, prev, value.wrapping_mul(2));
        let r = build(m, depth - 1, piece, prev, value.wrapping_mul(2) | 1);
        (Some(l), Some(r))
    } else {
        (None, None)
    };
    let n = Gc::new(
        m,
        Node {
            left: Lock::new(l),
            right: Lock::new(r),
            other: Lock::new(*prev),
            value,
        },
    );
    *prev = Some(n);
    n
}

fn subtree(m: &Mutator, piece: u32, seed: u64) -> Gc<Node> {
    build(m, DEPTH, piece, &mut None, seed)
}

/// Replaces a random piece of `piece` levels of the subtree in `slot` by a new one (the
/// whole subtree when `piece` is `DEPTH`).
fn replace(m: &Mutator, slot: &Lock<Option<Gc<Node>>>, piece: u32, rng: &mut Rng) {
    if piece == DEPTH {
        slot.set(m, Some(subtree(m, piece, rng.next())));
        return;
    }
    let mut n = slot.get().expect("empty slot");
    let path = rng.next();
    for level in 0..DEPTH - piece - 1 {
        n = if path >> level & 1 == 0 {
            n.left.get()
        } else {
            n.right.get()
        }
        .expect("inner node");
    }
    let new = build(m, piece, DEPTH, &mut None, rng.next());
    if path >> 63 == 0 {
        n.left.set(m, Some(new));
    } else {
        n.right.set(m, Some(new));
    }
}

/// Nodes in the tree under `n` (to check subtrees at the end).
fn count(n: Gc<Node>) -> usize {
    1 + n.left.get().map_or(0, count) + n.right.get().map_or(0, count)
}

/// xorshift64*: the same generator as the Go version.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Peak resident set (VmHWM) in MiB.
fn peak_rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let live_mib: usize = args.get(1).map_or(1024, |a| a.parse().expect("LIVE_MIB"));
    let seconds: f64 = args.get(2).map_or(20.0, |a| a.parse().expect("SECONDS"));
    let piece: u32 = args
        .get(3)
        .map_or(DEPTH, |a| a.parse().expect("PIECE_LEVELS"));
    assert!((1..=DEPTH).contains(&piece), "PIECE_LEVELS: 1 to {DEPTH}");
    let piece_nodes = (1usize << piece) - 1;
    let nslots = ((live_mib << 20) / (SUBTREE_NODES * NODE_BYTES)).max(THREADS);

    let mut m = gc::attach();
    let table = Root::new(Gc::new(
        &m,
        Table {
            slots: (0..nslots).map(|_| Lock::new(None)).collect(),
        },
    ));
    let tbl: Gc<Table> = table.get();
    let barrier = Barrier::new(THREADS + 1);
    let replaced = AtomicUsize::new(0);
    let t0 = Instant::now();
    let ((steady_start, steady_wall), cycles0, steady) = m.blocking(|| {
        std::thread::scope(|s| {
            for id in 0..THREADS {
                let (barrier, replaced) = (&barrier, &replaced);
                s.spawn(move || {
                    let mut m = gc::attach();
                    for i in (id..nslots).step_by(THREADS) {
                        let t = subtree(&m, piece, i as u64);
                        tbl.slots[i].set(&m, Some(t));
                    }
                    m.blocking(|| barrier.wait());
                    m.blocking(|| barrier.wait());
                    let end = Instant::now() + Duration::from_secs_f64(seconds);
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
                    let mut n = 0;
                    let mine = nslots.div_ceil(THREADS);
                    while Instant::now() < end {
                        let k = id + THREADS * (rng.next() as usize % mine);
                        if k >= nslots {
                            continue;
                        }
                        replace(&m, &tbl.slots[k], piece, &mut rng);
                        n += 1;
                    }
                    replaced.fetch_add(n, Ordering::Relaxed);
                });
            }
            // Both halves built: the steady phase starts.
            barrier.wait();
            let build_time = t0.elapsed();
            let c0 = gc::stats().cycles;
            let start = (Instant::now(), std::time::SystemTime::now());
            barrier.wait();
            (start, c0, build_time)
        })
    });
    let wall = steady_start.elapsed();
    let s = gc::stats();
    let cycles = (s.cycles - cycles0) as usize;
    // The pauses of the cycles since the phase began, each cut to its part after the
    // start (a cycle may have been stopping the world when it began).
    let mut pauses: Vec<Duration> = s
        .recent_pauses
        .iter()
        .zip(&s.recent_pause_ends)
        .skip(s.recent_pauses.len() - cycles.min(s.recent_pauses.len()))
        .map(|(&p, &end)| p.min(end.duration_since(steady_wall).unwrap_or(Duration::ZERO)))
        .collect();
    pauses.sort_unstable();
    let pct = |p: usize| -> Duration {
        if pauses.is_empty() {
            return Duration::ZERO;
        }
        pauses[((p * pauses.len()).div_ceil(100)).max(1) - 1]
    };
    let stopped: Duration = pauses.iter().sum();
    let reps = replaced.load(Ordering::Relaxed);
    let nodes = reps * piece_nodes;
    // Every slot holds a whole subtree.
    for i in [0, nslots / 2, nslots - 1] {
        let n = tbl.slots[i].get().expect("empty slot");
        assert_eq!(count(n), SUBTREE_NODES, "slot {i}: a damaged subtree");
    }
    println!(
        "pause benchmark (gomalloc-gc): live {} MiB ({} nodes of {NODE_BYTES} B in {} subtrees), {THREADS} mutator threads, GOGC {}; built in {:.2} s, then {:.1} s of replacement",
        live_mib,
        nslots * SUBTREE_NODES,
        nslots,
        s.gc_percent,
        steady.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "cycles {cycles} ({} pauses kept); world-stopped pause max {:.3} ms, p99 {:.3} ms, p50 {:.3} ms; stopped {:.1}% of the wall time",
        pauses.len(),
        ms(pct(100)),
        ms(pct(99)),
        ms(pct(50)),
        stopped.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
    println!(
        "mutators: {:.0} pieces of {piece_nodes} nodes/s replaced, {:.2} M nodes/s ({:.0} MB/s) allocated; heap marked by the last cycle {} MiB; peak RSS {} MiB",
        reps as f64 / wall.as_secs_f64(),
        nodes as f64 / wall.as_secs_f64() / 1e6,
        (nodes * NODE_BYTES) as f64 / wall.as_secs_f64() / 1e6,
        s.heap_marked >> 20,
        peak_rss_mib()
    );
    println!(
        "pause-result cycles={cycles} max_ms={:.3} p99_ms={:.3} p50_ms={:.3} stopped_pct={:.1} nodes_per_s={:.0} rss_mib={}",
        ms(pct(100)),
        ms(pct(99)),
        ms(pct(50)),
        stopped.as_secs_f64() / wall.as_secs_f64() * 100.0,
        nodes as f64 / wall.as_secs_f64(),
        peak_rss_mib()
    );
    drop(table);
}
