//! The pacer (Go's `mgcpacer.go`): when the next cycle starts, and how much mutators assist.
//!
//! `goal = max(heap_marked * (1 + GOGC/100), 4 MiB * GOGC/100)`, capped by the soft memory
//! limit (`limit - memory the collector does not own`, never below `heap_marked + 1 MiB`).
//! A cycle starts when `HEAP_LIVE` reaches the trigger: the goal, or below it when marking
//! is concurrent ([`HEAP_TRIGGER`]), by a runway derived from the last marks' cons/mark
//! ratio and scan work ([`ConsMark`], Go 1.19's `endCycle` and `commit`).
//!
//! While a concurrent mark runs, mutators assist it when it falls behind their allocation
//! ([`should_assist`], Go's assist ratio), and wait at the goal ([`over_goal`]).
//!
//! The GC CPU limiter (Go's `mgclimit.go`): a leaky bucket of the collector's CPU time
//! less the mutators', of capacity one CPU-second per core, filled at each cycle's end.
//! While it is full under a memory limit, the collector used more than half of the CPU for
//! a sustained time (a live heap at or over the limit makes cycles run back to back): the
//! limit stops lowering the goal, and mutators neither assist nor wait for the mark, so
//! the heap outgrows the limit rather than the program stalling.

use crate::heap::{HEAP_LIVE, SPAN_BYTES};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Go's minimum heap goal at GOGC=100.
pub const MIN_HEAP: usize = 4 << 20;

static GC_PERCENT: AtomicI64 = AtomicI64::new(100);
static MEM_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bytes marked by the last cycle.
pub(crate) static HEAP_MARKED: AtomicUsize = AtomicUsize::new(0);
/// The current heap goal.
pub(crate) static HEAP_GOAL: AtomicUsize = AtomicUsize::new(MIN_HEAP);
/// Where the next cycle starts: the goal when the world stops for the whole mark; with a
/// concurrent mark, the goal less the runway, the bytes the mutators are expected to
/// allocate while the next mark runs (Go 1.19's `runway`), so that the mark ends as the
/// heap reaches the goal.
pub(crate) static HEAP_TRIGGER: AtomicUsize = AtomicUsize::new(MIN_HEAP);
/// The runway: the bytes the mutators are expected to allocate while the next mark runs
/// (Go 1.19's `runway`), from the last cycles' cons/mark ratio and scan work
/// ([`ConsMark::step`]). 0 before the first concurrent cycle.
static RUNWAY: AtomicUsize = AtomicUsize::new(0);
/// A mutator reached the goal while a concurrent mark ran (and waited for its end).
pub(crate) static OUTRAN: AtomicBool = AtomicBool::new(false);
/// Bounds of the trigger, in percent of the room between the marked heap and the goal (Go
/// 1.19's `minTriggerRatioNum` and `maxTriggerRatioNum`, about 0.7 and 0.95): not so late
/// that no room is left, and not so early that what the mutators allocate during the mark
/// (black, counted in the next goal's marked heap) takes more than 30% of the room, which
/// would compound from cycle to cycle (the first cycle, with no runway measured, starts at
/// 70%).
const TRIGGER_MIN_PERCENT: usize = 70;
const TRIGGER_FIRST_PERCENT: usize = 70;
const TRIGGER_MAX_PERCENT: usize = 95;

/// What one concurrent mark measured (the inputs of Go 1.19's `endCycle`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MarkMeasure {
    /// Bytes the mutators allocated while the mark ran (black; Go's `heapLive - triggered`).
    pub black: usize,
    /// Bytes the mark's trace marked: the work the next mark's assists expect.
    pub traced: usize,
    /// The mark's scan work: the bytes traced plus the stack and root bytes scanned (Go's
    /// `heapScanWork + stackScanWork + globalsScanWork`, in bytes marked rather than
    /// bytes scanned).
    pub scan_work: usize,
    /// The concurrent mark's length, from the restart after mark start to mark
    /// termination's stop (Go's `assistDuration`).
    pub window: Duration,
    /// CPU time the markers used in it.
    pub marker_cpu: Duration,
    /// Time the mutators spent in mark assists in it.
    pub assist: Duration,
}

