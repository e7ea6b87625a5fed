//! The start and stop handshake of the allocator's background thread (the scavenger,
//! [`crate::scavenge`]): a thread that exists only while it has work, started by whoever
//! produces work, including a `free`. Lock-free, allocation-free, and modelled by loom
//! (`tests/loom.rs`).
//!
//! The thread's life: `IDLE` -(a waker)-> `STARTING` -(the starter)-> `RUNNING` -(the
//! thread, idle)-> `EXITING` -> gone. A thread that is leaving goes back to `RUNNING` if
//! a request came meanwhile; otherwise a waker that sees `EXITING` takes over
//! (`EXITING` -> `STARTING`) and starts the next thread once the old one is gone. The
//! waker and the leaving thread meet in a Dekker pair: the waker stores `wanted`, then reads
//! `state`; the thread stores `state`, then reads `wanted`; with `SeqCst` on both sides at
//! least one sees the other's store, so a request is never lost between a thread that
//! leaves and a waker that thinks it still runs.
//!
//! Layer: pages (the crate root's module map, `lib.rs`).

use crate::sync::{AtomicBool, AtomicU8, Ordering};

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const EXITING: u8 = 3;

/// A full `SeqCst` fence under loom only: loom treats `SeqCst` accesses as `AcqRel` but
/// models `SeqCst` fences exactly (see `remote.rs` for the same pattern).
#[inline(always)]
fn loom_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// The handshake's state. Invariant: at most one thread is `RUNNING` or `EXITING` at a
/// time, and only the waker whose [`Wakeup::wake`] returned true starts one.
pub struct Wakeup {
    state: AtomicU8,
    /// A request came since the thread last took one ([`Wakeup::take_request`]).
    wanted: AtomicBool,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self::new()
    }
}

impl Wakeup {
    /// No thread, no request.
    #[cfg(not(loom))]
    pub const fn new() -> Wakeup {
        Wakeup {
            state: AtomicU8::new(IDLE),
            wanted: AtomicBool::new(false),
        }
    }

    /// No thread, no request.
    #[cfg(loom)]
    pub fn new() -> Wakeup {
        Wakeup {
            state: AtomicU8::new(IDLE),
            wanted: AtomicBool::new(false),
        }
    }

    /// Whether a thread runs now (a hint: relaxed).
    #[inline]
    pub fn running(&self) -> bool {
        self.state.load(Ordering::Relaxed) == RUNNING
    }

    /// Requests a step of the thread. Returns true if the caller must start one: it then
    /// calls [`Wakeup::starting`] before creating it and [`Wakeup::start_failed`] if the
    /// system refused.
    pub fn wake(&self) -> bool {
        self.wanted.store(true, Ordering::SeqCst);
        loom_fence();
        let s = self.state.load(Ordering::SeqCst);
        (s == IDLE || s == EXITING)
            && self
                .state
                .compare_exchange(s, STARTING, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// The starter, just before it creates the thread: `RUNNING` from now on, since the
    /// new thread may decide to leave at once, and a later store would hide that.
    pub fn starting(&self) {
        self.state.store(RUNNING, Ordering::SeqCst);
    }

    /// The starter, when the system refused the thread (none exists): back to `IDLE`.
    pub fn start_failed(&self) {
        self.state.store(IDLE, Ordering::SeqCst);
    }

    /// The thread, at each step: takes the pending request, if any.
    pub fn take_request(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// The thread, when it has been idle long enough: true if it must end now (a later
    /// request starts a new thread); false if a request came meanwhile and it runs on.
    pub fn try_leave(&self) -> bool {
        self.state.store(EXITING, Ordering::SeqCst);
        loom_fence();
        !(self.wanted.load(Ordering::SeqCst)
            && self
                .state
                .compare_exchange(EXITING, RUNNING, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok())
    }

    /// In a forked child: the thread, and any start in progress in another thread of the
    /// parent, did not survive the fork (the forking thread runs the atfork handlers, never
    /// a start), so without the reset the child would never start one.
    pub fn after_fork_child(&self) {
        self.state.store(IDLE, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_thread_stays_for_a_request_and_a_fork_resets() {
        let w = Wakeup::new();
        assert!(w.wake());
        assert!(!w.wake(), "one start at a time");
        w.starting();
        assert!(w.running() && w.take_request());
        assert!(w.try_leave(), "no request: it leaves");
        assert!(!w.running());
        let w = Wakeup::new();
        assert!(w.wake());
        w.starting();
        assert!(!w.wake(), "a request to a running thread starts nothing");
        assert!(!w.try_leave(), "the request keeps it");
        assert!(w.running());
        w.after_fork_child();
        assert!(w.wake(), "the child starts its own");
    }
}
