//! The pacer (Go's `mgcpacer.go`): when the next cycle starts, and how much mutators assist.
//!
//! `goal = max(heap_marked * (1 + GOGC/100), 4 MiB * GOGC/100)`, capped by the soft memory
//! limit (`limit - memory the collector does not own`, never below `heap_marked + 1 MiB`).
//! A cycle starts when `HEAP_LIVE` reaches the trigger: the goal, or below it when marking
//! is concurrent ([`HEAP_TRIGGER`]).
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
/// The runway: what the mutators allocated during the last concurrent mark, with a margin,
/// doubled when the allocation reached the goal before the mark ended (the mutators then
/// waited, so what they allocated understates what they would have). 0 before the first
/// concurrent cycle.
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

/// Records what the mutators allocated during a concurrent mark (`black` bytes), for the
/// next trigger, and what its trace marked (`traced` bytes), for the next mark's assists.
pub(crate) fn record_concurrent_mark(black: usize, traced: usize) {
    SCAN_EXPECTED.store(traced, Ordering::Relaxed);
    let outran = OUTRAN.swap(false, Ordering::Relaxed);
    let runway = black + black / 4;
    RUNWAY.store(if outran { 2 * runway } else { runway }, Ordering::Relaxed);
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
    let trigger = if crate::collector::CONCURRENT.load(Ordering::Relaxed) && goal > marked {
        let at = |pct: usize| marked + ((goal - marked) as u128 * pct as u128 / 100) as usize;
        match RUNWAY.load(Ordering::Relaxed) {
            0 => at(TRIGGER_FIRST_PERCENT),
            r => goal
                .saturating_sub(r)
                .clamp(at(TRIGGER_MIN_PERCENT), at(TRIGGER_MAX_PERCENT)),
        }
    } else {
        goal
    };
    HEAP_TRIGGER.store(trigger, Ordering::Relaxed);
    goal
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
}
