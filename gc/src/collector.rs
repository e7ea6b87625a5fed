//! One collection cycle (Go's `mgc.go`): sweep termination, stop the world, mark roots and
//! drain on every core, mark termination (weak references, finalizers, new sweep
//! generation, next goal), restart the world.

use crate::handshake;
use crate::heap;
use crate::mark::{Tracer, with_registers_spilled};
use crate::mutator::{
    self, BLOCKING, FLUSH_ROUND, GC_FLAGS, MARKING, Mutator, PARKED, RUNNING, STOP, ThreadRec,
    WORLD_CV, world,
};
use crate::pacer;
use crate::stats::{self, CycleReport, STACK_BYTES};
use crate::workshare::WorkList;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();
static TRACE: AtomicBool = AtomicBool::new(false);
/// Markers per cycle: the collecting thread plus `WORKERS - 1` helpers (`GOMALLOC_GCPROCS`,
/// default: available parallelism; [`crate::debug::set_mark_workers`]).
pub(crate) static WORKERS: AtomicUsize = AtomicUsize::new(1);
/// Grey work shared by parallel markers.
static WORK: WorkList = WorkList::new();
/// Objects greyed by the write barrier while marking concurrently with mutators.
pub(crate) static SHADE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Address and size of the grey lists' statics, `SHADE` and `WORK` (for the misuse
/// checker).
pub(crate) fn grey_ranges() -> [(usize, usize); 2] {
    [
        (&SHADE as *const _ as usize, std::mem::size_of_val(&SHADE)),
        (&WORK as *const _ as usize, std::mem::size_of_val(&WORK)),
    ]
}
/// Bytes greyed by the write barrier (added to the cycle's marked bytes).
pub(crate) static SHADE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Marking runs concurrently with the mutators (the default; `GOMALLOC_GCCONCURRENT=0` or
/// [`crate::debug::set_concurrent`] selects the stopped mark): the world stops twice per
/// cycle, at mark start and at mark termination, instead of for the whole mark.
pub(crate) static CONCURRENT: AtomicBool = AtomicBool::new(true);

/// A concurrent cycle is between its two stops (set and cleared with the world stopped).
pub(crate) static MARKING_CONCURRENTLY: AtomicBool = AtomicBool::new(false);

/// Marking goes parallel when the last cycle marked at least this much (default 4 MiB;
/// [`crate::debug::set_parallel_mark_min`]: tests set 0 to mark small heaps in parallel).
pub(crate) static PARALLEL_MIN_MARKED: AtomicUsize = AtomicUsize::new(4 << 20);

/// Says on stderr that the environment variable `var` holds `value`, which is not
/// `expected`, and that `default` is used instead (the heap's settings do the same).
pub(crate) fn bad_setting(var: &str, value: &str, expected: &str, default: &str) {
    eprintln!("gomalloc-gc: {var}={value:?} is not {expected}; using {default}");
}

/// A `0`/`1` setting from the environment variable `var`: `default` when it is unset or
/// empty, and, with a warning ([`bad_setting`]), when it is anything else.
pub(crate) fn env_flag(var: &str, default: bool) -> bool {
    let Ok(v) = std::env::var(var) else {
        return default;
    };
    match v.trim() {
        "1" => true,
        "0" => false,
        "" => default,
        _ => {
            bad_setting(var, &v, "`0` or `1`", if default { "1" } else { "0" });
            default
        }
    }
}

/// Ends the process with `gc: fatal error: {msg}` on stderr, like the `fatal error:` of
/// Go's runtime: for misuse the collector cannot recover from (crate docs, "Fatal
/// errors").
#[cold]
pub(crate) fn fatal(msg: std::fmt::Arguments<'_>) -> ! {
    eprintln!("gc: fatal error: {msg}");
    std::process::abort();
}

/// Armed around user code the collector calls (a destructor while sweeping, a finalizer):
/// if that code panics, the guard is dropped by the unwinding and ends the process with a
/// fatal error naming `what` and the type, instead of letting the panic unwind through the
/// collector's state (a sweep counted as in progress forever, a finalizer's object left on
/// the running list). Disarmed with [`std::mem::forget`] once the call returned.
pub(crate) struct FatalOnUnwind {
    pub what: &'static str,
    pub type_name: fn() -> &'static str,
}

impl Drop for FatalOnUnwind {
    fn drop(&mut self) {
        fatal(format_args!(
            "{} of `{}` panicked; the collector does not unwind through the code it calls",
            self.what,
            (self.type_name)()
        ));
    }
}

/// Reads the environment once (`GOMALLOC_GCTRACE`, `GOMALLOC_GCCHECKMARK`,
/// `GOMALLOC_GCCONCURRENT`, `GOMALLOC_GCGREENTEA`, `GOMALLOC_GCPROCS`, the pacer's).
pub(crate) fn init() {
    START.get_or_init(|| {
        // gomalloc's settings (its heap profile's rate among them), read at its set-up,
        // which a program whose global allocator is not `GoMalloc` never ran.
        gomalloc::gcapi::ensure_init();
        if env_flag("GOMALLOC_GCTRACE", false) {
            TRACE.store(true, Ordering::Relaxed);
        }
        if env_flag("GOMALLOC_GCCHECKMARK", false) {
            crate::checkmark::CHECKMARK.store(true, Ordering::Relaxed);
        }
        if !env_flag("GOMALLOC_GCCONCURRENT", true) {
            CONCURRENT.store(false, Ordering::Relaxed);
        }
        if env_flag("GOMALLOC_GCGREENTEA", false) {
            crate::mark::GREEN_TEA.store(true, Ordering::Relaxed);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CORES.store(cores, Ordering::Relaxed);
        let procs = match std::env::var("GOMALLOC_GCPROCS") {
            Err(_) => cores,
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    bad_setting(
                        "GOMALLOC_GCPROCS",
                        &v,
                        "a number of threads, at least 1",
                        "the number of cores",
                    );
                    cores
                }
            },
        };
        WORKERS.store(procs, Ordering::Relaxed);
        let check = env_flag("GOMALLOC_GCCHECKROOTS", cfg!(feature = "checkroots"));
        if check && !gomalloc::gcapi::POISONING {
            eprintln!(
                "gomalloc-gc: GOMALLOC_GCCHECKROOTS=1 without gomalloc's `poison` feature: a \
                 stale copy of a Gc left in a malloc block's spare capacity may be reported \
                 (build with gomalloc-gc's `checkroots` feature)"
            );
        }
        crate::checkroots::set_enabled(check);
        Instant::now()
    });
    pacer::init();
}

