//! The pacer (GOGC, memory limit) and the GOMALLOC_GCTRACE and GOMALLOC_GCPACERTRACE output.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/child.rs"]
mod child;

use child::child;
use gc::{Gc, Trace};

#[derive(Trace)]
struct Blob {
    next: Option<Gc<Blob>>,
    pad: [u64; 6],
}

#[inline(never)]
fn churn(m: &gc::Mutator, bytes: usize) {
    for i in 0..bytes / 64 {
        let b = Gc::new(
            m,
            Blob {
                next: None,
                pad: [i as u64; 6],
            },
        );
        assert_eq!(b.pad[5], i as u64);
    }
}

/// The live heap of the limiter tests.
const LIVE: usize = 32 << 20;

/// A rooted list of `bytes` of 64-byte blobs: a live heap of that size.
fn live_list(m: &gc::Mutator, bytes: usize) -> gc::Root<Blob> {
    let mut head: Option<Gc<Blob>> = None;
    for i in 0..bytes / 64 {
        head = Some(Gc::new(
            m,
            Blob {
                next: head,
                pad: [i as u64; 6],
            },
        ));
    }
    gc::Root::new(head.expect("a list of at least one blob"))
}

/// One test: the settings are process-wide.
#[test]
fn gogc_and_memory_limit_drive_cycles() {
    let m = gc::attach();
    gc::set_gc_percent(100);
    let c0 = gc::stats().cycles;
    churn(&m, 64 << 20);
    let s = gc::stats();
    // (The whole `stats()` in the message: the limiter and the goal tell a starved
    // background worker from a pacer that did not trigger.)
    assert!(
        s.cycles >= c0 + 3,
        "64 MiB of garbage at GOGC=100 ran {} cycles: {s:?}",
        s.cycles - c0
    );
    assert!(
        s.heap_goal >= gc::MIN_HEAP,
        "goal {} below the minimum heap",
        s.heap_goal
    );

    // GOGC=off: no cycle however much is allocated.
    assert_eq!(gc::set_gc_percent(-1), 100);
    // A cycle the pacer started before may still run (on the concurrent mode's background
    // worker): a forced one waits for it to end.
    gc::collect();
    let c1 = gc::stats().cycles;
    churn(&m, 32 << 20);
    assert_eq!(gc::stats().cycles, c1, "GOGC=off still collected");

    // ... unless a memory limit is set: the limit alone drives cycles.
    let sys = gomalloc::stats().sys as u64;
    gc::set_memory_limit(sys + (8 << 20));
    churn(&m, 64 << 20);
    let s = gc::stats();
    assert!(s.cycles > c1, "memory limit did not trigger a cycle");
    assert!(s.heap_goal < usize::MAX);
    gc::set_memory_limit(u64::MAX);
    gc::set_gc_percent(100);
}

/// A live heap over the memory limit makes cycles run back to back, until the GC CPU
/// limiter turns on (Go's `mgclimit.go`): the memory limit then stops lowering the goal,
/// and the program allocates on. In a child process: the limiter's state is process-wide.
/// With the stopped mark, whose cycles take the whole CPU, so the collector's share does
/// not depend on how the machine schedules the background worker.
#[test]
fn the_cpu_limiter_lets_a_heap_over_its_memory_limit_grow() {
    if std::env::var_os("LIMITER_CHILD").is_some() {
        gc::debug::set_concurrent(false);
        let m = gc::attach();
        let live = live_list(&m, LIVE);
        gc::collect();
        assert_eq!(gc::stats().limiter_last_enabled, 0, "{:?}", gc::stats());
        gc::set_memory_limit(1 << 20);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut max_goal = 0;
        let mut on_since = None;
        // Garbage until the limiter is on and four more cycles ran.
        while on_since.is_none_or(|c| gc::stats().cycles < c + 4)
            && std::time::Instant::now() < deadline
        {
            churn(&m, 1 << 20);
            let s = gc::stats();
            if s.limiter_last_enabled > 0 {
                on_since.get_or_insert(s.cycles);
                max_goal = max_goal.max(s.heap_goal);
            }
        }
        let s = gc::stats();
        assert!(
            s.limiter_last_enabled > 0,
            "the limiter never turned on: {s:?}"
        );
        // With the limiter on, the goal is GOGC's (twice the live heap), not the limit's
        // floor (the marked heap and 1 MiB).
        assert!(
            max_goal >= s.heap_marked + LIVE / 2,
            "goal {max_goal} with the limiter on: {s:?}"
        );
        assert_eq!(live.get().pad.len(), 6);
        return;
    }
    child::child_passes(
        "the_cpu_limiter_lets_a_heap_over_its_memory_limit_grow",
        &[("LIMITER_CHILD", "1")],
    );
}

