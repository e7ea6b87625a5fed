//! The concurrent mark (the default; `gc::debug::set_concurrent`): mutators
//! allocate, replace and read shared graphs while the collector marks, with the checkmark
//! on (a reachable object the mark missed ends the process with a report); a `RefLock`
//! mutably borrowed while markers trace it; the pacer's cycles on the background worker.
//! ThreadSanitizer runs this file (`scripts/sanitizers.sh`).
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
#[path = "common/serial.rs"]
mod serial;

use common::{Link, list_sum, xorshift};
use gc::{Gc, Lock, RefLock, Root, Trace};
use serial::serial;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Slots of lists that mutators replace while cycles run, rooted precisely.
#[derive(Trace)]
struct Table {
    slots: Vec<Lock<Option<Gc<Link>>>>,
}

const SLOTS: usize = 64;
const LEN: u64 = 200;

fn list(m: &gc::Mutator, len: u64) -> Gc<Link> {
    let mut head = None;
    for v in 0..len {
        head = Some(Gc::new(
            m,
            Link {
                value: v,
                next: Lock::new(head),
            },
        ));
    }
    head.unwrap()
}

fn check_table(t: &Table) {
    for s in &t.slots {
        if let Some(h) = s.get() {
            assert_eq!(list_sum(Some(h)), (LEN, LEN * (LEN - 1) / 2));
        }
    }
}

/// Runs a mutator that replaces random slots of `table` with new lists until `stop`,
/// checking the lists it reads; counts the lists it built while a mark was running.
fn replace_slots(
    table: Arc<Root<Table>>,
    stop: Arc<AtomicBool>,
    during_mark: Arc<AtomicU64>,
    seed: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let m = gc::attach();
        let mut x = seed | 1;
        while !stop.load(Ordering::Relaxed) {
            let slot = &table.get().slots[xorshift(&mut x) as usize % SLOTS];
            if let Some(h) = slot.get() {
                assert_eq!(list_sum(Some(h)), (LEN, LEN * (LEN - 1) / 2));
            }
            let marking = gc::debug::marking();
            let l = list(&m, LEN);
            if marking && gc::debug::marking() {
                during_mark.fetch_add(1, Ordering::Relaxed);
            }
            slot.set(&m, Some(l));
        }
    })
}

#[test]
fn mutators_replace_shared_lists_while_the_collector_marks() {
    let _s = serial();
    gc::debug::set_concurrent(true);
    gc::debug::set_checkmark(true);
    let mut m = gc::attach();
    let table = Arc::new(Root::new(Gc::new(
        &m,
        Table {
            slots: (0..SLOTS).map(|_| Lock::new(Some(list(&m, LEN)))).collect(),
        },
    )));
    // Ballast, so that each mark takes long enough for the mutators to run inside it.
    let ballast = Root::new(list(&m, 200_000));
    let stop = Arc::new(AtomicBool::new(false));
    let during_mark = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|i| replace_slots(table.clone(), stop.clone(), during_mark.clone(), 0x9e37 + i))
        .collect();
    let mut cycles = 0;
    while cycles < 20 || (during_mark.load(Ordering::Relaxed) == 0 && cycles < 2_000) {
        m.blocking(gc::collect);
        cycles += 1;
        check_table(&table.get());
    }
    stop.store(true, Ordering::Relaxed);
    m.blocking(|| threads.into_iter().for_each(|t| t.join().unwrap()));
    gc::collect();
    check_table(&table.get());
    assert_eq!(list_sum(Some(ballast.get())).0, 200_000);
    let st = gc::stats();
    assert!(
        during_mark.load(Ordering::Relaxed) > 0,
        "no mutator built a list while a mark ran, in {cycles} cycles: {st:?}"
    );
    assert!(st.concurrent_last > std::time::Duration::ZERO, "{st:?}");
    gc::debug::check_heap(&m);
    gc::debug::set_checkmark(false);
}

/// A rooted vector behind a `RefLock`, which markers trace through a shared borrow.
#[derive(Trace)]
struct Bag {
    items: RefLock<Vec<Gc<Link>>>,
}

