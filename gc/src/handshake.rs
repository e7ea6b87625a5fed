//! The concurrent mark's handshake with the mutators (design §8, step 7): the request
//! flags, the flush rounds and their acknowledgements, and the hand-off of a barrier
//! buffer to the shared grey list. The collector (`collector::flush_round`,
//! `collector::stop_the_world`, `collector::run_concurrent_cycle`, `collector::terminate`)
//! and the mutators (`Mutator::safepoint`, `Mutator::flush_barrier`, `Mutator::park`,
//! `Mutator::blocking`, `Mutator::wait_cycle_end`, the drop of a `Mutator`) go through
//! these functions for every access that carries the protocol's orderings.
//!
//! This module uses no other module of the crate and no gomalloc item: `tests/loom.rs`
//! compiles it under `cfg(loom)` (where the rest of the crate is not built) against
//! loom's atomics and mutex, and model-checks the protocol with this very code.
//!
//! The invariants:
//! * a thread's barrier buffer holds only objects this thread shaded; it reaches the
//!   shared list ([`hand_off`]) under the list's mutex;
//! * a mutator acknowledges round `r` ([`acknowledge`]) only after handing off its buffer,
//!   with a release store of the round it read; so a collector that reads an
//!   acknowledgement of `r` or later with acquire ([`settled`]) finds in the shared list
//!   every object that thread shaded before acknowledging;
//! * a thread publishes that it stopped (parked, in a blocking region, detaching) with a
//!   release store ([`publish_stopped`]) after handing off its buffer; so a collector that
//!   reads the state with acquire and sees the thread stopped finds its objects in the
//!   shared list, and a collector that stops every thread finds every buffered object
//!   there (mark termination's check, with the world stopped).
//!
//! * a thread's stack scan for a concurrent mark ([`STACK_OWED`], set with the world stopped
//!   at mark start) is claimed once: by the thread itself when it runs again
//!   ([`resume_scan`]), or by the collector while the thread is stopped ([`claim_scan`]),
//!   never by both; a thread whose scan the collector claimed does not run on (change its
//!   stack or handle scopes) until the collector releases it ([`end_scan`], release,
//!   read by the thread with acquire), and the collector reads a stack only after it saw
//!   the thread stopped (acquire, after the thread published its stack pointer and copy).
//!
//! The shared list's mutex alone already makes a hand-off visible to a collector that read
//! the acknowledgement or the state after it (the collector's lock cannot come before the
//! mutator's in the mutex's order without the read seeing a store that happens after it);
//! the loom models pass with relaxed acknowledgements too. The release and acquire pairs
//! keep the invariant independent of the list being a mutex (a lock-free list, or data
//! published beside it).

#[cfg(loom)]
use loom::sync::Mutex;
#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
use std::sync::Mutex;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

/// Request flag: a collector wants every mutator to stop at its next safepoint.
pub(crate) const STOP: u8 = 1;
/// Request flag: a cycle is marking while mutators run (barrier on, allocate black).
pub(crate) const MARKING: u8 = 2;
/// Request flag: a concurrent mark asks every running mutator to flush its barrier buffer
/// at its next safepoint and acknowledge the round ([`acknowledge`]).
pub(crate) const FLUSH: u8 = 4;

/// Thread state: running the program (it may shade objects into its buffer).
pub(crate) const RUNNING: u8 = 0;
/// Thread state: stopped at a safepoint, its buffer handed off.
pub(crate) const PARKED: u8 = 1;
/// Thread state: in a blocking region or detaching, its buffer handed off (it shades
/// nothing until it is `RUNNING` again).
pub(crate) const BLOCKING: u8 = 2;

/// Stack-scan state: no scan owed (the current mark scanned this thread's stack, or no
/// concurrent mark runs).
pub(crate) const STACK_SCANNED: u8 = 0;
/// Stack-scan state: the concurrent mark has not scanned this thread's stack and handle
/// scopes yet (set at mark start, with the world stopped).
pub(crate) const STACK_OWED: u8 = 1;
/// Stack-scan state: the collector is scanning the stopped thread's stack; the thread must
/// not run on until it is [`STACK_SCANNED`].
pub(crate) const STACK_BUSY: u8 = 2;
/// Stack-scan state: the thread is scanning its own stack ([`resume_scan`]); the collector
/// waits for [`STACK_SCANNED`] before it ends the mark, so that the scan runs while the
/// world does, not inside mark termination's stop.
pub(crate) const STACK_SELF: u8 = 3;

/// Collector, with the world stopped at a concurrent mark's start: the thread with `scan`
/// owes the mark a stack scan. (The stop orders the store with every later access: the
/// thread reads it after the restart, under the world lock's happens-before.)
pub(crate) fn owe_scan(scan: &AtomicU8) {
    scan.store(STACK_OWED, Ordering::Relaxed);
}

/// Collector: claims the stack scan of a thread it sees stopped (`state` not `RUNNING`,
/// acquire: the stack pointer and stack copy the thread published before are visible).
/// `Some(state seen)` if the caller must scan the thread's stack and handle scopes now (the
/// copy if the state seen is `BLOCKING`), then call [`end_scan`]; meanwhile the thread, if
/// it resumes, waits in [`resume_scan`]. `None` if the thread runs, or its scan is done or
/// claimed.
pub(crate) fn claim_scan(state: &AtomicU8, scan: &AtomicU8) -> Option<u8> {
    let seen = state.load(Ordering::Acquire);
    if seen == RUNNING {
        return None;
    }
    scan.compare_exchange(STACK_OWED, STACK_BUSY, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| seen)
}

