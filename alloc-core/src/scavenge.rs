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
//! ([`crate::mheap::DENSE_PAGES`]): releasing their few free pages would break up a huge page
//! for little gain. gomalloc never asks for huge pages (`MADV_HUGEPAGE`), so on hosts with
//! transparent huge pages in `madvise` mode (the Debian default) sparse regions are never
//! promoted.
//!
//! ## Inside arbitrary processes
//! The thread starts lazily, when the heap first passes [`START_AT`] bytes, from an
//! allocation's slow path after every allocator lock was released, with all signals
//! blocked. It never allocates (so it never owns a thread cache), is detached (process exit
//! does not wait for it), and after `fork` the child starts its own when it needs one.
//!
//! ### Why `pthread_create` from inside `malloc` is safe (glibc 2.34 and later)
//! `pthread_create` allocates (the new thread's DTV, `_dl_allocate_tls` → `calloc`) and
//! takes glibc-internal locks: the stack-cache lock (`dl_stack_cache_lock`, not
//! recursive, never held across a call out of glibc) and the recursive
//! `dl_load_tls_lock` (`_dl_allocate_tls_init`). What `start` relies on:
//! - **No allocator lock is held.** `poll` is called only after `alloc_small` or the
//!   page heap returned (every `SpinLock` guard dropped), so the nested `calloc` cannot
//!   wait on a lock its own thread holds, and a thread that waits on our locks never
//!   waits on this one: it holds none of them.
//! - **No recursion.** `STATE` goes `NOT_STARTED` → `STARTING` by a CAS before the call,
//!   so the nested allocations, and any thread racing, skip `start`.
//! - **Only from a thread with its own cache** ([`crate::mcache::current_or_init`]): never
//!   from the runtime's one-time set-up (`pthread_key_create`/`pthread_atfork`, which
//!   allocate under glibc's atfork lock), a thread still setting up its cache, or one past
//!   its cache flush (glibc's thread teardown). Those calls leave `STATE` alone; the next
//!   slow path of an ordinary thread starts it.
//! - **Never from `free`.** glibc frees under the stack-cache lock (`__nptl_free_stacks` →
//!   `_dl_deallocate_tls`), which `pthread_create` takes: a start from `free` could
//!   deadlock on it. Only allocation paths call `poll`; glibc does not allocate under that
//!   lock. An allocation under the recursive `dl_load_tls_lock` (`dlopen`'s TLS bookkeeping,
//!   `_dl_resize_dtv`) may start it: re-taking that lock on the same thread is allowed.
//!   (glibc before 2.34 took `dl_load_lock` in `_dl_allocate_tls_init`, held by `dlopen`
//!   while ELF constructors run; this is not supported there.)
//! - **Signals are blocked** around `pthread_create` (the new thread inherits the mask), so
//!   no handler runs on this thread in the middle of it. A `malloc` from a signal handler
//!   that interrupted glibc while it held the stack-cache lock could deadlock here, as it
//!   could inside glibc's own `malloc`: `malloc` is not async-signal-safe.
//! - **`fork` meanwhile**: the child has only the forking thread, so a start in flight in
//!   another thread (`STARTING`, or `RUNNING` before the child existed) is reset to
//!   `NOT_STARTED` in the child (`state_after_fork`), which starts its own when needed.

use crate::config;
use crate::mcentral::CENTRAL;
#[cfg(not(any(miri, loom)))]
use crate::mheap::HEAP;
#[cfg(not(any(miri, loom)))]
use crate::sizeclass::PAGE_SHIFT;
use crate::sync::{AtomicU8, AtomicUsize, Ordering};

/// Heap size (committed bytes) at which the background thread starts.
pub const START_AT: usize = 8 << 20;
/// Most pages released per heap-lock hold (2 MiB: a few hundred microseconds of `madvise`).
pub const STEP_PAGES: usize = 256;
/// Most CPU time the token bucket holds: the largest burst of work.
pub const BURST_NS: u64 = 250_000_000;
/// How often unowned spans are searched for collected-but-unreturned frees.
pub const RECLAIM_EVERY_NS: u64 = 200_000_000;
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

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
/// The retained-bytes goal the thread last computed (`usize::MAX`: none yet).
static GOAL: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Committed heap bytes, mirrored from the page heap for the lock-free start check.
static HEAP_SYS: AtomicUsize = AtomicUsize::new(0);
/// The coarse clock: `CLOCK_MONOTONIC` in nanoseconds as of the background thread's last
/// step (0 until it runs). Free runs are stamped with it, at no cost to the free path.
static CLOCK: AtomicUsize = AtomicUsize::new(0);