pub(crate) fn start_time() -> Instant {
    *START.get_or_init(Instant::now)
}

/// The cores the process may run on, read once at [`init`] (the total of Go's
/// `GCCPUFraction` and of the GC CPU limiter).
static CORES: AtomicUsize = AtomicUsize::new(1);

pub(crate) fn cores() -> usize {
    CORES.load(Ordering::Relaxed)
}

/// Runs a full collection and waits for it to finish, like Go's `runtime.GC()`: when it
/// returns, the cycle's sweep is done too (every span swept, the destructors of the objects
/// found dead run, [`stats()`](crate::stats())'s `objects_freed` counting them, unreachable
/// objects with finalizers queued). Callable from attached threads (whose stack is scanned
/// as a root), from inside their blocking regions ([`Mutator::blocking`]: the thread stays
/// in its region) and from other threads.
///
/// # Panics
/// Inside an incremental test cycle ([`crate::debug::IncrementalCycle`]), and on a thread
/// holding a [`RefMut`](crate::RefMut) of a type with GC pointers.
pub fn collect() {
    init();
    let me = mutator::current();
    if let Some(m) = &me {
        m.assert_no_open_borrow("gc::collect()");
    }
    run_cycle(me.as_deref(), true);
    // Go's `runtime.GC` sweeps every span before returning, so that what the cycle freed is
    // freed (and counted) when it returns; the pacer's cycles leave it to lazy sweeping.
    heap::sweep_all_and_wait();
}

/// A collection triggered by the pacer on `m`'s allocation slow path. If another thread is
/// already collecting, `m` simply stops at its next safepoint.
pub(crate) fn collect_auto(m: &Mutator) {
    // A hint (the lock is not taken: see `COLLECTING`); `run_cycle` decides under it.
    if crate::mutator::COLLECTING.load(Ordering::Relaxed) {
        return;
    }
    if CONCURRENT.load(Ordering::Relaxed) && !crate::pacer::over_goal() {
        // The background worker runs the cycle; `m` goes on allocating (black).
        background::request();
        return;
    }
    // The heap reached its goal and no cycle runs: the worker has not started the one it
    // was asked for (not yet scheduled, on a loaded machine). `m` runs the cycle itself, as
    // Go's allocating goroutine runs `gcStart`, so that no thread allocates past the goal
    // without bound however late the worker is.
    run_cycle(Some(m), false);
    if CONCURRENT.load(Ordering::Relaxed) {
        // The cycle's sweep is still the worker's (Go's `gcSweep` readies `bgsweep` whoever
        // ran the cycle): `m` sweeps only the spans it allocates from.
        background::request_sweep();
    }
}

/// The thread that runs the pacer's cycles in the concurrent mode (Go's background mark
/// worker, one at most), and after each the cycle's sweep (Go's background sweeper): not
/// attached, so no cycle waits for it to stop and it has no stack to scan.
mod background {
    use std::sync::{Condvar, Mutex, Once};

    /// What the worker was asked for since it last looked.
    struct Wanted {
        /// A cycle (the pacer's trigger).
        cycle: bool,
        /// The sweep of a cycle another thread ran.
        sweep: bool,
    }

    static WANTED: Mutex<Wanted> = Mutex::new(Wanted {
        cycle: false,
        sweep: false,
    });
    static WAKE: Condvar = Condvar::new();
    static START: Once = Once::new();

