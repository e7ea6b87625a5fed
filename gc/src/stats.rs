//! `gc::stats()` and `GOMALLOC_GCTRACE` (Go's `gctrace` line, `mgc.go` `gcMarkTermination`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant, SystemTime};

/// Buckets of the pause histogram: bucket `i` counts pauses in `[2^i, 2^(i+1))` µs
/// (bucket 0 also counts pauses under 1 µs).
pub const PAUSE_BUCKETS: usize = 24;

/// Cycles whose pauses [`GcStats::recent_pauses`] keeps (Go's `len(MemStats.PauseNs)`).
pub const PAUSE_RING: usize = 256;

/// Counters bumped outside the stop-the-world section.
pub(crate) struct Counters {
    pub freed: AtomicUsize,
    pub finalizers_run: AtomicUsize,
}
pub(crate) static COUNTERS: Counters = Counters {
    freed: AtomicUsize::new(0),
    finalizers_run: AtomicUsize::new(0),
};

/// The collector's statistics (`gc::stats()`).
#[derive(Clone, Debug, Default)]
pub struct GcStats {
    /// Completed cycles (Go's `NumGC`).
    pub cycles: u64,
    /// Cycles started by `gc::collect()`.
    pub forced_cycles: u64,
    /// World-stopped time of the last cycle: from each request to stop the world (waiting
    /// for every attached thread to reach a safepoint included) to its restart, added up
    /// over the cycle's stops (one, or two when marking is concurrent), as Go's `PauseNs`
    /// does. The cycle's work with the world running (finishing the previous cycle's
    /// sweep, a concurrent mark) is not in it: see [`GcStats::concurrent_last`].
    pub pause_last: Duration,
    /// Longest pause since start.
    pub pause_max: Duration,
    /// All pauses added up (Go's `PauseTotalNs`).
    pub pause_total: Duration,
    /// Pause histogram over every cycle since start (see [`PAUSE_BUCKETS`]).
    pub pause_hist: [u64; PAUSE_BUCKETS],
    /// The world-stopped time of each of the last [`PAUSE_RING`] cycles (fewer before
    /// that many ran), oldest first (Go's `PauseNs`, unrolled).
    pub recent_pauses: Vec<Duration>,
    /// When each pause of [`GcStats::recent_pauses`] ended, same order (Go's `PauseEnd`).
    pub recent_pause_ends: Vec<SystemTime>,
    /// Median of [`GcStats::recent_pauses`] (nearest rank; zero before the first cycle).
    pub pause_p50: Duration,
    /// 99th percentile of [`GcStats::recent_pauses`] (nearest rank).
    pub pause_p99: Duration,
    /// Longest of [`GcStats::recent_pauses`].
    pub pause_recent_max: Duration,
    /// Time the last cycle spent with the world running: finishing the previous cycle's
    /// sweep on the collecting thread before the first stop, and the concurrent mark.
    pub concurrent_last: Duration,
    /// Bytes handed to mutators since the last cycle plus the bytes it marked (Go's
    /// `heapLive`).
    pub heap_live: usize,
    /// Bytes marked by the last cycle: the live heap after it.
    pub heap_marked: usize,
    /// Objects marked by the last cycle.
    pub objects_marked: usize,
    /// The heap goal: the next cycle starts when `heap_live` reaches it (Go's `NextGC`).
    pub heap_goal: usize,
    /// Bytes of the collector's spans.
    pub heap_spans: usize,
    /// Objects freed by sweeping since start (Go's `Frees`).
    pub objects_freed: usize,
    /// Finalizers run since start.
    pub finalizers_run: usize,
    /// Weak references cleared since start.
    pub weak_cleared: usize,
    /// GOGC (-1: off).
    pub gc_percent: i64,
    /// Soft memory limit in bytes (`u64::MAX`: none).
    pub memory_limit: u64,
    /// Mutator threads attached now.
    pub mutators: usize,
    /// Markers the last cycle ran (the collecting thread and its helpers; gctrace's `P`).
    pub mark_workers: usize,
    /// Objects marked by helper markers (not the collecting thread) since start: above 0
    /// once parallel marking has shared work.
    pub helper_marked_objects: u64,
    /// Bytes allocated since start, freed or not (Go's `TotalAlloc`). Counted per span,
    /// as Go does: a span's free slots count when a thread's cache takes it, and those it
    /// gives back unused are taken off, so the figure runs ahead by at most one span per
    /// size class and thread.
    pub total_alloc: u64,
    /// Heap objects allocated since start (Go's `Mallocs`), counted like `total_alloc`;
    /// tiny objects combined into one block count as one.
    pub mallocs: u64,
    /// Share of the CPU time available since the collector started that it used (Go's
    /// `GCCPUFraction`): pause and mark time of every marker, over wall time times cores.
    pub gc_cpu_fraction: f64,
    /// The cycle at whose end the GC CPU limiter was last on, 0 if never (Go's
    /// `/gc/limiter/last-enabled:gc-cycle`): under a memory limit, the collector had used
    /// over half the CPU for about a second, so the limit stopped lowering the goal and
    /// mutators stopped assisting and waiting at the goal (`pacer.rs`). Without a memory
    /// limit the limiter never acts.
    pub limiter_last_enabled: u64,
    /// When the last cycle ended (Go's `LastGC`); `None` before the first.
    pub last_gc: Option<std::time::SystemTime>,
}

