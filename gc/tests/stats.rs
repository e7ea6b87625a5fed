//! `gc::stats()`: the cycle counts, the pause figures (last, max, total, histogram) and the
//! heap sizes agree with each other and with what the test did. (Structural checks only:
//! no assertion on how long anything took.)
//!
//! Its own test binary: the statistics are process-wide.
// The list is built in locals: it needs the conservative stack scan.
#![cfg(not(feature = "precise"))]

use gc::{Gc, Lock, PAUSE_BUCKETS, PAUSE_RING, Root, Trace};

/// The tests read process-wide counters that each other's cycles change: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Trace)]
struct Cell {
    value: u64,
    next: Lock<Option<Gc<Cell>>>,
}

/// A rooted list of `n` cells (kept alive by the root, whatever the stack holds).
#[inline(never)]
fn rooted_list(m: &gc::Mutator, n: u64) -> Root<Cell> {
    let head = Gc::new(
        m,
        Cell {
            value: 0,
            next: Lock::new(None),
        },
    );
    let mut tail = head;
    for i in 1..n {
        let c = Gc::new(
            m,
            Cell {
                value: i,
                next: Lock::new(None),
            },
        );
        tail.next.set(m, Some(c));
        tail = c;
    }
    Root::new(head)
}

#[test]
fn stats_count_cycles_pauses_and_heap() {
    const N: u64 = 10_000;
    const FORCED: u64 = 5;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = gc::attach();
    let list = rooted_list(&m, N);
    let before = gc::stats();
    for _ in 0..FORCED {
        gc::collect();
    }
    let s = gc::stats();

    // Cycles: every `collect()` is one forced cycle; automatic ones may add more.
    assert!(s.cycles >= before.cycles + FORCED, "{s:?}");
    assert_eq!(s.forced_cycles, before.forced_cycles + FORCED, "{s:?}");
    assert!(s.forced_cycles <= s.cycles);

    // Pauses: the histogram has one entry per cycle; last <= max <= total.
    assert_eq!(s.pause_hist.len(), PAUSE_BUCKETS);
    assert_eq!(s.pause_hist.iter().sum::<u64>(), s.cycles, "{s:?}");
    assert!(s.pause_last <= s.pause_max, "{s:?}");
    assert!(s.pause_max <= s.pause_total, "{s:?}");
    assert!(s.pause_total >= before.pause_total);
    check_recent_pauses(&s);

    // Heap: the last cycle marked at least the rooted list (N objects of at least
    // `size_of::<Cell>()` bytes); spans hold what was marked; the goal follows GOGC.
    assert!(s.objects_marked >= N as usize, "{s:?}");
    assert!(
        s.heap_marked >= N as usize * std::mem::size_of::<Cell>(),
        "{s:?}"
    );
    assert!(s.heap_spans >= s.heap_marked, "{s:?}");
    assert_eq!(s.gc_percent, 100);
    assert!(
        s.heap_goal >= (s.heap_marked * 2).max(gc::MIN_HEAP),
        "goal = max(marked x 2, 4 MiB) at GOGC=100: {s:?}"
    );
    assert_eq!(s.memory_limit, u64::MAX);
    assert!(s.mutators >= 1);

    // The list is intact.
    let (mut n, mut sum, mut c) = (0, 0, Some(list.get()));
    while let Some(x) = c {
        n += 1;
        sum += x.value;
        c = x.next.get();
    }
    assert_eq!((n, sum), (N, N * (N - 1) / 2));
}

#[test]
fn cumulative_allocation_cpu_fraction_and_last_cycle_time() {
    const N: u64 = 20_000;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = gc::attach();
    let before = gc::stats();
    let started = std::time::SystemTime::now();
    // Unrooted: garbage after each round, so the figures grow while the heap does not.
    for _ in 0..3 {
        let list = rooted_list(&m, N);
        drop(list);
    }
    gc::collect();
    let s = gc::stats();
    // Allocated counts every object made, freed or not (up to one cached span per size
    // class ahead of the objects themselves).
    assert!(s.mallocs >= before.mallocs + 3 * N, "{s:?}");
    assert!(
        s.total_alloc >= before.total_alloc + 3 * N * std::mem::size_of::<Cell>() as u64,
        "{s:?}"
    );
    assert!(s.total_alloc >= s.heap_marked as u64, "{s:?}");
    assert!(s.mallocs >= s.objects_freed as u64, "{s:?}");
    // The last cycle ended after this test began; the CPU share is a fraction.
    assert!(s.last_gc.is_some_and(|t| t >= started), "{s:?}");
    assert!(s.gc_cpu_fraction > 0.0 && s.gc_cpu_fraction <= 1.0, "{s:?}");
}

/// The ring of recent pauses agrees with the other pause figures: one entry per cycle up
/// to `PAUSE_RING`, the newest equal to `pause_last` and ending at `last_gc`, ends in
/// order, percentiles ordered and taken from the ring.
fn check_recent_pauses(s: &gc::GcStats) {
    let n = (s.cycles as usize).min(PAUSE_RING);
    assert_eq!(s.recent_pauses.len(), n, "{s:?}");
    assert_eq!(s.recent_pause_ends.len(), n, "{s:?}");
    assert_eq!(s.recent_pauses.last(), Some(&s.pause_last), "{s:?}");
    assert_eq!(s.recent_pause_ends.last().copied(), s.last_gc, "{s:?}");
    assert!(
        s.recent_pause_ends.windows(2).all(|w| w[0] <= w[1]),
        "{s:?}"
    );
    assert!(s.pause_p50 <= s.pause_p99, "{s:?}");
    assert!(s.pause_p99 <= s.pause_recent_max, "{s:?}");
    assert!(s.pause_recent_max <= s.pause_max, "{s:?}");
    assert_eq!(
        s.recent_pauses.iter().max().copied(),
        Some(s.pause_recent_max),
        "{s:?}"
    );
    for p in [s.pause_p50, s.pause_p99] {
        assert!(s.recent_pauses.contains(&p), "{s:?}");
    }
    let below_p50 = s
        .recent_pauses
        .iter()
        .filter(|&&p| p <= s.pause_p50)
        .count();
    assert!(
        below_p50 * 2 >= n,
        "at least half the pauses are <= p50: {s:?}"
    );
    assert!(s.recent_pauses.iter().sum::<std::time::Duration>() <= s.pause_total);
}

#[test]
fn the_pause_ring_keeps_the_last_256_cycles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = gc::attach();
    let _list = rooted_list(&m, 100);
    let before = gc::stats();
    for _ in 0..PAUSE_RING + 10 {
        gc::collect();
    }
    let s = gc::stats();
    assert!(s.cycles >= before.cycles + PAUSE_RING as u64 + 10);
    assert_eq!(s.recent_pauses.len(), PAUSE_RING, "the ring is full");
    // Every ring entry is from one of the cycles just run (they ended after `before`).
    let start = before.last_gc.unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    assert!(s.recent_pause_ends.iter().all(|&e| e >= start), "{s:?}");
    check_recent_pauses(&s);
}
