//! Test modes and checks: the incremental cycle that exercises the write barrier, and the
//! heap's consistency check.

use crate::collector::{self, SHADE};
use crate::heap;
use crate::mark::{Tracer, with_registers_spilled};
use crate::mutator::{BLOCKING, Mutator, world};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A collection whose marking runs in steps on the mutator's own thread, interleaved with
/// the mutator's writes: the way a concurrent collector would see the heap, without a
/// second thread. The write barrier is on between [`IncrementalCycle::start`] and
/// [`IncrementalCycle::finish`]; objects allocated meanwhile are allocated black.
///
/// Only one attached thread may be running (checked; others must be in blocking regions,
/// which they cannot leave until [`IncrementalCycle::finish`]), and no other collection
/// may start meanwhile.
///
/// A panic between `start` and `finish` (a failing assertion in a test) aborts the process
/// when the cycle is dropped: the world stays stopped for a cycle that never ends, so
/// unwinding further would leave every thread waiting for it (a hang instead of a report).
pub struct IncrementalCycle<'m> {
    m: &'m Mutator,
    t: Tracer,
    start: Instant,
}

impl<'m> IncrementalCycle<'m> {
    /// Finishes the previous sweep, scans the roots (this thread's stack, `Root`s,
    /// finalizer roots) and turns the barrier on.
    ///
    /// # Panics
    /// If another thread is attached, a collection is running, or a `RefMut` of a traced
    /// type is alive on this thread (also checked by [`IncrementalCycle::finish`]).
    pub fn start(m: &'m Mutator) -> IncrementalCycle<'m> {
        collector::init();
        m.assert_no_open_borrow("IncrementalCycle::start");
        {
            let mut w = world();
            assert!(!w.collecting(), "a collection is running");
            assert!(
                w.threads
                    .iter()
                    .all(|t| Arc::ptr_eq(t, m.rec()) || t.state.load(Ordering::Acquire) == BLOCKING),
                "incremental cycles need a single running mutator (others in blocking regions)"
            );
            // Threads in blocking regions (the finalizer thread) stay there until `finish`.
            w.stw = true;
            w.set_collecting(true);
            w.incremental = true;
        }
        let start = Instant::now();
        heap::sweep_all_and_wait();
        m.cache_mut().release_all();
        let mut t = Tracer::new();
        with_registers_spilled(|sp| {
            let threads = world().threads.clone();
            collector::mark_roots(&mut t, &threads, Some((m.rec(), sp)));
        });
        crate::cell::begin_marking();
        IncrementalCycle { m, t, start }
    }

    /// Traces up to `n` grey objects (including those the barrier shaded); true when no
    /// grey object is left.
    pub fn mark_some(&mut self, n: usize) -> bool {
        self.m.flush_barrier();
        let shaded = std::mem::take(&mut *SHADE.lock().unwrap());
        self.t.extend(shaded);
        self.t.drain_some(n) && SHADE.lock().unwrap().is_empty()
    }

    /// Drains the remaining grey objects, runs mark termination (weak references,
    /// finalizers, new sweep generation) and turns the barrier off.
    pub fn finish(mut self) {
        let (m, start) = (self.m, self.start);
        let t = std::mem::replace(&mut self.t, Tracer::new());
        m.assert_no_open_borrow("IncrementalCycle::finish");
        m.cache_mut().release_all();
        m.flush_barrier();
        let (marked, _objects) = with_registers_spilled(|sp| {
            collector::terminate(t, |c| {
                let threads = world().threads.clone();
                collector::mark_roots(c, &threads, Some((m.rec(), sp)));
            })
        });
        collector::finish_cycle(marked);
        {
            let mut w = world();
            w.stw = false;
            w.set_collecting(false);
            w.incremental = false;
        }
        crate::mutator::WORLD_CV.notify_all();
        let _ = start;
        crate::weak::settle();
        crate::weak::wake_finalizer_thread();
    }
}

impl Drop for IncrementalCycle<'_> {
    fn drop(&mut self) {
        // After `finish` (or a normal end of scope) there is nothing to do; while unwinding,
        // see the type's docs.
        if std::thread::panicking() {
            eprintln!("gc: panic inside an IncrementalCycle; aborting (the world is stopped)");
            std::process::abort();
        }
    }
}

/// Objects the calling thread's write barrier shaded that are still in its own barrier
/// buffer, not yet moved to the collector's shared grey list (which happens when the
/// buffer holds 256, and whenever the thread stops or collects).
pub fn barrier_buffered(m: &Mutator) -> usize {
    m.barrier_buffered()
}