/// The cons/mark estimate (Go's `gcControllerState.consMark`): bytes the mutators allocate
/// per byte of scan work the collector does, each per unit of the CPU time it had. The
/// estimate is the largest of this cycle's and the last four cycles' ratios (Go 1.21's
/// `lastConsMark`; Go 1.19 smooths with a PI controller instead): a noisy measure errs
/// toward an earlier trigger rather than toward assists.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConsMark {
    last: [f64; 4],
}

/// One cycle's pacing figures, for `GOMALLOC_GCPACERTRACE` and the tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PacerStep {
    /// The markers' share of the CPU during the mark.
    pub background: f64,
    /// The collector's whole share (markers and assists).
    pub utilization: f64,
    /// This cycle's cons/mark ratio.
    pub current: f64,
    /// The estimate the runway uses.
    pub cons_mark: f64,
    /// The runway for the next cycle, in bytes.
    pub runway: usize,
}

impl ConsMark {
    pub(crate) const fn new() -> ConsMark {
        ConsMark { last: [0.0; 4] }
    }

    /// Folds in the mark `m`, run on `procs` cores; `outran`: a mutator reached the goal
    /// during it and waited, so `m.black` understates what the mutators would have
    /// allocated (counted twice). Returns the runway for the next cycle (Go 1.19's
    /// `commit`): the bytes the mutators allocate while the markers, at the share of the CPU
    /// they had in this mark, do as much scan work as this mark did:
    /// `cons_mark * (1 - u_bg) / u_bg * scan_work`. When no assist ran (the collector's
    /// share is the markers'), that is this mark's black bytes in the steady state, scaled
    /// by the change in scan work; assists raise it, so the next mark starts earlier and
    /// needs fewer. None (the runway stays) when the mark measured nothing usable (no scan
    /// work, no time).
    pub(crate) fn step(
        &mut self,
        m: &MarkMeasure,
        outran: bool,
        procs: usize,
    ) -> Option<PacerStep> {
        let cpu = m.window.as_secs_f64() * procs.max(1) as f64;
        if cpu <= 0.0 || m.scan_work == 0 {
            return None;
        }
        // Shares of the CPU, bounded away from 0 and 1 so that the ratios stay finite (a
        // marker the OS descheduled for the whole window, assists that took every core).
        let background = (m.marker_cpu.as_secs_f64() / cpu).clamp(0.01, 0.95);
        let utilization = (background + m.assist.as_secs_f64() / cpu).min(0.95);
        let scan = m.scan_work as f64;
        let mut current = m.black as f64 * utilization / (scan * (1.0 - utilization));
        if outran {
            current *= 2.0;
        }
        let cons_mark = self.last.iter().copied().fold(current, f64::max);
        self.last.rotate_left(1);
        self.last[self.last.len() - 1] = current;
        let runway = cons_mark * (1.0 - background) / background * scan;
        Some(PacerStep {
            background,
            utilization,
            current,
            cons_mark,
            runway: runway.min(usize::MAX as f64) as usize,
        })
    }
}

/// The collector's cons/mark estimate (only the collecting thread updates it).
static CONS_MARK: Mutex<ConsMark> = Mutex::new(ConsMark::new());
/// `GOMALLOC_GCPACERTRACE=1`: a `pacer:` line per concurrent cycle (Go's `gcpacertrace`).
static PACER_TRACE: AtomicBool = AtomicBool::new(false);