/// Without a memory limit the GC CPU limiter never acts, however much of the CPU the
/// collector takes: the goal is GOGC's, so cycles cannot spiral, and a limiter that turned
/// off assists and the wait at the goal would let the heap outgrow it without bound. At
/// GOGC=1 with 32 MiB live and the stopped mark, the collector takes nearly all the CPU for
/// three seconds (the limiter's bucket fills in about one).
#[test]
fn without_a_memory_limit_the_cpu_limiter_never_acts() {
    if std::env::var_os("NO_LIMIT_CHILD").is_some() {
        gc::debug::set_concurrent(false);
        let m = gc::attach();
        let live = live_list(&m, LIVE);
        gc::set_gc_percent(1);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < end {
            churn(&m, 1 << 20);
        }
        let s = gc::stats();
        assert!(s.gc_cpu_fraction > 0.5, "{s:?}");
        assert_eq!(s.limiter_last_enabled, 0, "{s:?}");
        // The goal stayed GOGC's: 1% over the marked heap, not relaxed.
        assert!(s.heap_goal < s.heap_marked + LIVE / 8, "{s:?}");
        assert_eq!(live.get().pad.len(), 6);
        return;
    }
    child::child_passes(
        "without_a_memory_limit_the_cpu_limiter_never_acts",
        &[("NO_LIMIT_CHILD", "1")],
    );
}

