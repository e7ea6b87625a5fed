//! The checkmark mode (`GOMALLOC_GCCHECKMARK=1`): after each mark the collector marks
//! again from the roots with the world stopped and ends the process with a report if the
//! mark left a reachable object unmarked.
//!
//! The scenarios run in child processes of this test binary: one whose marking is broken
//! on purpose (the write barrier shades nothing during an incremental cycle, so an object
//! moved behind a black one is lost) must abort with the report; correct cycles,
//! stop-the-world and incremental, must pass the check.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/obj.rs"]
mod common_obj;
use common_obj::{Obj, obj};
use gc::Root;
use gc::debug::IncrementalCycle;
use std::process::{Command, Output};

/// root -> a -> b (`root` is rooted by `Root`; nothing else names `a` or `b`).
#[inline(never)]
fn build(m: &gc::Mutator, root: &Root<Obj>) {
    let a = obj(m, 1);
    let b = obj(m, 2);
    a.slot.set(m, Some(b));
    root.slot.set(m, Some(a));
}

/// Moves `b` from `a` into `root`'s list: behind `root`, black once the cycle traced it.
#[inline(never)]
fn hide(m: &gc::Mutator, root: &Root<Obj>) {
    let a = root.slot.get().unwrap();
    let b = a.slot.get().unwrap();
    root.list.borrow_mut(m).push(b);
    a.slot.set(m, None);
}

/// An incremental cycle that hides `b` between two marking steps: the barrier must shade
/// it (or, broken, lose it).
fn incremental_cycle_hiding_an_object(m: &gc::Mutator, root: &Root<Obj>) {
    build(m, root);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(m);
    // One object traced: the root, now black; `a` grey, `b` white.
    assert!(!cycle.mark_some(1));
    hide(m, root);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(16) {}
    cycle.finish();
}

/// Runs this binary's test `name` as a child with `CHECKMARK_CHILD=1` and `env`.
fn child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("CHECKMARK_CHILD", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn in_child() -> bool {
    std::env::var_os("CHECKMARK_CHILD").is_some()
}

#[test]
fn a_broken_barrier_is_reported_with_type_and_path() {
    if in_child() {
        let m = gc::attach();
        let root = Root::new(obj(&m, 0));
        gc::debug::break_write_barrier_for_checkmark_test(true);
        incremental_cycle_hiding_an_object(&m, &root);
        // Unreachable: the check ends the process inside `finish`.
        eprintln!("checkmark missed the lost object");
        return;
    }
    let out = child(
        "a_broken_barrier_is_reported_with_type_and_path",
        &[("GOMALLOC_GCCHECKMARK", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child must abort: {err}");
    assert!(
        !err.contains("checkmark missed the lost object"),
        "the child went on: {err}"
    );
    // The object (`b`), its type, and the path: the `Root` -> root object -> b.
    let report: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("gc: checkmark: object"))
        .collect();
    assert!(!report.is_empty(), "no checkmark report: {err}");
    assert!(
        report[0].contains("is reachable but the mark left it unmarked")
            && report[0].contains("`checkmark::common_obj::Obj`"),
        "{err}"
    );
    assert_eq!(
        report.get(1).copied(),
        Some("gc: checkmark: path from a root: a gc::Root"),
        "{err}"
    );
    let hops: Vec<&str> = report[2..]
        .iter()
        .take_while(|l| l.starts_with("    -> "))
        .copied()
        .collect();
    assert_eq!(hops.len(), 2, "root object, then the lost one: {err}");
    assert!(
        hops.iter()
            .all(|h| h.contains("`checkmark::common_obj::Obj`")),
        "{err}"
    );
    // The last hop is the object the first line names.
    let addr = report[0].split_whitespace().nth(3).unwrap();
    assert!(hops[1].starts_with(&format!("    -> {addr} ")), "{err}");
    assert!(
        err.contains("gc: fatal error: checkmark found a reachable object the mark missed"),
        "{err}"
    );
}

#[test]
fn correct_cycles_pass_the_check() {
    if in_child() {
        let m = gc::attach();
        assert!(gc::debug::set_checkmark(true), "on from the environment");
        let root = Root::new(obj(&m, 0));
        incremental_cycle_hiding_an_object(&m, &root);
        // A stop-the-world cycle over a longer structure, parallel markers included.
        gc::debug::set_parallel_mark_min(0);
        gc::debug::set_mark_workers(3);
        let mut tail = root.get();
        for i in 0..10_000 {
            let o = obj(&m, 10 + i);
            tail.slot.set(&m, Some(o));
            tail = o;
        }
        gc::collect();
        // What the barrier kept is intact.
        assert_eq!(root.list.borrow()[0].id, 2);
        eprintln!("child done");
        return;
    }
    let out = child(
        "correct_cycles_pass_the_check",
        &[("GOMALLOC_GCCHECKMARK", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("child done"), "{err}");
    assert!(!err.contains("checkmark"), "{err}");
}

#[test]
fn a_bad_setting_is_reported_and_ignored() {
    if in_child() {
        let m = gc::attach();
        let _ = obj(&m, 0);
        gc::collect();
        assert!(!gc::debug::set_checkmark(false), "`yes` is not a setting");
        return;
    }
    let out = child(
        "a_bad_setting_is_reported_and_ignored",
        &[("GOMALLOC_GCCHECKMARK", "yes")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("gomalloc-gc: GOMALLOC_GCCHECKMARK=\"yes\" is not `0` or `1`; using 0"),
        "{err}"
    );
}
