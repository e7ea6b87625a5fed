//! The span-queued mark (`GOMALLOC_GCGREENTEA=1`, `gc::debug::set_green_tea`): markers
//! queue small scan objects by span and scan a span's grey objects together. With the
//! checkmark on (a reachable object the mark missed ends the process with a report),
//! mutators build and replace trees while concurrent marks run, and the world-stopped mark
//! shares span entries between its parallel markers. ThreadSanitizer runs this file
//! (`scripts/sanitizers.sh`).
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
#[path = "common/serial.rs"]
mod serial;

use common::xorshift;
use gc::{Gc, Lock, Root, Trace};
use serial::serial;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Trace)]
struct Node {
    left: Lock<Option<Gc<Node>>>,
    right: Lock<Option<Gc<Node>>>,
    value: u64,
}

/// A complete tree of `depth` levels whose node values are their heap numbers (root 1,
/// children `2v` and `2v + 1`).
fn tree(m: &gc::Mutator, depth: u32, value: u64) -> Gc<Node> {
    let (l, r) = if depth > 1 {
        (
            Some(tree(m, depth - 1, 2 * value)),
            Some(tree(m, depth - 1, 2 * value + 1)),
        )
    } else {
        (None, None)
    };
    Gc::new(
        m,
        Node {
            left: Lock::new(l),
            right: Lock::new(r),
            value,
        },
    )
}

/// Nodes of the tree at `n`, checking every node's value against its place.
fn check_tree(n: Gc<Node>, value: u64) -> u64 {
    assert_eq!(
        n.value, value,
        "a node in the wrong place (freed and reused?)"
    );
    1 + n.left.get().map_or(0, |l| check_tree(l, 2 * value))
        + n.right.get().map_or(0, |r| check_tree(r, 2 * value + 1))
}

/// Slots of trees that mutators replace while cycles run.
#[derive(Trace)]
struct Table {
    slots: Vec<Lock<Option<Gc<Node>>>>,
}

const SLOTS: usize = 32;
const DEPTH: u32 = 8;
const NODES: u64 = (1 << DEPTH) - 1;

fn replace_trees(
    table: Arc<Root<Table>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let m = gc::attach();
        let mut x = seed | 1;
        while !stop.load(Ordering::Relaxed) {
            let slot = &table.get().slots[xorshift(&mut x) as usize % SLOTS];
            if let Some(t) = slot.get() {
                assert_eq!(check_tree(t, 1), NODES);
            }
            slot.set(&m, Some(tree(&m, DEPTH, 1)));
        }
    })
}

fn run(concurrent: bool) {
    let _s = serial();
    let old_mode = gc::debug::set_concurrent(concurrent);
    let old_tea = gc::debug::set_green_tea(true);
    let old_check = gc::debug::set_checkmark(true);
    let mut m = gc::attach();
    let table = Arc::new(Root::new(Gc::new(
        &m,
        Table {
            slots: (0..SLOTS)
                .map(|_| Lock::new(Some(tree(&m, DEPTH, 1))))
                .collect(),
        },
    )));
    // Ballast, so that each mark takes long enough for the mutators to run inside it and
    // for a second marker to take part in a stopped one.
    let ballast = Root::new(tree(&m, 16, 1));
    let scans = gc::debug::span_scans();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|i| replace_trees(table.clone(), stop.clone(), 0x9e37 + i))
        .collect();
    for _ in 0..15 {
        m.blocking(gc::collect);
        for s in &table.get().slots {
            if let Some(t) = s.get() {
                assert_eq!(check_tree(t, 1), NODES);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    m.blocking(|| threads.into_iter().for_each(|t| t.join().unwrap()));
    gc::collect();
    assert_eq!(check_tree(ballast.get(), 1), (1 << 16) - 1);
    // The marks went through span entries: each cycle scanned at least the ballast's
    // spans that way (a 65,535-node tree fills hundreds of spans).
    assert!(
        gc::debug::span_scans() - scans >= 15 * 100,
        "{} span scans in 16 cycles",
        gc::debug::span_scans() - scans
    );
    gc::debug::check_heap(&m);
    gc::debug::set_checkmark(old_check);
    gc::debug::set_green_tea(old_tea);
    gc::debug::set_concurrent(old_mode);
}

#[test]
fn the_span_queued_mark_keeps_what_mutators_reach_while_it_runs() {
    run(true);
}

#[test]
fn the_stopped_span_queued_mark_shares_spans_between_its_markers() {
    run(false);
}

/// The mode changes between and during cycles: either mark scans the other's entries.
#[test]
fn switching_the_span_queued_mark_on_and_off_loses_nothing() {
    let _s = serial();
    let old_check = gc::debug::set_checkmark(true);
    let old_tea = gc::debug::set_green_tea(false);
    let m = gc::attach();
    let keep = Root::new(tree(&m, 14, 1));
    for i in 0..8 {
        gc::debug::set_green_tea(i % 2 == 0);
        // Garbage, so that the pacer's cycles begin in either mode while this runs.
        for _ in 0..20 {
            std::hint::black_box(tree(&m, 10, 1));
        }
        gc::collect();
        assert_eq!(check_tree(keep.get(), 1), (1 << 14) - 1);
    }
    gc::debug::set_green_tea(old_tea);
    gc::debug::set_checkmark(old_check);
}