#[test]
fn a_reflock_borrowed_mutably_while_markers_trace_it() {
    let _s = serial();
    gc::debug::set_concurrent(true);
    let mut m = gc::attach();
    let bag = Arc::new(Root::new(Gc::new(
        &m,
        Bag {
            items: RefLock::new((0..20_000).map(|v| Gc::new(&m, leaf(v))).collect()),
        },
    )));
    let _ballast = Root::new(list(&m, 100_000));
    let stop = Arc::new(AtomicBool::new(false));
    let borrows = Arc::new(AtomicU64::new(0));
    let t = {
        let (bag, stop, borrows) = (bag.clone(), stop.clone(), borrows.clone());
        std::thread::spawn(move || {
            let m = gc::attach();
            let mut v = 20_000;
            while !stop.load(Ordering::Relaxed) {
                let new = Gc::new(&m, leaf(v));
                // Panics if the borrow met a marker's ("already borrowed").
                let b = bag.get();
                let mut items = b.items.borrow_mut(&m);
                let i = v as usize % items.len();
                items[i] = new;
                drop(items);
                v += 1;
                borrows.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for _ in 0..30 {
        m.blocking(gc::collect);
    }
    stop.store(true, Ordering::Relaxed);
    m.blocking(|| t.join().unwrap());
    gc::collect();
    let b = bag.get();
    let items = b.items.borrow();
    assert_eq!(items.len(), 20_000);
    // Every element is a live, intact leaf (a lost one would have been freed and reused).
    for (i, it) in items.iter().enumerate() {
        assert!(it.next.get().is_none());
        assert_eq!(
            it.value as usize % items.len(),
            i,
            "a leaf in the wrong place"
        );
    }
    assert!(borrows.load(Ordering::Relaxed) > 0);
}

fn leaf(value: u64) -> Link {
    Link {
        value,
        next: Lock::new(None),
    }
}

#[test]
fn the_pacer_runs_concurrent_cycles_on_its_background_worker() {
    let _s = serial();
    gc::debug::set_concurrent(true);
    let m = gc::attach();
    let keep = Root::new(list(&m, 50_000));
    let before = gc::stats().cycles;
    let mut during_mark = 0u64;
    // Garbage until the pacer has run a few cycles (none is forced here) and this thread
    // has allocated inside one's mark; bounded in time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (gc::stats().cycles < before + 3 || during_mark == 0)
        && std::time::Instant::now() < deadline
    {
        let marking = gc::debug::marking();
        let l = list(&m, 100);
        if marking && gc::debug::marking() {
            during_mark += 1;
        }
        assert_eq!(list_sum(Some(l)).0, 100);
    }
    let st = gc::stats();
    assert!(st.cycles > before, "no cycle started: {st:?}");
    assert!(
        during_mark > 0,
        "the allocating thread never ran during a mark: {st:?}"
    );
    assert_eq!(list_sum(Some(keep.get())).0, 50_000);
}

/// `Dropper`s dropped by threads other than the one allocating them.
static SWEPT_DROPS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread that allocates `Dropper`s (whose lazy sweeps are not counted).
    static ALLOCATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A pointer-free object whose destructor counts itself when another thread runs it.
struct Dropper {
    _words: [u64; 6],
}

impl Drop for Dropper {
    fn drop(&mut self) {
        if !ALLOCATING.with(|a| a.get()) {
            SWEPT_DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: holds no GC pointer; its destructor touches none.
unsafe impl Trace for Dropper {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut gc::Tracer) {}
}

/// What a pacer's cycle found dead is swept by its background worker (Go's background
/// sweeper): destructors run on a thread other than the allocating one, whose lazy sweeps
/// are not counted. (The count starts with the test: counting from the end of the
/// allocation would race with a worker that swept everything before this thread looked.)
///
/// A cycle that the allocating thread ran itself is swept by that thread: it reached the
/// goal before the worker, delayed on a loaded machine, began the cycle it was asked for,
/// as Go's allocating goroutine runs `gcStart`. So the test allocates until a cycle ends,
/// waits a second for the worker's sweep, and goes on with another cycle if that one left
/// the worker nothing, until a minute has passed (on a loaded machine one run in three or
/// five had both cycles of a single try run by the allocating thread).
#[test]
fn the_background_worker_sweeps_after_its_cycles() {
    serial::alone(|| {
        gc::debug::set_concurrent(true);
        let m = gc::attach();
        ALLOCATING.with(|a| a.set(true));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut cycles = 0;
        while SWEPT_DROPS.load(Ordering::Relaxed) < 1000 && std::time::Instant::now() < deadline {
            // Garbage with destructors until one of the pacer's cycles has ended.
            let before = gc::stats().cycles;
            while gc::stats().cycles == before && std::time::Instant::now() < deadline {
                Gc::new(&m, Dropper { _words: [7; 6] });
            }
            cycles += gc::stats().cycles - before;
            // From here nothing allocates: the dead objects this thread's lazy sweeps did
            // not reach are dropped by the worker, or not at all.
            let wait = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while SWEPT_DROPS.load(Ordering::Relaxed) < 1000
                && std::time::Instant::now() < wait.min(deadline)
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let swept = SWEPT_DROPS.load(Ordering::Relaxed);
        assert!(
            swept >= 1000,
            "{swept} objects swept by other threads after {cycles} cycles: {:?}",
            gc::stats()
        );
        drop(m);
    })
}

/// Finalizers run on objects of [`weak_references_and_finalizers_of_live_objects_survive_cycle_ends`].
static LIVE_FINALIZED: AtomicU64 = AtomicU64::new(0);

fn finalize_live(_: &gc::Mutator, _: Gc<Link>) {
    LIVE_FINALIZED.fetch_add(1, Ordering::Relaxed);
}

/// Weak references and finalizers are processed after mark termination's stop, with the
/// world running (`gc::weak::settle`). A thread that makes weak references and arms
/// finalizers for new, live objects while another churns through cycles, so that some are
/// made between a stop and the processing that follows it (objects that cycle's mark never
/// saw): none is cleared, none queued.
#[test]
fn weak_references_and_finalizers_of_live_objects_survive_cycle_ends() {
    serial::alone(|| {
        gc::debug::set_concurrent(true);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let m = gc::attach();
                while !done.load(Ordering::Relaxed) {
                    list(&m, 100);
                }
            });
            let m = gc::attach();
            let c0 = gc::stats().cycles;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut made = 0u64;
            while gc::stats().cycles < c0 + 30 && std::time::Instant::now() < deadline {
                let obj = Gc::new(
                    &m,
                    Link {
                        value: made,
                        next: Lock::new(None),
                    },
                );
                let w = gc::Weak::new(&m, obj);
                gc::set_finalizer(&m, obj, finalize_live);
                list(&m, 20);
                assert!(!w.is_cleared(), "weak reference {made} cleared while live");
                assert_eq!(w.upgrade(&m).map(|o| o.value), Some(made));
                assert!(
                    gc::clear_finalizer(&m, obj),
                    "finalizer {made} queued while live"
                );
                assert_eq!(obj.value, made);
                made += 1;
            }
            done.store(true, Ordering::Relaxed);
            assert!(gc::stats().cycles >= c0 + 30, "{:?}", gc::stats());
            assert!(made > 100, "{made}");
        });
        gc::collect();
        assert_eq!(LIVE_FINALIZED.load(Ordering::Relaxed), 0);
    })
}