/// Collector or thread: the scan it claimed is done (release: the collector's reads of the
/// thread's stack happen before the thread runs on, which it does after reading this store
/// with acquire; a thread's grey objects were handed off before a collector that reads it
/// with acquire ([`scan_pending`]) goes on).
pub(crate) fn end_scan(scan: &AtomicU8) {
    scan.store(STACK_SCANNED, Ordering::Release);
}

/// Mutator, going back to running the program (after a stop, a wait or a blocking region)
/// and before it changes its stack above the stack pointer it published: true if it
/// claimed its own stack scan (it must scan itself now, before it runs on, then call
/// [`end_scan`]); false if there is none, or once the collector's scan of it has ended
/// (waiting for it meanwhile).
pub(crate) fn resume_scan(scan: &AtomicU8) -> bool {
    loop {
        match scan.compare_exchange(STACK_OWED, STACK_SELF, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return true,
            Err(STACK_BUSY) => yield_now(),
            Err(_) => return false,
        }
    }
}

/// Collector: true while the thread's stack scan is owed or in progress.
pub(crate) fn scan_pending(scan: &AtomicU8) -> bool {
    scan.load(Ordering::Acquire) != STACK_SCANNED
}

#[cfg(loom)]
fn yield_now() {
    loom::thread::yield_now();
}

#[cfg(not(loom))]
fn yield_now() {
    std::thread::yield_now();
}

/// The requests a safepoint looks at: one relaxed load. A stale value costs a missed or
/// an extra flush, never a lost object: a missed round is not acknowledged (the collector
/// waits, then the stop flushes the thread), and an acknowledgement names a round the
/// thread read before handing off ([`acknowledge`]).
#[inline(always)]
pub(crate) fn requests(flags: &AtomicU8) -> u8 {
    flags.load(Ordering::Relaxed)
}

/// Collector: opens a flush round (bumps `round`, then raises [`FLUSH`]); returns the
/// round's number, which every running mutator must acknowledge.
pub(crate) fn begin_flush_round(round: &AtomicU64, flags: &AtomicU8) -> u64 {
    let r = round.fetch_add(1, Ordering::AcqRel) + 1;
    flags.fetch_or(FLUSH, Ordering::SeqCst);
    r
}

/// Collector: true if the thread with `state` and `flushed` owes nothing for round `r`:
/// it is stopped (its buffer was handed off before it said so) or it acknowledged `r` or
/// a later round. Acquire loads: they pair with the release stores of
/// [`publish_stopped`] and [`acknowledge`], so the hand-offs before them are visible.
pub(crate) fn settled(state: &AtomicU8, flushed: &AtomicU64, r: u64) -> bool {
    state.load(Ordering::Acquire) != RUNNING || flushed.load(Ordering::Acquire) >= r
}

/// Collector: closes the flush round (clears [`FLUSH`]).
pub(crate) fn end_flush_round(flags: &AtomicU8) {
    flags.fetch_and(!FLUSH, Ordering::SeqCst);
}

/// Mutator, at a safepoint that saw [`FLUSH`]: hands off `buf` to `shade` and
/// acknowledges the round read before the hand-off (release: the hand-off is visible to a
/// collector that reads the acknowledgement with acquire).
pub(crate) fn acknowledge(
    round: &AtomicU64,
    flushed: &AtomicU64,
    buf: &mut Vec<usize>,
    shade: &Mutex<Vec<usize>>,
) {
    // The caller saw `FLUSH` with a relaxed load ([`requests`]). The fence makes that load
    // synchronize with the `fetch_or` that raised the bit ([`begin_flush_round`]), so the
    // round read below is at least the round that raised it. Without it a weakly ordered
    // processor may read the round before, and the collector would wait out its deadline
    // for a thread that did flush.
    fence(Ordering::Acquire);
    let r = round.load(Ordering::Acquire);
    hand_off(buf, shade);
    flushed.store(r, Ordering::Release);
}

/// Mutator: moves every object of its barrier buffer `buf` to the shared grey list.
///
/// In the off-heap misuse checker's build (`feature = "checkroots"`) it also zeroes the
/// buffer's spare capacity: the checker reads whole `malloc` blocks and does not know this
/// one (it sits in the thread's state), so the addresses left in it, of objects shaded or
/// found on the stack by an earlier mark that have died since, would read as pointers held
/// outside the collector's view. Nothing more in other builds.
pub(crate) fn hand_off(buf: &mut Vec<usize>, shade: &Mutex<Vec<usize>>) {
    if !buf.is_empty() {
        shade.lock().unwrap_or_else(|e| e.into_inner()).append(buf);
    }
    if cfg!(feature = "checkroots") {
        buf.resize(buf.capacity(), 0);
        buf.clear();
    }
}

/// Collector: takes every object of the shared grey list.
pub(crate) fn take_shaded(shade: &Mutex<Vec<usize>>) -> Vec<usize> {
    std::mem::take(&mut *shade.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Collector: true if the shared grey list is empty.
pub(crate) fn shade_empty(shade: &Mutex<Vec<usize>>) -> bool {
    shade.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// Mutator: says it stopped (`PARKED` or `BLOCKING`), once its buffer was handed off
/// (release: the hand-off is visible to a collector that reads the state with acquire).
pub(crate) fn publish_stopped(state: &AtomicU8, stopped: u8) {
    debug_assert_ne!(stopped, RUNNING);
    state.store(stopped, Ordering::Release);
}

/// Collector: true if the thread with `state` may be running the program (acquire, as
/// [`settled`]).
pub(crate) fn running(state: &AtomicU8) -> bool {
    state.load(Ordering::Acquire) == RUNNING
}