/// Re-runs this test binary with GOMALLOC_GCTRACE=1 and checks the child's trace lines
/// against Go 1.19's gctrace format.
#[test]
fn gctrace_prints_go_format() {
    if std::env::var_os("GCTRACE_CHILD").is_some() {
        let m = gc::attach();
        churn(&m, 16 << 20);
        // 16 MiB against a 4 MiB goal: a cycle ran before the forced one, whether or not
        // the background worker was scheduled in time (a mutator at the goal runs it).
        assert!(gc::stats().cycles >= 1, "{:?}", gc::stats());
        gc::collect();
        return;
    }
    let out = child(
        "gctrace_prints_go_format",
        &[("GCTRACE_CHILD", "1"), ("GOMALLOC_GCTRACE", "1")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("gc ")).collect();
    assert!(lines.len() >= 2, "no trace lines in: {err}");
    // gc N @T.TTTs P%: a+b+c ms clock, a+b/c/d+e ms cpu, x->y->z MB, g MB goal,
    // s MB stacks, g MB globals, n P [(forced)]
    for l in &lines {
        assert!(matches(l), "not Go's gctrace format: {l}");
    }
    // The forced cycle is marked (in the concurrent mode a background cycle may end after
    // it, before the child exits).
    assert!(
        lines.iter().any(|l| l.ends_with(" P (forced)")),
        "{lines:?}"
    );
}

/// Re-runs this test binary with GOMALLOC_GCPACERTRACE=1 and a concurrent mark, and checks
/// that each `pacer:` line's runway is the one Go 1.19's pacer derives from the figures the
/// line prints: `cons/mark * (1 - background) / background * scan work`, the estimate
/// being at least this cycle's ratio.
#[test]
fn the_pacer_trace_shows_the_runway_from_scan_work() {
    if std::env::var_os("PACERTRACE_CHILD").is_some() {
        let m = gc::attach();
        let _live = live_list(&m, 8 << 20);
        churn(&m, 96 << 20);
        assert!(gc::stats().cycles >= 2, "{:?}", gc::stats());
        return;
    }
    let out = child(
        "the_pacer_trace_shows_the_runway_from_scan_work",
        &[
            ("PACERTRACE_CHILD", "1"),
            ("GOMALLOC_GCPACERTRACE", "1"),
            ("GOMALLOC_GCCONCURRENT", "1"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("pacer: ")).collect();
    assert!(!lines.is_empty(), "no pacer lines in: {err}");
    for l in &lines {
        let p = parse_pacer(l).unwrap_or_else(|| panic!("not a pacer line: {l}"));
        assert!(p.cons_mark >= p.current, "{l}");
        assert!(p.background > 0.0 && p.utilization >= p.background, "{l}");
        if p.background >= 0.05 {
            let expected = p.cons_mark * (1.0 - p.background) / p.background * p.work;
            // The runway is whole bytes, truncated: up to 1 B below the figure whatever
            // its size (a cycle with 8 B of scan work has a runway of 1.6 B, printed 1).
            let err = ((p.runway - expected).abs() - 1.0).max(0.0) / expected.max(1.0);
            assert!(err < 0.1, "runway {} against {expected}: {l}", p.runway);
        }
    }
}

/// The figures of one `pacer:` line.
struct PacerLine {
    utilization: f64,
    background: f64,
    work: f64,
    cons_mark: f64,
    current: f64,
    runway: f64,
}

/// Parses `pacer: U% CPU (B% background) for W B work in T ms, A B allocated[ (outran)];
/// cons/mark C (this cycle D), runway R B`.
fn parse_pacer(l: &str) -> Option<PacerLine> {
    let rest = l.strip_prefix("pacer: ")?;
    let (u, rest) = rest.split_once("% CPU (")?;
    let (b, rest) = rest.split_once("% background) for ")?;
    let (w, rest) = rest.split_once(" B work in ")?;
    let (_ms, rest) = rest.split_once(" ms, ")?;
    let (_alloc, rest) = rest.split_once(" B allocated")?;
    let (_, rest) = rest.split_once("; cons/mark ")?;
    let (c, rest) = rest.split_once(" (this cycle ")?;
    let (d, rest) = rest.split_once("), runway ")?;
    let r = rest.strip_suffix(" B")?;
    Some(PacerLine {
        utilization: u.parse::<f64>().ok()? / 100.0,
        background: b.parse::<f64>().ok()? / 100.0,
        work: w.parse().ok()?,
        cons_mark: c.parse().ok()?,
        current: d.parse().ok()?,
        runway: r.parse().ok()?,
    })
}

/// Checks one line against Go 1.19's gctrace format: the fixed separators in order, and
/// a number in every field.
fn matches(line: &str) -> bool {
    let is_num = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.starts_with('.')
    };
    let Some(rest) = line.strip_prefix("gc ") else {
        return false;
    };
    let Some((n, rest)) = rest.split_once(" @") else {
        return false;
    };
    let Some((t, rest)) = rest.split_once("s ") else {
        return false;
    };
    let Some((pct, rest)) = rest.split_once("%: ") else {
        return false;
    };
    let Some((clock, rest)) = rest.split_once(" ms clock, ") else {
        return false;
    };
    let Some((cpu, rest)) = rest.split_once(" ms cpu, ") else {
        return false;
    };
    let Some((heap, rest)) = rest.split_once(" MB, ") else {
        return false;
    };
    let Some((goal, rest)) = rest.split_once(" MB goal, ") else {
        return false;
    };
    let Some((stacks, rest)) = rest.split_once(" MB stacks, ") else {
        return false;
    };
    let Some((globals, rest)) = rest.split_once(" MB globals, ") else {
        return false;
    };
    let procs = rest.strip_suffix(" (forced)").unwrap_or(rest);
    let Some(procs) = procs.strip_suffix(" P") else {
        return false;
    };
    let clock: Vec<&str> = clock.split('+').collect();
    let cpu: Vec<&str> = cpu.split(['+', '/']).collect();
    let heap: Vec<&str> = heap.split("->").collect();
    is_num(n)
        && is_num(t)
        && is_num(pct)
        && clock.len() == 3
        && clock.iter().all(|s| is_num(s))
        && cpu.len() == 5
        && cpu.iter().all(|s| is_num(s))
        && heap.len() == 3
        && heap.iter().all(|s| is_num(s))
        && [goal, stacks, globals, procs].iter().all(|s| is_num(s))
}