    fn wanted() -> std::sync::MutexGuard<'static, Wanted> {
        WANTED.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the worker with `set` applied to what it is asked for (the first request
    /// starts the worker).
    fn ask(set: impl FnOnce(&mut Wanted)) {
        START.call_once(|| {
            std::thread::Builder::new()
                .name("gc-worker".into())
                .spawn(worker)
                .expect("spawn the collector's background worker");
        });
        let mut w = wanted();
        let idle = !w.cycle && !w.sweep;
        set(&mut w);
        if idle {
            WAKE.notify_one();
        }
    }

    /// Asks for a cycle.
    pub(super) fn request() {
        ask(|w| w.cycle = true);
    }

    /// Asks for the sweep of the cycle that just ended on another thread.
    pub(super) fn request_sweep() {
        ask(|w| w.sweep = true);
    }

    fn worker() {
        loop {
            let cycle = {
                let mut w = wanted();
                while !w.cycle && !w.sweep {
                    w = WAKE.wait(w).unwrap_or_else(|e| e.into_inner());
                }
                w.cycle
            };
            // A request is stale if a cycle ran since it was made (a forced one, or the
            // settings changed): the heap must still be over the trigger.
            if cycle && crate::pacer::should_collect() {
                super::run_cycle(None, false);
            }
            // Requests made during the cycle asked for the cycle that just ran, and the
            // sweep below is the one asked for.
            *wanted() = Wanted {
                cycle: false,
                sweep: false,
            };
            // Then the cycle's sweep, until the next cycle is wanted.
            crate::heap::sweep_in_background(|| wanted().cycle);
        }
    }
}

fn run_cycle(me: Option<&Mutator>, forced: bool) {
    if heap::running_destructors() {
        // The cycle would begin by waiting for every sweep in progress to end, this
        // thread's included: a deadlock.
        fatal(format_args!(
            "gc::collect() called from a destructor that the collector's sweep runs"
        ));
    }
    // Become the collector, or wait for the one collecting now.
    loop {
        let mut w = world();
        if !w.collecting() {
            w.set_collecting(true);
            break;
        }
        assert!(
            !w.incremental,
            "gc::collect() called during an incremental debug cycle"
        );
        match me {
            // A thread in a blocking region (`collect()` called from the closure) waits as
            // it is, `BLOCKING`: waiting as a parked thread would leave it `RUNNING` when
            // the world restarts, inside its region, and the next cycle would wait for it.
            Some(m) if !m.in_blocking_region() => {
                drop(w);
                m.wait_cycle_end();
            }
            _ => {
                while w.collecting() {
                    w = WORLD_CV.wait(w).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        if !forced {
            return;
        }
    }
    if CONCURRENT.load(Ordering::Relaxed) {
        run_concurrent_cycle(me, forced);
    } else {
        run_stopped_cycle(me, forced);
    }
    crate::weak::wake_finalizer_thread();
}

/// How a cycle began: its start, the live heap then, and its first stop.
struct CycleStart {
    start: Instant,
    heap0: usize,
    /// The request to stop the world: the pause starts here.
    t_stop: Instant,
    /// Every other attached thread stopped.
    t_stopped: Instant,
    threads: Vec<Arc<ThreadRec>>,
}

/// Sweep termination and the first stop of a cycle, by the thread holding `collecting`.
fn sweep_termination_and_stop(me: Option<&Mutator>) -> CycleStart {
    let start = Instant::now();
    // Sweep termination: finish the previous cycle's sweep while mutators still run, and
    // wait for the spans other threads took to sweep (Go's `finishsweep_m` waits for
    // `sweep.active` to drain too). An attached sweeper cannot be stopped mid-span (it is
    // not at a safepoint), but a thread that is not attached, such as one finishing
    // `collect()`'s sweep, is not stopped at all: marking must not start while it still
    // copies a span's mark bits into its allocation bits.
    heap::sweep_all_and_wait();
    let heap0 = heap::HEAP_LIVE.load(Ordering::Relaxed);
    if let Some(m) = me {
        m.cache_mut().release_all();
        m.flush_barrier();
    }
    let (threads, t_stop) = stop_the_world(me.map(|m| m.rec()));
    CycleStart {
        start,
        heap0,
        t_stop,
        t_stopped: Instant::now(),
        threads,
    }
}

/// Each thread's count of resumptions, for [`debug_assert_world_stopped`].
fn resumed_counts(threads: &[Arc<ThreadRec>]) -> Vec<u64> {
    threads
        .iter()
        .map(|t| t.resumed.load(Ordering::Relaxed))
        .collect()
}

/// One cycle with the world stopped for the whole mark (`GOMALLOC_GCCONCURRENT=0`), on
/// the calling thread, which holds `collecting`.
fn run_stopped_cycle(me: Option<&Mutator>, forced: bool) {
    let CycleStart {
        start,
        heap0,
        t_stop,
        t_stopped,
        threads,
    } = sweep_termination_and_stop(me);
    let resumed = resumed_counts(&threads);
    with_registers_spilled(|my_sp| {
        let mut t = Tracer::new();
        let goal_of_cycle = pacer::HEAP_GOAL.load(Ordering::Relaxed);
        let (stack_bytes, root_bytes) = mark_roots(&mut t, &threads, me.map(|m| (m.rec(), my_sp)));
        let (workers, helper_objects) = drain(&mut t, WORKERS.load(Ordering::Relaxed));
        let t_marked = Instant::now();
        let (marked, objects) = terminate(t, |c| {
            mark_roots(c, &threads, me.map(|m| (m.rec(), my_sp)));
        });
        let heap1 = heap::HEAP_LIVE.load(Ordering::Relaxed);
        let next_goal = finish_cycle(marked);
        debug_assert_world_stopped(&threads, &resumed, me.map(|m| m.rec()));
        let end = start_the_world();
        // Weak references and finalizers, with the world running.
        let weak_cleared = crate::weak::settle_and_count();
        let report = CycleReport {
            start,
            t_concurrent: t_stop - start,
            t_sweep_term: t_stopped - t_stop,
            t_mark: t_marked - t_stopped,
            t_mark_concurrent: None,
            t_mark_term: end - t_marked,
            t_assist: Duration::ZERO,
            workers,
            helper_objects,
            heap0,
            heap1,
            heap2: marked,
            objects,
            goal_of_cycle,
            next_goal,
            stack_bytes,
            root_bytes,
            forced,
            weak_cleared,
        };
        report_cycle(&report, end);
    });
    end_cycle();
}

/// One cycle with a concurrent mark (design §8), on the calling thread, which holds
/// `collecting`: the world stops at mark start (the precise roots greyed, every other
/// thread's stack owed a scan, the barrier and allocate-black turned on) and at mark
/// termination (what the barrier buffers still hold, the checkmark, the new sweep
/// generation). Between the two the caller scans its own stack and traces while the
/// mutators run: each scans its own stack before it runs the program again
/// (`Mutator::scan_own_stack`), the caller scans those of threads that stay stopped
/// ([`scan_stopped_stacks`]); their writes go
/// through the hybrid barrier, their allocations are black (windows loaded while marking
/// have their free slots marked, `heap::mark_free_if_marking`), and no stack is scanned
/// twice (the barrier's deletion half keeps every object reachable at mark start marked,
/// and new objects are black).
fn run_concurrent_cycle(me: Option<&Mutator>, forced: bool) {
    let CycleStart {
        start,
        heap0,
        t_stop,
        t_stopped,
        threads: started,
    } = sweep_termination_and_stop(me);
    with_registers_spilled(|my_sp| {
        let me_sp = me.map(|m| (m.rec(), my_sp));
        let mut t = Tracer::new();
        let goal_of_cycle = pacer::HEAP_GOAL.load(Ordering::Relaxed);
        let root_bytes = mark_roots_at_start(&mut t, &started, me.map(|m| m.rec()));
        // Every cache was released at the stop: what the heap holds now is what marking
        // found or will find; what caches take from now on is allocated black.
        let live_at_start = heap::HEAP_LIVE.load(Ordering::Relaxed);
        crate::cell::begin_marking();
        pacer::begin_concurrent_mark(live_at_start, t.marked_bytes);
        MARKING_CONCURRENTLY.store(true, Ordering::Relaxed);
        ASSIST_WANTED.store(false, Ordering::Relaxed);
        let t_restarted = start_the_world();
        let cpu_at_restart = thread_cpu();
        let assist_at_restart = ASSIST_NS.load(Ordering::Relaxed);
        // Helpers' marking time in the concurrent mark (each helper of a `drain` counted
        // busy for the whole drain).
        let mut helper_cpu = Duration::ZERO;
        // The collecting thread's stack, then those of the threads that stay stopped (in
        // blocking regions, waiting for a cycle's end); the others scan their own as they
        // run again.
        let greyed = t.marked_bytes;
        let mut stack_bytes = match me_sp {
            Some((m, sp)) => scan_thread(&mut t, m, StackAt::From(sp)),
            None => 0,
        };
        stack_bytes += scan_stopped_stacks(&mut t, &started).0;
        pacer::SCAN_DONE.fetch_add(t.marked_bytes - greyed, Ordering::Relaxed);
        // A quarter of the markers a stopped mark uses, at least one (Go's
        // `gcBackgroundUtilization`: 25% of the cores mark while the program runs).
        let markers = WORKERS.load(Ordering::Relaxed).div_ceil(4);
        let (mut workers, mut helper_objects) = (1, 0);
        // World-stopped time of the stops that found work and restarted (below).
        let mut aborted_stops = Duration::ZERO;
        let mut restarts = 0;
        // `t_stop2`: the request to stop of mark termination; the concurrent mark runs until
        // then.
        let (threads, t_stop2, t_stopped2, marker_cpu, assist_ns) = loop {
            let mut rounds = 0;
            loop {
                if markers > 1 {
                    let before = t.marked_bytes;
                    let t0 = Instant::now();
                    let (w, h) = drain(&mut t, markers);
                    helper_cpu += t0.elapsed() * (w - 1) as u32;
                    pacer::SCAN_DONE.fetch_add(t.marked_bytes - before, Ordering::Relaxed);
                    workers = workers.max(w);
                    helper_objects += h;
                }
                drain_sharing_with_assists(&mut t);
                let shaded = handshake::take_shaded(&SHADE);
                if !shaded.is_empty() {
                    t.extend(shaded);
                    continue;
                }
                if ASSISTS.load(Ordering::Acquire) != 0 || !ASSIST_WORK.is_empty() {
                    // An assist holds grey objects it will hand back.
                    std::thread::yield_now();
                    continue;
                }
                // Every stack scanned: by its thread as it ran again, or here if it
                // stopped since. One not yet scanned belongs to a thread that has not run
                // since the first stop; it scans itself first thing when it does.
                let (bytes, owed) = scan_stopped_stacks(&mut t, &started);
                stack_bytes += bytes;
                if t.pending() > 0 {
                    continue;
                }
                if owed {
                    std::thread::yield_now();
                    continue;
                }
                // Nothing left here: ask the mutators for what their barrier buffers hold,
                // and mark on if they held anything (Go's `gcMarkDone`), so that the stop
                // below finds little or nothing.
                if rounds == MAX_FLUSH_ROUNDS || !flush_round(me.map(|m| m.rec())) {
                    break;
                }
                rounds += 1;
            }
            let marker_cpu = thread_cpu().saturating_sub(cpu_at_restart) + helper_cpu;
            let assist_ns = ASSIST_NS
                .load(Ordering::Relaxed)
                .saturating_sub(assist_at_restart);
            // Mark termination. Stopping flushes every mutator's barrier buffer. If that
            // brought grey objects (shaded since the last round: each may lead to a whole
            // unmarked subgraph), restart and mark them concurrently, as Go's `gcMarkDone`
            // does, so that the stop stays short; a bounded number of times.
            let (threads, t_stop2) = stop_the_world(me.map(|m| m.rec()));
            let t_stopped2 = Instant::now();
            // Every thread is stopped: any stack still owed is scanned here (none is when
            // the loop above saw every thread run since the first stop).
            stack_bytes += scan_stopped_stacks(&mut t, &started).0;
            let shaded = handshake::take_shaded(&SHADE);
            if (shaded.is_empty() && ASSIST_WORK.is_empty() && t.pending() == 0)
                || restarts == MAX_TERMINATION_RESTARTS
            {
                t.extend(shaded);
                break (threads, t_stop2, t_stopped2, marker_cpu, assist_ns);
            }
            t.extend(shaded);
            restarts += 1;
            aborted_stops += start_the_world() - t_stop2;
        };
        MARKING_CONCURRENTLY.store(false, Ordering::Relaxed);
        let resumed = resumed_counts(&threads);
        let (marked, objects) = terminate(t, |c| {
            mark_roots(c, &threads, me_sp);
        });
        // Objects allocated while marking are black and were not traced: count them live.
        let black = heap::HEAP_LIVE
            .load(Ordering::Relaxed)
            .saturating_sub(live_at_start);
        let heap1 = heap::HEAP_LIVE.load(Ordering::Relaxed);
        pacer::record_concurrent_mark(&pacer::MarkMeasure {
            black,
            traced: marked,
            scan_work: marked + stack_bytes + root_bytes,
            window: t_stop2 - t_restarted,
            marker_cpu,
            assist: Duration::from_nanos(assist_ns),
        });
        let next_goal = finish_cycle(marked + black);
        debug_assert_world_stopped(&threads, &resumed, me.map(|m| m.rec()));
        let end = start_the_world();
        // Weak references and finalizers, with the world running.
        let weak_cleared = crate::weak::settle_and_count();
        let report = CycleReport {
            start,
            t_concurrent: t_stop - start,
            t_sweep_term: t_stopped - t_stop,
            t_mark: t_restarted - t_stopped,
            t_mark_concurrent: Some((
                (t_stop2 - t_restarted).saturating_sub(aborted_stops),
                t_stopped2 - t_stop2 + aborted_stops,
            )),
            t_mark_term: end - t_stopped2,
            t_assist: Duration::from_nanos(ASSIST_NS.swap(0, Ordering::Relaxed)),
            workers,
            helper_objects,
            heap0,
            heap1,
            heap2: marked + black,
            objects,
            goal_of_cycle,
            next_goal,
            stack_bytes: stack_bytes + SELF_SCANNED_BYTES.swap(0, Ordering::Relaxed),
            root_bytes,
            forced,
            weak_cleared,
        };
        report_cycle(&report, end);
    });
    end_cycle();
}

/// Publishes a finished cycle's figures (stats, gctrace) at `end`.
fn report_cycle(report: &CycleReport, end: Instant) {
    STACK_BYTES.store(report.stack_bytes as u64, Ordering::Relaxed);
    stats::record(
        report,
        end.duration_since(start_time()),
        TRACE.load(Ordering::Relaxed),
    );
}

/// Grey objects the concurrent marker hands to mark assists, and that assists hand back.
pub(crate) static ASSIST_WORK: WorkList = WorkList::new();
/// Mark assists running now.
pub(crate) static ASSISTS: AtomicUsize = AtomicUsize::new(0);
/// Nanoseconds mutators spent in mark assists since the last cycle's report (gctrace's
/// assist CPU time).
pub(crate) static ASSIST_NS: AtomicU64 = AtomicU64::new(0);
/// An assist found no work: the marker shares half of its grey stack at its next slice.
pub(crate) static ASSIST_WANTED: AtomicBool = AtomicBool::new(false);
/// Grey objects the concurrent marker traces between two looks at [`ASSIST_WANTED`].
const SLICE: usize = 256;

/// Drains `t` and what assists hand back, giving half of its work to [`ASSIST_WORK`]
/// whenever an assist asks for some, and publishing its progress for the assists' pacing
/// (`pacer::SCAN_DONE`) every [`SLICE`] objects.
fn drain_sharing_with_assists(t: &mut Tracer) {
    loop {
        let before = t.marked_bytes;
        let drained = t.drain_some(SLICE);
        pacer::SCAN_DONE.fetch_add(t.marked_bytes - before, Ordering::Relaxed);
        if !drained {
            if ASSIST_WANTED.swap(false, Ordering::Relaxed) {
                t.share_half(&ASSIST_WORK);
            }
            continue;
        }
        if !t.take_chunk(&ASSIST_WORK) {
            return;
        }
    }
}

/// A mark assist (Go's `gcAssistAlloc`): the calling mutator, which allocates while a
/// concurrent mark runs behind the heap's growth (`pacer::should_assist`), traces up to
/// `budget` grey objects that the marker handed out, and hands back what it has left. So a
/// thread that allocates fast pays for it in marking, and the mark keeps ahead of the
/// heap's growth. Returns false when it found nothing to trace.
pub(crate) fn assist(budget: usize) -> bool {
    let t0 = Instant::now();
    ASSISTS.fetch_add(1, Ordering::AcqRel);
    let mut t = Tracer::new();
    let mut left = budget;
    while left > 0 && (t.pending() > 0 || t.take_chunk(&ASSIST_WORK)) {
        left = left.saturating_sub(t.drain_counted(left));
    }
    if left == budget {
        // Nothing to trace: ask the marker to share.
        ASSIST_WANTED.store(true, Ordering::Relaxed);
    }
    let mut grey = Vec::new();
    t.take_grey(&mut grey);
    ASSIST_WORK.push(grey);
    SHADE_BYTES.fetch_add(t.marked_bytes, Ordering::Relaxed);
    pacer::SCAN_DONE.fetch_add(t.marked_bytes, Ordering::Relaxed);
    ASSISTS.fetch_sub(1, Ordering::AcqRel);
    ASSIST_NS.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    left != budget
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; the clock id is a constant Linux has.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Flush rounds a concurrent mark runs at most before it stops the world for termination
/// (each that found work is followed by more marking).
const MAX_FLUSH_ROUNDS: u32 = 8;

/// Times mark termination may find grey objects and restart the world to mark them
/// concurrently before it drains them with the world stopped.
const MAX_TERMINATION_RESTARTS: u32 = 4;

/// How long a flush round waits for the running mutators to reach a safepoint. One that
/// does not (it neither allocates nor calls `safepoint`) is flushed by the stop instead.
const FLUSH_WAIT: Duration = Duration::from_millis(2);

/// One flush round: every running mutator but `me` moves its barrier buffer to [`SHADE`]
/// at its next safepoint (threads parked or in blocking regions flushed on the way there). True
/// if the round found grey objects (left in `SHADE` for the marker).
fn flush_round(me: Option<&Arc<ThreadRec>>) -> bool {
    let round = handshake::begin_flush_round(&FLUSH_ROUND, &GC_FLAGS);
    let threads = world().threads.clone();
    let deadline = Instant::now() + FLUSH_WAIT;
    // The collecting thread (`me`, marking) flushed before the first stop and shades
    // nothing since.
    while threads.iter().any(|t| {
        !me.is_some_and(|m| Arc::ptr_eq(m, t)) && !handshake::settled(&t.state, &t.flushed, round)
    }) && Instant::now() < deadline
    {
        std::thread::yield_now();
    }
    handshake::end_flush_round(&GC_FLAGS);
    !handshake::shade_empty(&SHADE)
}

/// How long [`stop_the_world`] yields its core to the threads it waits for before it
/// sleeps until the last one parks: a thread the stop preempted runs at once, and the
/// stop ends without a wake-up of the stopping thread.
const STOP_SPIN: Duration = Duration::from_micros(200);

/// Stops every attached thread but `me` at a safepoint or in a blocking region; returns
/// the thread list and when the stop was requested: the world-stopped time (the pause)
/// starts there. Before it the collector waits for the world lock, with every mutator
/// running and asked for nothing, so a collector the scheduler preempts meanwhile stops
/// no one. The caller holds `collecting`.
pub(crate) fn stop_the_world(me: Option<&Arc<ThreadRec>>) -> (Vec<Arc<ThreadRec>>, Instant) {
    let others_running = |threads: &[Arc<ThreadRec>]| {
        threads
            .iter()
            .any(|t| !me.is_some_and(|m| Arc::ptr_eq(m, t)) && handshake::running(&t.state))
    };
    let mut w = world();
    w.stw = true;
    let requested = Instant::now();
    GC_FLAGS.fetch_or(STOP, Ordering::SeqCst);
    if others_running(&w.threads) {
        // Yield first, without the world lock (a thread parks under it). The threads'
        // states are read again under the lock below, which alone decides.
        let threads = w.threads.clone();
        drop(w);
        let deadline = Instant::now() + STOP_SPIN;
        while others_running(&threads) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        w = world();
    }
    while others_running(&w.threads) {
        w.stopper_sleeping = true;
        w = WORLD_CV.wait(w).unwrap_or_else(|e| e.into_inner());
    }
    w.stopper_sleeping = false;
    (w.threads.clone(), requested)
}

/// Debug check at the end of a stopped cycle: no thread but the collector ran meanwhile.
fn debug_assert_world_stopped(
    threads: &[Arc<ThreadRec>],
    resumed: &[u64],
    me: Option<&Arc<ThreadRec>>,
) {
    if cfg!(debug_assertions) {
        for (t, &r) in threads.iter().zip(resumed) {
            if me.is_some_and(|m| Arc::ptr_eq(m, t)) {
                continue;
            }
            if t.state.load(Ordering::Acquire) == RUNNING || t.resumed.load(Ordering::Relaxed) != r
            {
                // Not a panic: the world is stopped and every mutator would wait forever.
                eprintln!("gc: a mutator ran while the world was stopped");
                std::process::abort();
            }
        }
    }
}

/// Restarts the world; the cycle goes on (`collecting` stays set: no other cycle starts
/// and `collect()` callers wait) until [`end_cycle`]. Returns when the world was released
/// (every thread set to run, before they are woken: when the pause ends, not when the OS
/// gets round to the collecting thread again after the wake-ups).
pub(crate) fn start_the_world() -> Instant {
    let mut w = world();
    GC_FLAGS.fetch_and(!STOP, Ordering::SeqCst);
    w.stw = false;
    w.epoch += 1;
    // Parked threads run again from now on: say so before anyone can stop the world
    // again (see the world protocol in `mutator`).
    for t in w.threads.iter() {
        if t.state.load(Ordering::Relaxed) == PARKED {
            t.resume();
        }
    }
    drop(w);
    let released = Instant::now();
    WORLD_CV.notify_all();
    released
}

/// Ends the cycle, once its figures are recorded (a `collect()` caller that sees the cycle
/// end sees them too): another may start, and the threads waiting for this one go on.
fn end_cycle() {
    world().set_collecting(false);
    WORLD_CV.notify_all();
}

/// Greys the roots: precise roots, finalizer roots, every stopped thread's handle scopes
/// and (unless `feature = "precise"`) stack, the collector's own from `me.1`. Returns
/// (stack bytes, precise-root bytes) scanned.
pub(crate) fn mark_roots(
    t: &mut Tracer,
    threads: &[Arc<ThreadRec>],
    me: Option<(&Arc<ThreadRec>, usize)>,
) -> (usize, usize) {
    let root_bytes = mark_global_roots(t);
    let mut stack_bytes = 0;
    for rec in threads {
        let at = match me {
            Some((m, sp)) if Arc::ptr_eq(m, rec) => StackAt::From(sp),
            _ => StackAt::stopped(rec, rec.state.load(Ordering::Acquire)),
        };
        stack_bytes += scan_thread(t, rec, at);
    }
    (stack_bytes, root_bytes)
}

/// Greys the roots that belong to no thread: precise roots and finalizer roots. Returns
/// the precise-root bytes scanned.
fn mark_global_roots(t: &mut Tracer) -> usize {
    t.check_root("a gc::Root", false);
    let root_bytes = crate::root::mark_roots(t);
    t.check_root("the finalizer queue or an armed finalizer's object", false);
    crate::weak::mark_finalizer_roots(t);
    root_bytes
}

/// Where the words of a thread's stack are read.
pub(crate) enum StackAt {
    /// The live stack from this stack pointer up.
    From(usize),
    /// The copy the thread made on entering its blocking region: the live stack may be
    /// written by the region's closure (`Mutator::blocking`).
    Copy,
}

impl StackAt {
    /// The stack of a thread seen in `state`, stopped: its copy in a blocking region, else
    /// the live stack from the stack pointer it published.
    fn stopped(rec: &ThreadRec, state: u8) -> StackAt {
        if state == BLOCKING {
            StackAt::Copy
        } else {
            StackAt::From(rec.sp.load(Ordering::Acquire))
        }
    }
}

/// Greys one attached thread's handle scopes and (unless `feature = "precise"`) its stack,
/// read `at`. The thread must not run meanwhile (it is the caller, stopped, or waiting for
/// the scan to end: `handshake::claim_scan`). Returns the stack bytes scanned.
pub(crate) fn scan_thread(t: &mut Tracer, rec: &ThreadRec, at: StackAt) -> usize {
    t.check_root("a handle scope of an attached thread", false);
    let bytes = rec.handles.mark(t);
    if cfg!(feature = "precise") {
        return bytes;
    }
    t.check_root("the stack of an attached thread", true);
    match at {
        StackAt::Copy => {
            let copy = rec.blocked_stack.lock().unwrap_or_else(|e| e.into_inner());
            t.mark_candidates(&copy);
            bytes + rec.stack_hi.saturating_sub(rec.sp.load(Ordering::Acquire))
        }
        StackAt::From(lo) if lo != 0 && lo < rec.stack_hi => {
            t.scan_conservative(lo, rec.stack_hi);
            bytes + rec.stack_hi - lo
        }
        StackAt::From(_) => bytes,
    }
}

/// A concurrent mark's first stop: greys the roots that belong to no thread and makes
/// every attached thread but the collecting one (`me`) owe the mark a scan of its stack,
/// which it does itself when it runs again or the collector does while it stays stopped
/// ([`scan_stopped_stacks`]). No stack is read inside the stop: the collecting thread's
/// own is scanned after the restart (it does not change while the thread collects).
/// Returns the precise-root bytes scanned.
fn mark_roots_at_start(
    t: &mut Tracer,
    threads: &[Arc<ThreadRec>],
    me: Option<&Arc<ThreadRec>>,
) -> usize {
    let root_bytes = mark_global_roots(t);
    for rec in threads {
        if !me.is_some_and(|m| Arc::ptr_eq(m, rec)) {
            handshake::owe_scan(&rec.scan);
        }
    }
    root_bytes
}

/// Scans the stacks that `threads` still owe the mark of those that are stopped (parked
/// in a wait, in a blocking region, detaching); a running thread scans its own
/// (`Mutator::scan_own_stack`). Returns the stack bytes scanned and whether a scan is
/// still owed (by a thread that has not run since the first stop).
fn scan_stopped_stacks(t: &mut Tracer, threads: &[Arc<ThreadRec>]) -> (usize, bool) {
    let (mut bytes, mut owed) = (0, false);
    for rec in threads {
        if let Some(seen) = handshake::claim_scan(&rec.state, &rec.scan) {
            bytes += scan_thread(t, rec, StackAt::stopped(rec, seen));
            handshake::end_scan(&rec.scan);
        } else if handshake::scan_pending(&rec.scan) {
            owed = true;
        }
    }
    (bytes, owed)
}

/// Stack bytes threads scanned themselves for the cycle in progress
/// (`Mutator::scan_own_stack`).
pub(crate) static SELF_SCANNED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Drains all grey work, on `n` markers when the heap is big enough. Returns the number of
/// markers used and the objects the helpers (not `t`) marked.
fn drain(t: &mut Tracer, n: usize) -> (usize, usize) {
    if n <= 1
        || pacer::HEAP_MARKED.load(Ordering::Relaxed) < PARALLEL_MIN_MARKED.load(Ordering::Relaxed)
    {
        t.drain_some(usize::MAX);
        return (1, 0);
    }
    let idle = AtomicUsize::new(0);
    let mut sums = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..n)
            .map(|_| {
                let idle = &idle;
                s.spawn(move || {
                    let mut w = Tracer::new();
                    w.drain_shared(&WORK, idle, n);
                    (w.marked_bytes, w.marked_objects)
                })
            })
            .collect();
        t.drain_shared(&WORK, &idle, n);
        for h in handles {
            sums.push(h.join().expect("mark worker panicked"));
        }
    });
    let mut helper_objects = 0;
    for (b, o) in sums {
        t.marked_bytes += b;
        t.marked_objects += o;
        helper_objects += o;
    }
    (n, helper_objects)
}

/// Mark termination: barrier shades, the checkmark re-mark when enabled (from the roots
/// `remark_roots` greys, the same as the mark's); weak references and finalizers are left
/// to `weak::settle` after the restart. Returns (marked bytes, marked objects).
pub(crate) fn terminate(mut t: Tracer, remark_roots: impl FnOnce(&mut Tracer)) -> (usize, usize) {
    loop {
        let shaded = handshake::take_shaded(&SHADE);
        let handed_back = t.take_chunk(&ASSIST_WORK);
        if shaded.is_empty() && !handed_back && t.pending() == 0 {
            break;
        }
        t.extend(shaded);
        t.drain_some(usize::MAX);
    }
    if crate::checkmark::enabled() {
        crate::checkmark::verify(remark_roots);
    }
    // Weak references and finalizers: after the restart (`weak::settle`).
    crate::weak::defer_settle();
    let bytes = t.marked_bytes + SHADE_BYTES.swap(0, Ordering::Relaxed);
    (bytes, t.marked_objects)
}

/// Starts the new sweep generation and sets the next goal.
pub(crate) fn finish_cycle(marked: usize) -> usize {
    if crate::checkroots::enabled() {
        // The checker reads the cycle's final marks, finalizer objects revived: in this
        // diagnostic mode weak references and finalizers are processed inside the stop.
        crate::weak::settle();
        crate::checkroots::check();
    }
    heap::begin_sweep_cycle();
    pacer::HEAP_MARKED.store(marked, Ordering::Relaxed);
    heap::HEAP_LIVE.store(marked, Ordering::Relaxed);
    GC_FLAGS.fetch_and(!MARKING, Ordering::SeqCst);
    pacer::update_goal()
}
