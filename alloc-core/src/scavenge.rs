//! The scavenger: free pages go back to the OS without the program calling the allocator
//! again (Go's `mgcscavenge.go`).
//!
//! ## Goal
//! The heap keeps at most `peak + peak/10` bytes backed by the OS (Go keeps 10% over its
//! heap goal), where `peak` is the memory in in-use spans, remembered with a decay: it
//! follows a rise at once and a fall with a 500 ms time constant, so a program that frees
//! and reallocates in phases does not pay page faults for memory it is about to reuse, and
//! a program that freed most of its heap gets it back to the OS within a couple of seconds.
//! With a soft memory limit ([`crate::Config::memory_limit`]) the goal is at most 95% of the
//! limit, as Go's `memoryLimitGoal`.
//!
//! ## Pacing
//! A background thread does the work in steps of at most [`STEP_PAGES`] pages per heap-lock
//! hold. Its CPU time (measured with the thread's CPU clock) is paced by a token bucket that
//! fills at the configured budget (1% of one core by default, Go's figure) and holds at
//! most [`BURST_NS`] of work, so its long-run cost stays within the budget while a large free
//! is returned at once. Above the memory limit it ignores the budget. At most every
//! [`RECLAIM_EVERY_NS`] it also handles the spans that received remote frees since their
//! mcentral last looked ([`crate::mcentral::MCentral::reclaim`]), since a span whose objects
//! were all freed by other threads returns its pages only then. That work is not charged
//! to the budget: it is free work deferred from other threads, each span handled once per
//! notification (Go's background sweeper is unbudgeted likewise).
//!
//! Besides the thread, the page heap releases synchronously when it grows past the goal
//! (`MHeap::grow`), and [`crate::release_memory`] releases everything at once.
//!
//! ## Age
//! Neither the thread nor the synchronous path releases a free run dirtied less than
//! [`MIN_AGE_NS`] (one second) ago, unless the heap is over the memory limit: memory a
//! program frees and allocates again soon is reused without a page fault, which is most of
//! what releasing costs (measured with the bench suite's `gomalloc-noscav` peer). Runs are
//! stamped with a coarse clock the thread keeps, so the free path reads no clock.
//!
//! ## Huge pages
//! 2 MiB chunks with at least 31/32 of their pages in use are skipped
//! (`mheap::release::DENSE_PAGES`): releasing their few free pages would break up a huge page
//! for little gain. gomalloc never asks for huge pages (`MADV_HUGEPAGE`), so on hosts with
//! transparent huge pages in `madvise` mode (the Debian default) sparse regions are never
//! promoted.
//!
//! ## When the thread exists
//! A program that never frees much never sees the thread: it is started only when there is
//! memory to give back, and it ends when it has had nothing to do for [`IDLE_EXIT_NS`]
//! (one second). Starts come from the places where that memory appears, not from a timer:
//! - the page heap gets free pages back ([`crate::mheap::MHeap::free_span`]) and then holds
//!   at least [`WAKE_FREE`] bytes of free, unreleased memory, and more than the 10% over
//!   the memory in use that the goal allows;
//! - a remote free hands a parked span to its mcentral (it may have emptied it: only the
//!   thread's reclaim returns such a span's pages when no thread allocates), once the heap
//!   has passed [`START_AT`] bytes.
//!
//! "Nothing to do" means: no start requested, and less than [`WAKE_FREE`] bytes over the
//! goal the decaying peak settles at that the thread could release (now, once young runs
//! come of age, or once the peak has decayed): the amount that would start a thread is
//! the amount that keeps one. Memory that cannot be released (dense huge-page chunks, spans
//! retained by thread caches) does not keep the thread alive; when it comes free it wakes
//! it again. A program that frees a little all the time (less than the threshold each
//! second) therefore does not keep the thread either.
//! Its state (the decaying peak, the token bucket) survives from one run to the next.
//!
//! The thread is started with `clone` (`sys.rs`), so glibc does not count it: a
//! program whose last thread calls `pthread_exit` ends at once with status 0 whatever the
//! thread is doing, process-directed signals go to the program's threads (it blocks them
//! all), and since `clone` takes no lock and allocates nothing, a free may start it (it
//! does so with no allocator lock held but the heap's, whose holder it never waits for).
//! It runs only this module's loop and the heap code it calls, which make no libc call
//! and touch no thread-local variable (the `sys.rs` rules); it never owns a thread
//! cache. After `fork` the child has no thread and starts its own when it needs one.
//!
//! Go's runtime starts its background scavenger once and keeps it (a goroutine, parked
//! when idle), which a runtime that owns its process can afford; jemalloc's background
//! threads are off unless the application asks for them (`background_thread:true`), because
//! an allocator inside someone else's process must not change how it lives. gomalloc takes
//! Go's pacing and jemalloc's reticence: a thread that exists only while it has work, and
//! that glibc does not count.
//!
//! Layer: pages (the crate root's module map, `lib.rs`).

