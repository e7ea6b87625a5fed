//! Regression test: collections back to back while mutators park and wake.
//!
//! A thread parked in one cycle used to set itself back to `RUNNING` only when it woke up.
//! When the next cycle stopped the world before that thread had woken, the collector took
//! its stale `PARKED` state for stopped, scanned its old stack pointer and marked while
//! the thread ran again, so objects it allocated meanwhile were swept while still
//! reachable: private lists read back with other threads' nodes in them (the intermittent
//! failure of `tests/threads.rs`). Debug builds now also abort if any mutator resumed
//! during a stopped cycle.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
use common::{Link, list_sum};

use gc::{Gc, Lock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

#[test]
fn lists_survive_back_to_back_collections() {
    const MUTATORS: u64 = 3;
    const ROUNDS: u64 = 2_000;
    /// Mutators keep going until the collector has run this many cycles while they run.
    /// (3000 rather than 300: the race of `heap::begin_sweep_cycle` with the unattached
    /// collector's own sweep failed about one run in 20 at 300 cycles.)
    const CYCLES: u64 = 3_000;
    let done = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(MUTATORS as usize + 1));
    // An unattached thread collecting in a loop: the next cycle stops the world right
    // after the previous one restarted it, while its parked threads are still waking.
    let collector = {
        let (done, cycles, start) = (done.clone(), cycles.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            while !done.load(Ordering::Relaxed) {
                gc::collect();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mutators: Vec<_> = (0..MUTATORS)
        .map(|t| {
            let (cycles, start) = (cycles.clone(), start.clone());
            std::thread::spawn(move || {
                let mut m = gc::attach();
                m.blocking(|| start.wait());
                let mut round = 0;
                while round < ROUNDS || cycles.load(Ordering::Relaxed) < CYCLES {
                    round += 1;
                    let mut local = None;
                    for k in 0..40 {
                        local = Some(Gc::new(
                            &m,
                            Link {
                                value: t * 1_000 + k,
                                next: Lock::new(local),
                            },
                        ));
                    }
                    let want: u64 = (0..40).map(|k| t * 1_000 + k).sum();
                    assert_eq!(list_sum(local), (40, want), "thread {t}, round {round}");
                }
            })
        })
        .collect();
    for h in mutators {
        h.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    collector.join().unwrap();
    let m = gc::attach();
    gc::collect();
    gc::collect();
    gc::debug::check_heap(&m);
    let st = gc::stats();
    assert!(st.cycles >= CYCLES, "{st:?}");
    assert!(st.objects_freed > 0, "{st:?}");
}