/// Records what a concurrent mark measured, for the next mark's trigger (the runway) and
/// assists (the expected work).
pub(crate) fn record_concurrent_mark(m: &MarkMeasure) {
    SCAN_EXPECTED.store(m.traced, Ordering::Relaxed);
    let outran = OUTRAN.swap(false, Ordering::Relaxed);
    let procs = crate::collector::cores();
    let step = CONS_MARK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .step(m, outran, procs);
    let Some(step) = step else {
        return;
    };
    // At least 1: 0 means no runway measured yet (`trigger`).
    RUNWAY.store(step.runway.max(1), Ordering::Relaxed);
    if PACER_TRACE.load(Ordering::Relaxed) {
        // The ratios in scientific notation, to four significant digits at any size (a
        // cycle that allocates little has one of 0.0003), so that the runway can be
        // recomputed from the line (`gc/tests/pacer.rs`).
        crate::stats::trace_line(format_args!(
            "pacer: {:.1}% CPU ({:.1}% background) for {} B work in {} ms, {} B allocated{}; cons/mark {:.4e} (this cycle {:.4e}), runway {} B",
            step.utilization * 100.0,
            step.background * 100.0,
            m.scan_work,
            m.window.as_millis(),
            m.black,
            if outran { " (outran)" } else { "" },
            step.cons_mark,
            step.current,
            step.runway,
        ));
    }
}
/// The limiter's bucket, in nanoseconds of CPU time (see the module header).
static LIMITER_FILL: Mutex<Limiter> = Mutex::new(Limiter {
    fill: 0,
    last: None,
});
/// The limiter's bucket is full.
static LIMITING: AtomicBool = AtomicBool::new(false);
/// The cycle at whose end the limiter was last on (0: never; Go's
/// `/gc/limiter/last-enabled:gc-cycle`).
pub(crate) static LIMITER_LAST_ENABLED: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds mutators spent waiting for a concurrent mark to end at the goal since the
/// last cycle's end: CPU time the collector took from them.
pub(crate) static WAIT_NS: AtomicU64 = AtomicU64::new(0);

struct Limiter {
    fill: i128,
    /// The end of the last cycle accounted.
    last: Option<Instant>,
}

/// Accounts the cycle `cycle` that ended at `end`, in which the collector used `gc` of CPU
/// time (stops times the cores, markers, assists, mutators' waits), in the limiter.
pub(crate) fn limiter_account(cycle: u64, gc: Duration, end: Instant) {
    let procs = crate::collector::cores() as i128;
    let mut l = LIMITER_FILL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(last) = l.last.replace(end) else {
        return;
    };
    let total = end.saturating_duration_since(last).as_nanos() as i128 * procs;
    let gc = (gc.as_nanos() as i128).min(total);
    let capacity = 1_000_000_000 * procs;
    l.fill = (l.fill + gc - (total - gc)).clamp(0, capacity);
    // The limiter acts only under a memory limit: without one the goal is GOGC's, twice
    // the marked heap, so cycles cannot run back to back, and a limiter that stopped
    // assists and the wait at the goal would let mutators that outrun the mark grow the
    // heap without bound (a mark of a large heap on 2 cores with two mutators uses about
    // half of the CPU by itself).
    let on = l.fill == capacity && memory_limit() != u64::MAX;
    LIMITING.store(on, Ordering::Relaxed);
    if on {
        LIMITER_LAST_ENABLED.store(cycle, Ordering::Relaxed);
    }
}

/// True while the GC CPU limiter is on (see the module header).
#[inline]
pub(crate) fn limiting() -> bool {
    LIMITING.load(Ordering::Relaxed)
}

static INIT: Once = Once::new();

/// Reads `GOMALLOC_GOGC` and `GOMALLOC_GCMEMLIMIT` once.
pub(crate) fn init() {
    INIT.call_once(|| {
        if let Ok(v) = std::env::var("GOMALLOC_GOGC") {
            match parse_gogc(&v) {
                Some(p) => GC_PERCENT.store(p, Ordering::Relaxed),
                None => crate::collector::bad_setting(
                    "GOMALLOC_GOGC",
                    &v,
                    "a percentage or `off`",
                    "100",
                ),
            }
        }
        if crate::collector::env_flag("GOMALLOC_GCPACERTRACE", false) {
            PACER_TRACE.store(true, Ordering::Relaxed);
        }
        if let Ok(v) = std::env::var("GOMALLOC_GCMEMLIMIT") {
            match parse_limit(&v) {
                Some(l) => MEM_LIMIT.store(l, Ordering::Relaxed),
                None => crate::collector::bad_setting(
                    "GOMALLOC_GCMEMLIMIT",
                    &v,
                    "a byte count with an optional unit (KiB, MiB, GiB, TiB) or `off`",
                    "off",
                ),
            }
        }
        update_goal();
    });
}