use crate::config;
use crate::mcentral::CENTRAL;
use crate::mheap::ReleasePolicy;
#[cfg(not(any(miri, loom)))]
use crate::mheap::HEAP;
#[cfg(not(any(miri, loom)))]
use crate::sizeclass::PAGE_SHIFT;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(any(miri, loom)))]
use crate::sys;
use crate::wakeup::Wakeup;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

/// Heap size (committed bytes) from which a remote free that hands a span to its mcentral
/// starts the thread.
pub const START_AT: usize = 8 << 20;
/// Free, unreleased bytes in the page heap from which a free starts the thread.
pub const WAKE_FREE: usize = 4 << 20;
/// Most pages released per heap-lock hold (2 MiB: a few hundred microseconds of `madvise`).
pub const STEP_PAGES: usize = 256;
/// Most CPU time the token bucket holds: the largest burst of work.
pub const BURST_NS: u64 = 250_000_000;
/// How often unowned spans are searched for collected-but-unreturned frees.
pub const RECLAIM_EVERY_NS: u64 = 200_000_000;
/// The thread ends after this long with nothing to do.
pub const IDLE_EXIT_NS: u64 = 1_000_000_000;
/// Time constant of the decaying in-use peak.
const DECAY_NS: u64 = 500_000_000;
/// Free runs dirtied less than this long ago are not released (below the memory limit):
/// a program that frees and allocates again within a second reuses them without page
/// faults (jemalloc's decay and Go 1.21's scavenger, which skips chunks used in the last
/// GC cycle, keep recently freed memory likewise).
pub const MIN_AGE_NS: usize = 1_000_000_000;
#[cfg_attr(any(miri, loom), allow(dead_code))]
/// Sleep while there is nothing to do (also how soon a [`crate::configure`] takes effect).
const IDLE_NS: u64 = 100_000_000;
/// After a failed start (the system refused a thread), none is tried for this long.
#[cfg_attr(any(miri, loom), allow(dead_code))]
const RETRY_NS: u64 = 1_000_000_000;
/// The thread's stack, and below it the guard region its thread pointer points into.
#[cfg_attr(any(miri, loom), allow(dead_code))]
const STACK_BYTES: usize = 128 << 10;
#[cfg_attr(any(miri, loom), allow(dead_code))]
const GUARD_BYTES: usize = 16 << 10;

/// The thread's life (started, leaving, gone) and the requests for it.
static LIFE: Wakeup = Wakeup::new();
/// The thread's id from `clone` until it is gone: the kernel writes 0 here when it exits
/// (`CLONE_CHILD_CLEARTID`), after which its stack may be used again.
static TID: AtomicU32 = AtomicU32::new(0);
/// Base of the thread's stack mapping (made at the first start, kept for the next).
static STACK: AtomicUsize = AtomicUsize::new(0);
/// `CLOCK_MONOTONIC` before which no start is tried (after a failed one).
static RETRY_AT: AtomicU64 = AtomicU64::new(0);
/// The retained-bytes goal the thread last computed (`usize::MAX`: none yet).
static GOAL: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Committed heap bytes, mirrored from the page heap for the lock-free start check.
static HEAP_SYS: AtomicUsize = AtomicUsize::new(0);
/// The coarse clock: `CLOCK_MONOTONIC` in nanoseconds as of the background thread's last
/// step, or of the last [`coarse_now`] while no thread runs (0 until either).
static CLOCK: AtomicUsize = AtomicUsize::new(0);