/// Checks the collector's span lists against the arena map (debug aid; panics on an
/// inconsistency). Call from an attached thread; its cached spans are released first, and
/// the last cycle's sweep is finished (the background worker's included). Other threads
/// must be detached (or never have allocated): a span in another thread's cache, or being
/// swept by another thread, is counted as lost.
pub fn check_heap(m: &Mutator) {
    m.cache_mut().release_all();
    heap::sweep_all_and_wait();
    heap::check_lists(0);
}

/// Overwrites `bytes` of the stack below the caller with zeros, so that stale GC pointers
/// left by returned calls do not keep objects alive through the conservative stack scan
/// (tests that expect an object to die call this first).
#[inline(never)]
pub fn clear_stack(bytes: usize) {
    let mut buf = [0u8; 4096];
    std::hint::black_box(&mut buf);
    if bytes > 4096 {
        clear_stack(bytes - 4096);
    }
    std::hint::black_box(&mut buf);
}

/// Sets how much the previous cycle must have marked for a cycle to mark in parallel
/// (default 4 MiB: below that, starting helper threads costs more than it saves) and
/// returns the old threshold. 0 makes every cycle mark in parallel, so that tests (and
/// ThreadSanitizer) run the parallel mark phase on small heaps.
pub fn set_parallel_mark_min(bytes: usize) -> usize {
    collector::init();
    collector::PARALLEL_MIN_MARKED.swap(bytes, Ordering::Relaxed)
}

/// Sets the number of markers of a parallel mark phase (the collecting thread plus
/// `n - 1` helper threads; at least 1), overriding `GOMALLOC_GCPROCS`, and returns the old
/// number. The default is the machine's available parallelism.
pub fn set_mark_workers(n: usize) -> usize {
    collector::init();
    collector::WORKERS.swap(n.max(1), Ordering::Relaxed)
}

/// True while a cycle marks (the write barrier is on). Seen from a running mutator, it
/// says the mark runs concurrently with it: a stopped mark is over before its threads run.
pub fn marking() -> bool {
    crate::cell::marking()
}

/// Turns the concurrent mark (the default) on or off (as `GOMALLOC_GCCONCURRENT` does at
/// start-up) and returns the old setting. On, the world stops twice per cycle, at mark
/// start and mark termination, and the pacer's cycles run on a background thread (design
/// §8); off, it stops for the whole mark, on the thread that reached the goal.
pub fn set_concurrent(on: bool) -> bool {
    collector::init();
    let old = collector::CONCURRENT.swap(on, Ordering::Relaxed);
    crate::pacer::update_goal();
    old
}

/// Turns the span-queued mark on or off (as `GOMALLOC_GCGREENTEA=1` does at start-up) and
/// returns the old setting: on, a marker queues the small scan objects it greys by span
/// and scans a span's grey objects together (after Go 1.26's "Green Tea" collector); off
/// (the default), it queues each object. Either mark handles the other's queued work, so
/// the setting may change at any time; a cycle's tracers read it as they meet each span.
pub fn set_green_tea(on: bool) -> bool {
    collector::init();
    crate::mark::GREEN_TEA.swap(on, Ordering::Relaxed)
}

/// Span entries the span-queued mark has scanned since the process began (each scans
/// the grey objects its span holds then), complete up to the last cycle that ended: a
/// marker adds its count when it finishes.
pub fn span_scans() -> usize {
    crate::mark::SPAN_SCANS.load(Ordering::Relaxed)
}

/// Turns the checkmark mode on or off (as `GOMALLOC_GCCHECKMARK=1` does at start-up) and
/// returns the old setting: after each mark, with the world stopped, the collector marks
/// again from the roots into a separate table and ends the process with a report naming
/// the object, its type and a path from a root if the mark left a reachable object
/// unmarked (Go's `GODEBUG=gccheckmark=1`). Costs a hash-table entry per live object and
/// a second mark per cycle.
pub fn set_checkmark(on: bool) -> bool {
    collector::init();
    crate::checkmark::CHECKMARK.swap(on, Ordering::Relaxed)
}

/// Makes the write barrier do nothing (shade nothing, queue no rescan) while `on` (returns
/// the old setting): for tests of the checkmark mode only, which must catch the objects an
/// incremental cycle ([`IncrementalCycle`]) then loses. Never turn it on elsewhere: it
/// frees live objects.
#[doc(hidden)]
pub fn break_write_barrier_for_checkmark_test(on: bool) -> bool {
    BARRIER_BROKEN.swap(on, Ordering::Relaxed)
}

/// See [`break_write_barrier_for_checkmark_test`].
pub(crate) static BARRIER_BROKEN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
