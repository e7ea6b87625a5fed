//! The pacer (Go's `mgcpacer.go`, stop-the-world edition): when the next cycle starts.
//!
//! `goal = max(heap_marked * (1 + GOGC/100), 4 MiB * GOGC/100)`, capped by the soft memory
//! limit (`limit - memory the collector does not own`, never below `heap_marked + 1 MiB`).
//! A cycle starts when `HEAP_LIVE` reaches the goal.

use crate::heap::{HEAP_LIVE, SPAN_BYTES};
use std::sync::Once;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Go's minimum heap goal at GOGC=100.
pub const MIN_HEAP: usize = 4 << 20;

static GC_PERCENT: AtomicI64 = AtomicI64::new(100);
static MEM_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bytes marked by the last cycle.
pub(crate) static HEAP_MARKED: AtomicUsize = AtomicUsize::new(0);
/// The current heap goal.
pub(crate) static HEAP_GOAL: AtomicUsize = AtomicUsize::new(MIN_HEAP);
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
    if limit != u64::MAX {
        // Memory the collector does not control: everything gomalloc took from the OS
        // outside the collector's spans.
        let sys = gomalloc::stats().sys;
        let other = sys.saturating_sub(SPAN_BYTES.load(Ordering::Relaxed));
        let room = (limit as usize).saturating_sub(other);
        goal = goal.min(room.max(marked + (1 << 20)));
    }
    HEAP_GOAL.store(goal, Ordering::Relaxed);
    goal
}

/// True when the heap reached its goal.
#[inline]
pub(crate) fn should_collect() -> bool {
    HEAP_LIVE.load(Ordering::Relaxed) >= HEAP_GOAL.load(Ordering::Relaxed)
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