/// Work counters, read by [`crate::stats`].
pub(crate) static WORK_NS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RELEASED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static STEPS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RECLAIMED_SPANS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RECLAIM_NS: AtomicUsize = AtomicUsize::new(0);
/// Threads started, and starts the system refused.
pub(crate) static STARTS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static START_FAILURES: AtomicUsize = AtomicUsize::new(0);

/// The heap's retained-memory goal in bytes: what the thread computed, capped by the
/// memory limit. `usize::MAX` when there is none yet.
pub fn retained_goal() -> usize {
    GOAL.load(Ordering::Relaxed).min(limit_cap())
}

/// [`retained_goal`], but at least `inuse` bytes plus the usual 10% (the thread's goal
/// may be a step old when the heap grows), still capped by the memory limit.
pub(crate) fn retained_goal_for(inuse: usize) -> usize {
    let goal = GOAL.load(Ordering::Relaxed);
    goal.max(settled_goal(inuse))
}

/// The goal once the peak has decayed to `inuse`: 10% over it, capped by the memory limit.
fn settled_goal(inuse: usize) -> usize {
    inuse.saturating_add(inuse / 10).min(limit_cap())
}

/// 95% of the memory limit (Go's `memoryLimitGoal`); `usize::MAX` without one.
fn limit_cap() -> usize {
    let limit = config::memory_limit();
    if limit == usize::MAX {
        usize::MAX
    } else {
        limit - limit / 20
    }
}

/// The page heap's release policy: this module's goal, clock and wake-up.
pub(crate) static POLICY: ReleasePolicy = ReleasePolicy {
    now: coarse_now,
    pages_freed,
    grew: note_heap_sys,
    retained_goal: retained_goal_for,
    dirty_cutoff,
};

/// The scavenger's coarse clock (see [`MIN_AGE_NS`]), which stamps free runs: while the
/// thread runs, the time of its last step (free runs are stamped at no cost); while none
/// runs, the time now, read from the vDSO (about 20 ns per page-heap free, which is not
/// on the allocation fast path), so runs freed while no thread ran do not count as older
/// than they are. The thread itself only calls it while it runs: it may not call libc.
#[inline]
pub fn coarse_now() -> usize {
    #[cfg(not(any(miri, loom)))]
    if !LIFE.running() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-parameter; with the scavenger thread not running,
        // the caller is a program thread, which may call libc (only that thread may not).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let t = ts.tv_sec as usize * 1_000_000_000 + ts.tv_nsec as usize;
        CLOCK.store(t, Ordering::Relaxed);
        return t;
    }
    CLOCK.load(Ordering::Relaxed)
}

/// The latest dirtying time of a free run that may be released now: [`MIN_AGE_NS`] ago, or
/// any time when `over_limit` (above the memory limit, every page counts).
pub(crate) fn dirty_cutoff(over_limit: bool) -> usize {
    if over_limit {
        usize::MAX
    } else {
        coarse_now().saturating_sub(MIN_AGE_NS)
    }
}

/// Whether the background thread is running now (it exists only while it has work).
pub fn running() -> bool {
    LIFE.running()
}

/// Records the page heap's committed size (called under the heap lock as it grows).
pub(crate) fn note_heap_sys(bytes: usize) {
    HEAP_SYS.store(bytes, Ordering::Relaxed);
}

/// Called by the page heap, under its lock, after pages came back to it: starts the thread
/// if `free` bytes of free, unreleased memory are worth one with `inuse` bytes in use.
#[inline]
pub(crate) fn pages_freed(free: usize, inuse: usize) {
    if !LIFE.running() && free >= WAKE_FREE && free > inuse / 10 {
        wake();
    }
}

/// Called after a remote free handed a parked span to its mcentral: starts the thread,
/// whose reclaim returns the span's pages if no thread allocates from that class again.
#[inline]
pub(crate) fn span_pending() {
    if !LIFE.running() && HEAP_SYS.load(Ordering::Relaxed) >= START_AT {
        wake();
    }
}