/// `GOGC` syntax: a number, or `off`.
pub fn parse_gogc(v: &str) -> Option<i64> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("off") {
        return Some(-1);
    }
    v.parse::<i64>().ok().map(|p| p.max(-1))
}

/// `GOMEMLIMIT` syntax: bytes with an optional `B`, `KiB`, `MiB`, `GiB` or `TiB` suffix, or
/// `off`.
pub fn parse_limit(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("off") {
        return Some(u64::MAX);
    }
    let (num, mult) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|&(suf, m)| v.strip_suffix(suf).map(|n| (n, m)))
    .unwrap_or((v, 1));
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Sets GOGC (negative: off) and returns the previous setting, like
/// `debug.SetGCPercent`.
pub fn set_gc_percent(percent: i64) -> i64 {
    init();
    let old = GC_PERCENT.swap(percent.max(-1), Ordering::Relaxed);
    update_goal();
    old
}

/// Sets the soft memory limit in bytes (`u64::MAX`: none) and returns the previous one,
/// like `debug.SetMemoryLimit`.
pub fn set_memory_limit(bytes: u64) -> u64 {
    init();
    let old = MEM_LIMIT.swap(bytes, Ordering::Relaxed);
    update_goal();
    old
}

pub(crate) fn gc_percent() -> i64 {
    GC_PERCENT.load(Ordering::Relaxed)
}

pub(crate) fn memory_limit() -> u64 {
    MEM_LIMIT.load(Ordering::Relaxed)
}

/// Recomputes the goal from the last cycle's marked bytes and the current settings.
pub(crate) fn update_goal() -> usize {
    let marked = HEAP_MARKED.load(Ordering::Relaxed);
    let pct = gc_percent();
    let mut goal = if pct < 0 {
        usize::MAX
    } else {
        let scaled = |b: usize| (b as u128 * pct as u128 / 100).min(usize::MAX as u128) as usize;
        marked.saturating_add(scaled(marked)).max(scaled(MIN_HEAP))
    };
    let limit = memory_limit();
    if limit != u64::MAX && !limiting() {
        // Memory the collector does not control: everything gomalloc took from the OS
        // outside the collector's spans.
        let sys = gomalloc::stats().sys;
        let other = sys.saturating_sub(SPAN_BYTES.load(Ordering::Relaxed));
        let room = (limit as usize).saturating_sub(other);
        goal = goal.min(room.max(marked + (1 << 20)));
    }
    HEAP_GOAL.store(goal, Ordering::Relaxed);
    let trigger = if crate::collector::CONCURRENT.load(Ordering::Relaxed) {
        trigger(marked, goal, RUNWAY.load(Ordering::Relaxed))
    } else {
        goal
    };
    HEAP_TRIGGER.store(trigger, Ordering::Relaxed);
    goal
}

/// Where a concurrent cycle starts (Go 1.19's `trigger`): `runway` bytes before `goal`
/// (70% of the way from `marked` to `goal` before any runway was measured), within
/// [70%, 95%] of that way.
fn trigger(marked: usize, goal: usize, runway: usize) -> usize {
    if goal <= marked {
        return goal;
    }
    let at = |pct: usize| marked + ((goal - marked) as u128 * pct as u128 / 100) as usize;
    match runway {
        0 => at(TRIGGER_FIRST_PERCENT),
        r => goal
            .saturating_sub(r)
            .clamp(at(TRIGGER_MIN_PERCENT), at(TRIGGER_MAX_PERCENT)),
    }
}

/// True when the heap reached the point where the next cycle starts.
#[inline]
pub(crate) fn should_collect() -> bool {
    HEAP_LIVE.load(Ordering::Relaxed) >= HEAP_TRIGGER.load(Ordering::Relaxed)
}