pub(crate) struct StatsState {
    pub s: GcStats,
    pub gc_cpu: Duration,
    /// Pause and end time of cycle `n` at `n % PAUSE_RING` (cycles counted from 1).
    pub ring: [(Duration, Option<SystemTime>); PAUSE_RING],
}

impl StatsState {
    /// Fills the ring's view in `s`: pauses oldest first, their percentiles.
    pub(crate) fn fill_recent(&self, s: &mut GcStats) {
        let n = (self.s.cycles as usize).min(PAUSE_RING);
        s.recent_pauses.clear();
        s.recent_pause_ends.clear();
        for c in self.s.cycles as usize + 1 - n..=self.s.cycles as usize {
            let (d, end) = self.ring[c % PAUSE_RING];
            s.recent_pauses.push(d);
            s.recent_pause_ends
                .push(end.unwrap_or(SystemTime::UNIX_EPOCH));
        }
        let mut sorted = s.recent_pauses.clone();
        sorted.sort_unstable();
        s.pause_p50 = nearest_rank(&sorted, 50);
        s.pause_p99 = nearest_rank(&sorted, 99);
        s.pause_recent_max = sorted.last().copied().unwrap_or(Duration::ZERO);
    }
}

/// The `pct` percentile of `sorted` by the nearest-rank method (zero if empty).
pub(crate) fn nearest_rank(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

pub(crate) static STATS: Mutex<StatsState> = Mutex::new(StatsState {
    s: GcStats {
        cycles: 0,
        forced_cycles: 0,
        pause_last: Duration::ZERO,
        pause_max: Duration::ZERO,
        pause_total: Duration::ZERO,
        pause_hist: [0; PAUSE_BUCKETS],
        recent_pauses: Vec::new(),
        recent_pause_ends: Vec::new(),
        pause_p50: Duration::ZERO,
        pause_p99: Duration::ZERO,
        pause_recent_max: Duration::ZERO,
        concurrent_last: Duration::ZERO,
        heap_live: 0,
        heap_marked: 0,
        objects_marked: 0,
        heap_goal: 0,
        heap_spans: 0,
        objects_freed: 0,
        finalizers_run: 0,
        weak_cleared: 0,
        gc_percent: 100,
        memory_limit: u64::MAX,
        mutators: 0,
        mark_workers: 0,
        helper_marked_objects: 0,
        total_alloc: 0,
        mallocs: 0,
        gc_cpu_fraction: 0.0,
        limiter_last_enabled: 0,
        last_gc: None,
    },
    gc_cpu: Duration::ZERO,
    ring: [(Duration::ZERO, None); PAUSE_RING],
});

/// Bytes of stacks scanned by the last cycle.
pub(crate) static STACK_BYTES: AtomicU64 = AtomicU64::new(0);

/// What one cycle measured, for the statistics and the trace line.
pub(crate) struct CycleReport {
    pub start: Instant,
    /// With the world running: finishing the previous cycle's sweep (from `start` to the
    /// request to stop the world).
    pub t_concurrent: Duration,
    /// World stopped (Go's sweep termination): from the request to stop the world until
    /// every other attached thread stopped.
    pub t_sweep_term: Duration,
    /// World stopped: roots and the mark of the whole heap, on every marker (in a
    /// concurrent cycle: the roots only).
    pub t_mark: Duration,
    /// A concurrent cycle's mark with the world running, and then the wait for the world
    /// to stop for mark termination (world stopping, so part of the pause).
    pub t_mark_concurrent: Option<(Duration, Duration)>,
    /// World stopped: barrier shades, the checkmark pass if enabled, weak references,
    /// finalizers, the new sweep generation, the next goal, restarting the world.
    pub t_mark_term: Duration,
    /// Mutators' time in mark assists during the cycle (all threads together).
    pub t_assist: Duration,
    pub workers: usize,
    /// Objects marked by the helper markers.
    pub helper_objects: usize,
    pub heap0: usize,
    pub heap1: usize,
    pub heap2: usize,
    pub objects: usize,
    pub goal_of_cycle: usize,
    pub next_goal: usize,
    pub stack_bytes: usize,
    pub root_bytes: usize,
    pub forced: bool,
    pub weak_cleared: usize,
}

/// Records a finished cycle; prints the gctrace line if enabled.
pub(crate) fn record(r: &CycleReport, since_start: Duration, trace: bool) {
    let (t_conc, t_stop2) = r.t_mark_concurrent.unwrap_or_default();
    // Go's fields: clock = stop + mark + termination. The first and last are world-stopped;
    // the mark is too unless the cycle was concurrent (then its stop at mark start, the
    // roots, counts in the first field).
    let (stop1, mark, term) = match r.t_mark_concurrent {
        None => (r.t_sweep_term, r.t_mark, r.t_mark_term),
        Some(_) => (r.t_sweep_term + r.t_mark, t_conc, t_stop2 + r.t_mark_term),
    };
    let pause = r.t_sweep_term + r.t_mark + t_stop2 + r.t_mark_term;
    let mut st = STATS.lock().unwrap();
    let end = SystemTime::now();
    let slot = (st.s.cycles as usize + 1) % PAUSE_RING;
    st.ring[slot] = (pause, Some(end));
    let s = &mut st.s;
    s.cycles += 1;
    s.forced_cycles += r.forced as u64;
    s.concurrent_last = r.t_concurrent + t_conc;
    s.pause_last = pause;
    s.pause_max = s.pause_max.max(pause);
    s.pause_total += pause;
    let us = pause.as_micros().max(1) as u64;
    let b = (63 - us.leading_zeros() as usize).min(PAUSE_BUCKETS - 1);
    s.pause_hist[b] += 1;
    s.heap_marked = r.heap2;
    s.objects_marked = r.objects;
    s.heap_goal = r.next_goal;
    s.weak_cleared += r.weak_cleared;
    s.mark_workers = r.workers;
    s.helper_marked_objects += r.helper_objects as u64;
    s.last_gc = Some(end);
    let cycle = s.cycles;
    let cpu = stop1 + r.t_assist + mark * r.workers as u32 + term;
    st.gc_cpu += cpu;
    // The limiter counts the pause on every core, as Go does, the concurrent mark on each
    // marker, the assists and the mutators' waits at the goal.
    let procs = crate::collector::cores();
    let waits =
        Duration::from_nanos(crate::pacer::WAIT_NS.swap(0, std::sync::atomic::Ordering::Relaxed));
    crate::pacer::limiter_account(
        cycle,
        pause * procs as u32 + t_conc * r.workers as u32 + r.t_assist + waits,
        crate::collector::start_time() + since_start,
    );
    if trace {
        let util = (st.gc_cpu.as_secs_f64() / (since_start.as_secs_f64().max(1e-9) * procs as f64)
            * 100.0) as u64;
        let cycles = st.s.cycles;
        drop(st);
        // cpu: the first stop + assist/background/idle mark + mark termination. Every
        // marker is a dedicated worker for the mark's whole length, so "background" is the
        // mark's clock time times the markers; there are no idle workers (printed as
        // zero); assists are the mutators' time in them. The sweep finished before the
        // stop (`t_concurrent`) is in no field, as in Go (`gcStart` sweeps before its
        // stop), nor is the background sweep after the cycle.
        let mark_cpu = mark * r.workers as u32;
        trace_line(format_args!(
            "gc {} @{:.3}s {}%: {}+{}+{} ms clock, {}+{}/{}/{}+{} ms cpu, {}->{}->{} MB, {} MB goal, {} MB stacks, {} MB globals, {} P{}",
            cycles,
            (r.start.duration_since(crate::collector::start_time())).as_secs_f64(),
            util,
            fmt_ms(stop1),
            fmt_ms(mark),
            fmt_ms(term),
            fmt_ms(stop1),
            fmt_ms(r.t_assist),
            fmt_ms(mark_cpu),
            fmt_ms(Duration::ZERO),
            fmt_ms(term),
            r.heap0 >> 20,
            r.heap1 >> 20,
            r.heap2 >> 20,
            r.goal_of_cycle >> 20,
            r.stack_bytes >> 20,
            r.root_bytes >> 20,
            r.workers,
            if r.forced { " (forced)" } else { "" },
        ));
    }
}

/// Writes one trace line (`gc ...`, `pacer: ...`) to stderr with a single `write(2)`.
///
/// `eprintln!` writes each formatted piece with its own `write(2)`, so a line written by a
/// collector thread while the process exits could end half-written, and one written
/// beside another process sharing the pipe could be interleaved with it. One write of at
/// most `PIPE_BUF` (4,096) bytes to a pipe is atomic. The line is built in gomalloc's
/// stack buffer for diagnostics ([`gomalloc::report::Line`], 512 bytes), so tracing
/// allocates nothing; a line longer than that (none is) would lose its end.
pub(crate) fn trace_line(args: std::fmt::Arguments<'_>) {
    use std::fmt::Write;
    let mut line = gomalloc::report::Line::new();
    // `Line` drops what does not fit and never fails.
    let _ = line.write_fmt(args);
    line.str("\n").flush_to(2);
}

/// Go's `fmtNSAsMS`: whole milliseconds from 10 ms up, else two significant digits with at
/// most three decimals.
pub fn fmt_ms(d: Duration) -> String {
    let ns = d.as_nanos() as u64;
    if ns >= 10_000_000 {
        return (ns / 1_000_000).to_string();
    }
    let mut x = ns / 1000;
    if x == 0 {
        return "0".into();
    }
    let mut dec = 3;
    while x >= 100 {
        x /= 10;
        dec -= 1;
    }
    let s = x.to_string();
    if dec == 0 {
        return s;
    }
    let s = format!("{:0>width$}", s, width = dec + 1);
    let (a, b) = s.split_at(s.len() - dec);
    format!("{a}.{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_millis(x))
                .collect::<Vec<_>>()
        };
        assert_eq!(nearest_rank(&[], 50), Duration::ZERO);
        assert_eq!(nearest_rank(&ms(&[7]), 99), Duration::from_millis(7));
        let v = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(nearest_rank(&v, 50), Duration::from_millis(50));
        assert_eq!(nearest_rank(&v, 99), Duration::from_millis(99));
        let v = ms(&[1, 2, 3, 4, 1000]);
        assert_eq!(nearest_rank(&v, 50), Duration::from_millis(3));
        assert_eq!(nearest_rank(&v, 99), Duration::from_millis(1000));
    }

    #[test]
    fn ms_formatting_matches_go() {
        // Values from Go's fmtNSAsMS: 18 µs -> "0.018", 1.2 ms -> "1.2", 25 ms -> "25".
        assert_eq!(fmt_ms(Duration::from_nanos(18_400)), "0.018");
        assert_eq!(fmt_ms(Duration::from_micros(1_234)), "1.2");
        assert_eq!(fmt_ms(Duration::from_micros(123)), "0.12");
        assert_eq!(fmt_ms(Duration::from_millis(25)), "25");
        assert_eq!(fmt_ms(Duration::from_nanos(500)), "0");
        assert_eq!(fmt_ms(Duration::from_micros(9_999)), "9.9");
    }
}