/// Requests a step of the thread, starting one if none runs. Takes no lock and allocates
/// nothing; may be called from any thread, with or without the heap lock.
#[cold]
#[inline(never)]
fn wake() {
    if config::scavenge_on() && LIFE.wake() {
        start();
    }
}

/// Called with the heap lock held, before the heap grows for a new span or a large
/// object: near the memory limit, first hand back the spans other threads emptied, so the
/// heap reuses them instead of growing past the limit.
#[inline]
pub(crate) fn before_grow() {
    let limit = config::memory_limit();
    if limit != usize::MAX && HEAP_SYS.load(Ordering::Relaxed) >= limit - limit / 20 {
        let spans: usize = CENTRAL.iter().map(|c| c.reclaim()).sum();
        RECLAIMED_SPANS.fetch_add(spans, Ordering::Relaxed);
    }
}

/// In a forked child: the thread did not survive the fork, nor did a start in progress
/// in another thread; start anew when needed.
pub(crate) fn after_fork_child() {
    LIFE.after_fork_child();
    // The parent's thread id, copied: no thread of the child will clear it.
    TID.store(0, Ordering::Relaxed);
}

/// Whether the caller runs on the background thread (its stack lies in the thread's
/// mapping). Costs two loads; used on fatal paths only.
pub(crate) fn on_thread() -> bool {
    let here = 0u8;
    let sp = (&raw const here) as usize;
    let base = STACK.load(Ordering::Relaxed);
    base != 0 && sp >= base && sp < base + GUARD_BYTES + STACK_BYTES
}

/// Starts the thread: no thread under Miri.
#[cfg(any(miri, loom))]
fn start() {
    LIFE.start_failed();
}

/// Starts the thread, for the waker whose [`Wakeup::wake`] said so.
#[cfg(not(any(miri, loom)))]
fn start() {
    let t = sys::clock_ns(libc::CLOCK_MONOTONIC);
    if t < RETRY_AT.load(Ordering::Relaxed) {
        LIFE.start_failed();
        return;
    }
    // A pthread (instrumented builds) brings its own stack.
    #[cfg(not(any(gomalloc_pthread_scavenger, fuzzing)))]
    let stack = match stack() {
        0 => {
            LIFE.start_failed();
            return;
        }
        base => base,
    };
    // The thread that left (if any) runs no code of ours any more, but it may
    // still be on the stack until the kernel clears TID.
    loop {
        let tid = TID.load(Ordering::Acquire);
        if tid == 0 {
            break;
        }
        sys::futex_wait(&TID, tid, 10_000_000);
    }
    LIFE.starting();
    #[cfg(not(any(gomalloc_pthread_scavenger, fuzzing)))]
    // SAFETY: the stack lies in our mapping and no thread uses it (TID reads 0); the
    // thread pointer is inside the PROT_NONE guard below it; `raw_entry` never returns
    // and keeps the `sys` rules (this module's doc).
    let ok = unsafe {
        sys::spawn(
            raw_entry,
            stack + GUARD_BYTES + STACK_BYTES,
            stack + GUARD_BYTES / 2,
            &TID,
        )
    };
    #[cfg(any(gomalloc_pthread_scavenger, fuzzing))]
    // SAFETY: TID reads 0; `pthread_entry` clears it last.
    let ok = unsafe { sys::spawn_pthread(pthread_entry, &TID) };
    if ok {
        STARTS.fetch_add(1, Ordering::Relaxed);
    } else {
        START_FAILURES.fetch_add(1, Ordering::Relaxed);
        RETRY_AT.store(t + RETRY_NS, Ordering::Relaxed);
        LIFE.start_failed();
    }
}

/// The thread's stack mapping, made at the first start: a PROT_NONE guard of
/// `GUARD_BYTES` (an overflow, or a TLS access, faults there) under `STACK_BYTES` of
/// stack. 0 if the system refused the memory.
#[cfg(not(any(miri, loom, gomalloc_pthread_scavenger, fuzzing)))]
fn stack() -> usize {
    let base = STACK.load(Ordering::Relaxed);
    if base != 0 {
        return base;
    }
    // Only the waker whose `wake` said so gets here, one at a time.
    // SAFETY: sizes are page multiples; the reservation is ours alone.
    unsafe {
        let p = crate::os::sys_reserve(0, GUARD_BYTES + STACK_BYTES, 4096);
        if p.is_null() {
            return 0;
        }
        if !crate::os::sys_map(p.add(GUARD_BYTES), STACK_BYTES) {
            crate::os::sys_free(p, GUARD_BYTES + STACK_BYTES);
            return 0;
        }
        STACK.store(p as usize, Ordering::Relaxed);
        p as usize
    }
}