/// Work counters, read by [`crate::stats`].
pub(crate) static WORK_NS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RELEASED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static STEPS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RECLAIMED_SPANS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static RECLAIM_NS: AtomicUsize = AtomicUsize::new(0);

/// The heap's retained-memory goal in bytes: what the thread computed, capped by the
/// memory limit. `usize::MAX` when there is none yet.
pub fn retained_goal() -> usize {
    GOAL.load(Ordering::Relaxed).min(limit_cap())
}

/// [`retained_goal`], but at least `inuse` bytes plus the usual 10% (the thread's goal
/// may be a step old when the heap grows), still capped by the memory limit.
pub(crate) fn retained_goal_for(inuse: usize) -> usize {
    let goal = GOAL.load(Ordering::Relaxed);
    goal.max(inuse.saturating_add(inuse / 10)).min(limit_cap())
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

/// The scavenger's coarse clock (see [`MIN_AGE_NS`]): at most one background step old,
/// and 0 while the thread has not run (then every free run counts as old).
#[inline]
pub fn coarse_now() -> usize {
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

/// Whether the background thread is running.
pub fn running() -> bool {
    STATE.load(Ordering::Relaxed) == RUNNING
}

/// Records the page heap's committed size (called under the heap lock as it grows).
pub(crate) fn note_heap_sys(bytes: usize) {
    HEAP_SYS.store(bytes, Ordering::Relaxed);
}

/// Starts the background thread if the heap is big enough and it is not running. Called
/// from allocation slow paths with no allocator lock held.
#[inline]
pub(crate) fn poll() {
    if STATE.load(Ordering::Relaxed) == NOT_STARTED
        && HEAP_SYS.load(Ordering::Relaxed) >= START_AT
        && config::scavenge_on()
    {
        start();
    }
}

/// Called before the heap grows for a new span or a large object, with no lock held:
/// near the memory limit, first hand back the spans other threads emptied, so the heap
/// reuses them instead of growing past the limit.
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
    STATE.store(
        state_after_fork(STATE.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
}

/// The child's `STATE` for the parent's `state` at `fork`. `STARTING` means another thread
/// of the parent was inside [`start`] (the forking thread runs the atfork handlers, never
/// `start`): that thread is gone, so without the reset the child would never start one.
/// `FAILED` stays: `pthread_create` failed for lack of resources, and it is not retried.
fn state_after_fork(state: u8) -> u8 {
    match state {
        RUNNING | STARTING => NOT_STARTED,
        other => other,
    }
}

/// Starts the thread (see "Why `pthread_create` from inside `malloc` is safe" above).
#[cold]
#[inline(never)]
fn start() {
    // Only a thread with a cache of its own (set up now if it has none yet: a thread whose
    // allocations were all large): not the runtime's set-up, a thread setting up its
    // cache, or one past its cache flush. STATE stays NOT_STARTED for the next caller.
    if crate::mcache::current_or_init().is_none() {
        return;
    }
    if STATE
        .compare_exchange(NOT_STARTED, STARTING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    #[cfg(any(miri, loom))]
    STATE.store(FAILED, Ordering::Relaxed);
    #[cfg(not(any(miri, loom)))]
    // SAFETY: plain pthread calls on local, initialised values; `thread_main` has the
    // start-routine signature. pthread_create may allocate (its TLS block): this thread
    // holds no allocator lock and STATE is STARTING, so the nested calls do not recurse
    // here (the module doc lists the glibc locks involved).
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 256 << 10);
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut tid, &attr, thread_main, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        STATE.store(if rc == 0 { RUNNING } else { FAILED }, Ordering::Relaxed);
    }
}

#[cfg(not(any(miri, loom)))]
extern "C" fn thread_main(_: *mut libc::c_void) -> *mut libc::c_void {
    let mut pacer = Pacer::new(now(libc::CLOCK_MONOTONIC));
    loop {
        let pause = pacer.step();
        sleep_ns(pause);
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
    fn new(now: u64) -> Pacer {
        Pacer {
            last: now,
            peak: 0,
            tokens: BURST_NS as i64,
            last_reclaim: 0,
        }
    }

    /// One step of work, if any is due. Returns how long to sleep before the next.
    #[cfg(not(any(miri, loom)))]
    fn step(&mut self) -> u64 {
        let t = now(libc::CLOCK_MONOTONIC);
        let dt = t - self.last;
        self.last = t;
        CLOCK.store(t as usize, Ordering::Relaxed);
        if !config::scavenge_on() {
            GOAL.store(usize::MAX, Ordering::Relaxed);
            return IDLE_NS;
        }
        let pct = u64::from(config::scavenge_percent());
        self.tokens = (self.tokens + (dt * pct / 100) as i64).min(BURST_NS as i64);
        let (inuse, retained) = {
            let h = HEAP.lock();
            (h.c.pages_inuse << PAGE_SHIFT, h.retained())
        };
        self.peak = decayed_peak(self.peak, inuse, dt);
        GOAL.store(self.peak + self.peak / 10, Ordering::Relaxed);
        let goal = retained_goal();
        let over_limit = retained > config::memory_limit();
        if self.tokens <= 0 && !over_limit {
            // Sleep until the bucket holds work again.
            return ((-self.tokens) as u64 * 100 / pct).clamp(1_000_000, IDLE_NS);
        }
        let reclaim_due = t - self.last_reclaim >= RECLAIM_EVERY_NS;
        if retained <= goal && !reclaim_due {
            return IDLE_NS;
        }
        if reclaim_due {
            // Not charged to the budget: this is free work deferred from other threads
            // (each notified span is handled once per notification), as Go's background
            // sweeper is not.
            self.last_reclaim = t;
            let cpu0 = now(libc::CLOCK_THREAD_CPUTIME_ID);
            let spans: usize = CENTRAL.iter().map(|c| c.reclaim()).sum();
            RECLAIMED_SPANS.fetch_add(spans, Ordering::Relaxed);
            let work = now(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0;
            RECLAIM_NS.fetch_add(work as usize, Ordering::Relaxed);
        }
        let (mut released, mut young) = (0, 0);
        let cpu0 = now(libc::CLOCK_THREAD_CPUTIME_ID);
        if retained > goal {
            let todo = ((retained - goal) >> PAGE_SHIFT).min(STEP_PAGES);
            let done = HEAP.lock().scavenge(todo, true, dirty_cutoff(over_limit));
            (released, young) = (done.released, done.young);
            RELEASED.fetch_add(released << PAGE_SHIFT, Ordering::Relaxed);
        }
        let work = now(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0;
        self.tokens -= work as i64;
        WORK_NS.fetch_add(work as usize, Ordering::Relaxed);
        STEPS.fetch_add(1, Ordering::Relaxed);
        if released == 0 && young == 0 && retained > goal && reclaim_due {
            // Over the goal with no free page left to release: what is left over may sit
            // in spans that threads retain, so ask them back (at most once a reclaim period).
            crate::mcache::request_trim();
        }
        if released == 0 {
            // Nothing releasable now: memory is in spans, in dense chunks, or freed too
            // recently (it comes of age within MIN_AGE_NS; the idle sleep is shorter).
            IDLE_NS
        } else {
            0
        }
    }
}

/// `max(inuse, peak * e^(-dt/DECAY_NS))`, with `DECAY/(DECAY+dt)` for the exponential.
#[cfg_attr(any(miri, loom), allow(dead_code))]
fn decayed_peak(peak: usize, inuse: usize, dt: u64) -> usize {
    let kept = (peak as u128 * u128::from(DECAY_NS) / u128::from(DECAY_NS + dt)) as usize;
    kept.max(inuse)
}

#[cfg(not(any(miri, loom)))]
fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(any(miri, loom)))]
fn sleep_ns(ns: u64) {
    if ns == 0 {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
        return;
    }
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is valid; an interrupted sleep just ends early.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
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
    fn a_forked_child_starts_its_own_thread() {
        // A start in flight in another thread of the parent must not leave the child
        // STARTING for ever (it would never scavenge).
        assert_eq!(state_after_fork(STARTING), NOT_STARTED);
        assert_eq!(state_after_fork(RUNNING), NOT_STARTED);
        assert_eq!(state_after_fork(NOT_STARTED), NOT_STARTED);
        assert_eq!(state_after_fork(FAILED), FAILED);
    }

    #[test]
    fn goal_is_capped_by_the_memory_limit() {
        let before = config::Config::current();
        config::configure(before.memory_limit(Some(100 << 20)));
        assert!(retained_goal() <= 95 << 20);
        config::configure(before);
    }
}