/// Grey objects a mark assist traces per round; a mutator behind on its assists runs up to
/// [`MAX_ASSIST_ROUNDS`] rounds per allocation slow path.
pub(crate) const ASSIST_BUDGET: usize = 256;
/// Rounds of [`ASSIST_BUDGET`] objects one allocation slow path assists at most: a bound on
/// the latency of one allocation; the next slow path goes on paying.
pub(crate) const MAX_ASSIST_ROUNDS: usize = 16;

/// Bytes the running concurrent mark is expected to mark by tracing: what the last cycle's
/// trace marked (Go 1.19's `heapScanWork` estimate, in bytes marked rather than scanned).
static SCAN_EXPECTED: AtomicUsize = AtomicUsize::new(0);
/// Bytes the running concurrent mark has marked by tracing so far, as its marker and the
/// assists publish them (every [`crate::collector`] slice and at each assist's end).
pub(crate) static SCAN_DONE: AtomicUsize = AtomicUsize::new(0);
/// `HEAP_LIVE` when the running concurrent mark began.
static MARK_START_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A concurrent mark begins (world stopped) with `live` bytes in the heap, `greyed` of
/// them already marked from the roots.
pub(crate) fn begin_concurrent_mark(live: usize, greyed: usize) {
    MARK_START_LIVE.store(live, Ordering::Relaxed);
    SCAN_DONE.store(greyed, Ordering::Relaxed);
}

/// True when a mutator allocating while a concurrent mark runs should assist it: Go's
/// assist ratio (`assistWorkPerByte`, the scan work left over the heap distance left),
/// taken over all mutators together. The mark is behind when the share of the expected
/// work done is less than the share of the runway from the mark's start to the goal that
/// the heap has used; the mutators then trace until it catches up, so that the mark ends by
/// the time the heap reaches the goal, and what they allocate during the mark (black, and
/// counted in the next goal's marked heap) stays within the runway. Never while the GC CPU
/// limiter is on.
#[inline]
pub(crate) fn should_assist() -> bool {
    if limiting() {
        return false;
    }
    let expected = SCAN_EXPECTED.load(Ordering::Relaxed);
    let done = SCAN_DONE.load(Ordering::Relaxed);
    if done >= expected {
        // More to mark than expected: the wait at the goal bounds the heap from here.
        return false;
    }
    let start = MARK_START_LIVE.load(Ordering::Relaxed);
    let goal = HEAP_GOAL.load(Ordering::Relaxed);
    let live = HEAP_LIVE.load(Ordering::Relaxed);
    if live >= goal || goal <= start {
        return true;
    }
    // done / expected < (live - start) / (goal - start), without dividing.
    (done as u128) * ((goal - start) as u128)
        < (expected as u128) * (live.saturating_sub(start) as u128)
}