/// The pacer's state, kept from one thread to the next.
struct PacerCell(UnsafeCell<Pacer>);
// SAFETY: only the background thread touches the pacer, and at most one exists at a time
// (a start waits until the previous thread is gone: `TID` reads 0).
unsafe impl Sync for PacerCell {}
#[cfg_attr(any(miri, loom), allow(dead_code))]
static PACER: PacerCell = PacerCell(UnsafeCell::new(Pacer {
    last: 0,
    peak: 0,
    tokens: BURST_NS as i64,
    last_reclaim: 0,
}));

/// The thread as `clone` starts it (`sys::spawn`).
#[cfg(all(not(any(miri, loom)), not(any(gomalloc_pthread_scavenger, fuzzing))))]
extern "C" fn raw_entry() -> ! {
    run();
    // Gone: a waker that saw it leave starts the next one once the kernel clears TID.
    sys::exit_thread()
}

/// The thread as `pthread_create` starts it (ThreadSanitizer builds).
#[cfg(all(not(any(miri, loom)), any(gomalloc_pthread_scavenger, fuzzing)))]
extern "C" fn pthread_entry(_: *mut libc::c_void) -> *mut libc::c_void {
    run();
    TID.store(0, Ordering::Release);
    core::ptr::null_mut()
}

/// The background thread's loop; returns when the thread is to end
/// ([`Wakeup::try_leave`]). It keeps the `sys.rs` rules: no libc call, no TLS.
#[cfg(not(any(miri, loom)))]
fn run() {
    // SAFETY: this is the only thread that touches PACER (see PacerCell).
    let pacer = unsafe { &mut *PACER.0.get() };
    let mut busy_at = sys::clock_ns(libc::CLOCK_MONOTONIC);
    if pacer.last == 0 {
        pacer.last = busy_at;
    }
    loop {
        let asked = LIFE.take_request();
        let (pause, busy) = pacer.step();
        let t = pacer.last;
        if busy || asked {
            busy_at = t;
        } else if t - busy_at >= IDLE_EXIT_NS || !config::scavenge_on() {
            if LIFE.try_leave() {
                return;
            }
            busy_at = t;
            continue;
        }
        sys::sleep_ns(pause);
    }
}

/// The background thread's state between steps.
#[cfg_attr(any(miri, loom), allow(dead_code))]
struct Pacer {
    last: u64,
    peak: usize,
    tokens: i64,
    last_reclaim: u64,
}