/// True when the heap reached its goal (while a concurrent mark runs: an allocating
/// mutator then waits for the cycle to end, so that the heap does not outgrow the goal),
/// and the GC CPU limiter is off.
#[inline]
pub(crate) fn over_goal() -> bool {
    HEAP_LIVE.load(Ordering::Relaxed) >= HEAP_GOAL.load(Ordering::Relaxed) && !limiting()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse_gogc("off"), Some(-1));
        assert_eq!(parse_gogc(" 50 "), Some(50));
        assert_eq!(parse_gogc("x"), None);
        assert_eq!(parse_limit("512MiB"), Some(512 << 20));
        assert_eq!(parse_limit("1GiB"), Some(1 << 30));
        assert_eq!(parse_limit("1000"), Some(1000));
        assert_eq!(parse_limit("64KiB"), Some(64 << 10));
        assert_eq!(parse_limit("off"), Some(u64::MAX));
        assert_eq!(parse_limit("lots"), None);
    }

    const MIB: usize = 1 << 20;

    fn mark(black: usize, scan_work: usize, marker_ms: u64, assist_ms: u64) -> MarkMeasure {
        MarkMeasure {
            black,
            traced: scan_work,
            scan_work,
            window: Duration::from_millis(100),
            marker_cpu: Duration::from_millis(marker_ms),
            assist: Duration::from_millis(assist_ms),
        }
    }

    /// The step of a fresh estimate (no earlier cycle) on 2 cores.
    fn first(m: MarkMeasure, outran: bool) -> PacerStep {
        ConsMark::new().step(&m, outran, 2).unwrap()
    }

    /// Within 0.1% (the ratios go through floating point).
    fn close(a: usize, b: usize) -> bool {
        a.abs_diff(b) <= b / 1000 + 1
    }

    #[test]
    fn without_assists_the_runway_is_what_the_mark_let_the_mutators_allocate() {
        let mut c = ConsMark::new();
        // One marker on 2 cores for the whole mark: 50% background, no assists.
        let s = c.step(&mark(20 * MIB, 60 * MIB, 100, 0), false, 2).unwrap();
        assert!((s.background - 0.5).abs() < 1e-9 && (s.utilization - 0.5).abs() < 1e-9);
        assert!(close(s.runway, 20 * MIB), "{s:?}");
        // Markers at a third of the CPU take longer over the same work, and the mutators
        // allocate twice as much meanwhile: the runway is again what they allocated.
        let s = c.step(&mark(40 * MIB, 60 * MIB, 67, 0), false, 2).unwrap();
        assert!(close(s.runway, 40 * MIB), "{s:?}");
    }

    #[test]
    fn the_runway_follows_the_scan_work() {
        // Same allocation rate per byte of scan work, three times the live heap to mark:
        // three times the runway.
        let small = first(mark(10 * MIB, 30 * MIB, 100, 0), false);
        let big = first(mark(30 * MIB, 90 * MIB, 100, 0), false);
        assert!(close(big.runway, 3 * small.runway), "{small:?} {big:?}");
    }

    #[test]
    fn assists_and_outrunning_lengthen_the_runway() {
        let plain = first(mark(20 * MIB, 60 * MIB, 100, 0), false);
        // Assists took a quarter of the CPU: with the markers alone the mutators would
        // have allocated more per byte marked.
        let assisted = first(mark(20 * MIB, 60 * MIB, 100, 50), false);
        assert!(assisted.runway > plain.runway * 2, "{plain:?} {assisted:?}");
        let outran = first(mark(20 * MIB, 60 * MIB, 100, 0), true);
        assert!(
            close(outran.runway, 2 * plain.runway),
            "{plain:?} {outran:?}"
        );
    }

    #[test]
    fn the_estimate_is_the_largest_of_the_last_five_cycles() {
        let mut c = ConsMark::new();
        let high = c.step(&mark(40 * MIB, 60 * MIB, 100, 0), false, 2).unwrap();
        for _ in 0..4 {
            let s = c.step(&mark(10 * MIB, 60 * MIB, 100, 0), false, 2).unwrap();
            assert_eq!(s.cons_mark, high.current, "{s:?}");
            assert!(close(s.runway, 40 * MIB), "{s:?}");
        }
        let s = c.step(&mark(10 * MIB, 60 * MIB, 100, 0), false, 2).unwrap();
        assert!(close(s.runway, 10 * MIB), "{s:?}");
    }

    #[test]
    fn a_mark_that_measured_nothing_keeps_the_runway() {
        let mut c = ConsMark::new();
        let mut m = mark(10 * MIB, 0, 100, 0);
        assert!(c.step(&m, false, 2).is_none());
        m.scan_work = MIB;
        m.window = Duration::ZERO;
        assert!(c.step(&m, false, 2).is_none());
        // A marker that never ran and assists that took every core stay finite.
        let s = c.step(&mark(10 * MIB, MIB, 0, 1000), false, 2).unwrap();
        assert!(s.runway < usize::MAX && s.cons_mark.is_finite(), "{s:?}");
    }

    #[test]
    fn the_trigger_stays_between_70_and_95_percent_of_the_room() {
        let (marked, goal) = (100 * MIB, 200 * MIB);
        assert_eq!(trigger(marked, goal, 0), 170 * MIB);
        assert_eq!(trigger(marked, goal, 20 * MIB), 180 * MIB);
        assert_eq!(trigger(marked, goal, MIB), 195 * MIB);
        assert_eq!(trigger(marked, goal, 500 * MIB), 170 * MIB);
        assert_eq!(trigger(marked, marked, 20 * MIB), marked);
    }
}