#[cfg_attr(any(miri, loom), allow(dead_code))]
impl Pacer {
    /// One step of work, if any is due. Returns how long to sleep before the next, and
    /// whether there was work, or will be (the thread leaves after [`IDLE_EXIT_NS`]
    /// without).
    #[cfg(not(any(miri, loom)))]
    fn step(&mut self) -> (u64, bool) {
        let t = sys::clock_ns(libc::CLOCK_MONOTONIC);
        let dt = t - self.last;
        self.last = t;
        CLOCK.store(t as usize, Ordering::Relaxed);
        if !config::scavenge_on() {
            GOAL.store(usize::MAX, Ordering::Relaxed);
            return (IDLE_NS, false);
        }
        let pct = u64::from(config::scavenge_percent());
        self.tokens = (self.tokens + (dt * pct / 100) as i64).min(BURST_NS as i64);
        let (inuse, high, retained) = {
            let mut h = HEAP.lock();
            let high = h.take_inuse_high();
            (
                h.c.pages_inuse << PAGE_SHIFT,
                high << PAGE_SHIFT,
                h.retained(),
            )
        };
        self.peak = decayed_peak(self.peak, high, dt);
        GOAL.store(self.peak + self.peak / 10, Ordering::Relaxed);
        let goal = retained_goal();
        // Memory over the goal once the peak has decayed, enough to start a thread for:
        // work for a later step.
        let waiting = retained > settled_goal(inuse).saturating_add(WAKE_FREE);
        let over_limit = retained > config::memory_limit();
        if self.tokens <= 0 && !over_limit {
            // Sleep until the bucket holds work again.
            let pause = ((-self.tokens) as u64 * 100 / pct).clamp(1_000_000, IDLE_NS);
            return (pause, waiting);
        }
        let reclaim_due = t - self.last_reclaim >= RECLAIM_EVERY_NS;
        if retained <= goal && !reclaim_due {
            return (IDLE_NS, waiting);
        }
        if reclaim_due {
            // Not charged to the budget: this is free work deferred from other threads
            // (each notified span is handled once per notification), as Go's background
            // sweeper is not.
            self.last_reclaim = t;
            let cpu0 = sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            let spans: usize = CENTRAL.iter().map(|c| c.reclaim()).sum();
            RECLAIMED_SPANS.fetch_add(spans, Ordering::Relaxed);
            let work = sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0;
            RECLAIM_NS.fetch_add(work as usize, Ordering::Relaxed);
        }
        let (mut released, mut young) = (0, 0);
        let cpu0 = sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        if retained > goal {
            let todo = ((retained - goal) >> PAGE_SHIFT).min(STEP_PAGES);
            let done = HEAP.lock().scavenge(todo, true, dirty_cutoff(over_limit));
            (released, young) = (done.released, done.young);
            RELEASED.fetch_add(released << PAGE_SHIFT, Ordering::Relaxed);
        }
        let work = sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0;
        self.tokens -= work as i64;
        WORK_NS.fetch_add(work as usize, Ordering::Relaxed);
        STEPS.fetch_add(1, Ordering::Relaxed);
        if released == 0 && young == 0 && retained > goal && reclaim_due {
            // Over the goal with no free page left to release: what is left over may sit
            // in spans that threads retain, so ask them back (at most once a reclaim period).
            crate::mcache::request_trim();
        }
        // Work is at least WAKE_FREE bytes over the settled goal (what would start a
        // thread) that this thread can release: now, once young runs come of age, or once
        // the peak has decayed. Memory it cannot release (dense chunks, spans in caches)
        // is not: its free wakes the thread again. Reclaimed spans count through the free
        // memory they leave in the page heap, at the next step.
        let left = retained - (released << PAGE_SHIFT);
        let pending = left.saturating_sub(settled_goal(inuse));
        let busy = pending >= WAKE_FREE && (released > 0 || young > 0 || left <= goal);
        if released == 0 {
            // Nothing releasable now: memory is in spans, in dense chunks, or freed too
            // recently (it comes of age within MIN_AGE_NS; the idle sleep is shorter).
            (IDLE_NS, busy)
        } else {
            (0, busy)
        }
    }
}

/// `max(inuse, peak * e^(-dt/DECAY_NS))`, with `DECAY/(DECAY+dt)` for the exponential.
#[cfg_attr(any(miri, loom), allow(dead_code))]
fn decayed_peak(peak: usize, inuse: usize, dt: u64) -> usize {
    let kept = (peak as u128 * u128::from(DECAY_NS) / u128::from(DECAY_NS + dt)) as usize;
    kept.max(inuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_rises_at_once_and_decays() {
        let mut p = decayed_peak(0, 1000, 0);
        assert_eq!(p, 1000);
        p = decayed_peak(p, 10, DECAY_NS);
        assert_eq!(p, 500);
        // Two seconds in 10 ms steps: about e^-4 of the peak is left.
        let mut p = 1 << 30;
        for _ in 0..200 {
            p = decayed_peak(p, 0, 10_000_000);
        }
        assert!(p < (1 << 30) / 40 && p > (1 << 30) / 80, "{p}");
    }

    #[test]
    fn goal_is_capped_by_the_memory_limit() {
        let before = config::Config::current();
        config::configure(before.memory_limit(Some(100 << 20)));
        assert!(retained_goal() <= 95 << 20);
        config::configure(before);
    }
}
