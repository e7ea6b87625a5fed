//! When to sample: Go's `nextSample` (`malloc.go`), a Poisson process over the bytes a
//! thread allocates.
//!
//! Each thread cache keeps a countdown, `MCache::next_sample`, of the bytes left before
//! its next sample. `tick` subtracts each allocation's requested size from it, says
//! whether this allocation is the sample and, if so, draws the next countdown from an
//! exponential distribution of mean [`rate`] bytes (`draw`), so that every allocated byte
//! has the same chance, `1/rate`, of being the one sampled. The countdown of a cache drawn
//! under another rate is drawn again at its next slow path (`EPOCH`); with the rate 0 it
//! is `isize::MAX`, which no program allocates.
//!
//! Where the countdown is taken depends on the build:
//! * by default, the fast paths have no test of it. A thread that samples (the rate is not
//!   0) points its cache's fast-path spans (`MCache::fast`) at proxy records that hold
//!   some of each window's free slots, as many as a countdown of the size class's own
//!   has room for (`super::lend`, where one countdown per class is shown to sample as
//!   Go's one does): the fast path runs unchanged, and the slow path counts the slots
//!   when a proxy runs out. `settle` switches the cache when it is created and at its
//!   first refill after [`set_rate`]. The allocations that take no loan (large and
//!   over-aligned blocks, the collector's objects) count down `next_sample` here. The
//!   fast path of a thread that does not sample is the same code as that of an
//!   allocator without profiles;
//! * with the feature `profile`, the fast paths subtract the size themselves
//!   (`countdown`) and leave for the slow path when it would go below zero: a few
//!   instructions per allocation whether sampling is on or off.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use crate::mcache::{EMPTY_CACHE_PTR, MCache};
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Mean bytes between samples; 0: off.
static RATE: AtomicUsize = AtomicUsize::new(0);
/// Bumped by every [`set_rate`], so that each cache draws its countdown again.
static EPOCH: AtomicU32 = AtomicU32::new(1);

/// The countdown of a cache while the rate is 0, or while its thread writes a profile.
const NEVER: usize = isize::MAX as usize;

/// A thread's sampling state, beside its countdown (`MCache::next_sample`, which the fast
/// path reads and so sits on the cache's first line).
pub struct ThreadState {
    /// xorshift64* state; 0 until the first draw seeds it.
    rng: Cell<u64>,
    /// The [`EPOCH`] the countdown was drawn in (0: never drawn).
    epoch: Cell<u32>,
    /// The [`EPOCH`] the cache last settled its fast path in ([`settle`]) and found no
    /// sampling to do; 0 while it samples (or never settled), so that the refill path's
    /// one test, `settled != EPOCH`, sends each allocation of a sampling thread, and the
    /// first refill after a rate change, to [`settle`] (default build).
    #[cfg(not(feature = "profile"))]
    pub(crate) settled: Cell<u32>,
    /// The thread is writing a profile: its own allocations are not sampled.
    pub(crate) busy: Cell<bool>,
    /// The proxy spans of a thread that samples, null until it first does
    /// (`super::lend::Loans`).
    #[cfg(not(feature = "profile"))]
    pub(crate) loans: Cell<*mut super::lend::Loans>,
}

impl ThreadState {
    /// Not drawn yet, not busy.
    pub const fn new() -> ThreadState {
        ThreadState {
            rng: Cell::new(0),
            epoch: Cell::new(0),
            #[cfg(not(feature = "profile"))]
            settled: Cell::new(0),
            busy: Cell::new(false),
            #[cfg(not(feature = "profile"))]
            loans: Cell::new(core::ptr::null_mut()),
        }
    }
}

impl Default for ThreadState {
    fn default() -> ThreadState {
        ThreadState::new()
    }
}

/// Sets the mean sampling interval in bytes (`GOMALLOC_PROFILE_RATE`): 0 turns sampling
/// off, 1 samples every allocation. Each thread takes it up at its next slow-path
/// allocation.
pub fn set_rate(bytes: usize) {
    RATE.store(bytes.min(NEVER), Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The current [`EPOCH`].
#[inline(always)]
pub(crate) fn epoch() -> u32 {
    EPOCH.load(Ordering::Relaxed)
}

/// Takes up the current rate on the calling thread's cache `c` (default build): points its
/// fast-path spans at its proxies while the rate is not 0, back at its own spans when it
/// is. True if the thread samples (false too if the OS refused the proxies' memory).
///
/// # Safety
/// `c` is the calling thread's own cache.
#[cfg(not(feature = "profile"))]
pub(crate) unsafe fn settle(c: &MCache) -> bool {
    let e = epoch();
    if c.prof.settled.get() == e {
        return false;
    }
    let want = rate() != 0;
    let on = if want != c.sampling.get() {
        // SAFETY: the calling thread's own cache (# Safety).
        unsafe { c.set_sampling(want) }
    } else {
        want
    };
    c.prof.settled.set(if on { 0 } else { e });
    on
}

/// The mean sampling interval in bytes (0: off).
pub fn rate() -> usize {
    RATE.load(Ordering::Relaxed)
}

/// The fast path's countdown (feature `profile`): the cache's countdown less `size`, or
/// `None` if that would be below zero (the slow path then decides). `c` is the thread's cache or the static
/// empty one, whose countdown is 0, so that a thread without a cache takes the slow path
/// for every non-empty allocation, as it does anyway.
///
/// # Safety
/// `c` is the calling thread's cache or `EMPTY_CACHE_PTR`.
#[cfg(feature = "profile")]
#[inline(always)]
pub(crate) unsafe fn countdown(c: *mut MCache, size: usize) -> Option<usize> {
    // SAFETY: `c` is valid (# Safety); the countdown is only read here.
    let n = unsafe { (*c).next_sample.get() };
    let left = n.wrapping_sub(size);
    if (left as isize) < 0 {
        None
    } else {
        Some(left)
    }
}

/// The slow path's countdown: subtracts `size` from the calling thread's countdown and
/// returns true if this allocation is to be sampled (the countdown is then drawn anew).
/// A thread without a cache of its own (dead, or inside the allocator's set-up) is never
/// sampled; a new thread's first allocation makes its cache before counting
/// (`malloc::alloc_slow`). (The loans of the default build count down on their own:
/// `super::lend`.)
///
/// # Safety
/// `c` is the calling thread's cache or `EMPTY_CACHE_PTR`.
#[inline]
pub(crate) unsafe fn tick(c: *mut MCache, size: usize) -> bool {
    if c == EMPTY_CACHE_PTR {
        return false;
    }
    // SAFETY: a real cache, the calling thread's alone (# Safety).
    let c = unsafe { &*c };
    let epoch = EPOCH.load(Ordering::Relaxed);
    if c.prof.epoch.get() != epoch {
        c.prof.epoch.set(epoch);
        c.next_sample.set(draw(c));
    }
    let n = c.next_sample.get();
    if n >= size {
        c.next_sample.set(n - size);
        return false;
    }
    c.next_sample.set(draw(c));
    !c.prof.busy.get() && rate() != 0
}

/// The next countdown: exponential with mean [`rate`] (Go's `fastexprand`), 0 at rate 1
/// (every allocation), `NEVER` when sampling is off or the thread writes a profile.
pub(super) fn draw(c: &MCache) -> usize {
    let rate = rate();
    if rate == 0 || c.prof.busy.get() {
        return NEVER;
    }
    if rate == 1 {
        return 0;
    }
    let mut x = c.prof.rng.get();
    if x == 0 {
        // Seeded from the cache's address and the clock: threads draw apart.
        x = (c as *const MCache as u64) ^ crate::sys::clock_ns(libc::CLOCK_MONOTONIC) | 1;
    }
    // xorshift64* (Vigna): 2^64 - 1 period, and its top 53 bits pass BigCrush.
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c.prof.rng.set(x);
    let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    // u in (0, 1]: never 0, whose log is -infinity.
    let u = (r + 1) as f64 / (1u64 << 53) as f64;
    let d = -libm::log(u) * rate as f64;
    (d as usize).min(NEVER)
}

/// Runs `f` with sampling of the calling thread's allocations suspended (the profile
/// writer's own allocations must not be sampled).
pub(crate) fn suspended<R>(f: impl FnOnce() -> R) -> R {
    let c = crate::mcache::current();
    if c == EMPTY_CACHE_PTR {
        return f();
    }
    // SAFETY: the calling thread's own cache.
    let c = unsafe { &*c };
    let was = c.prof.busy.replace(true);
    c.next_sample.set(NEVER);
    let r = f();
    c.prof.busy.set(was);
    c.prof.epoch.set(0); // draw again at the next slow path
    #[cfg(not(feature = "profile"))]
    super::lend::draw_again(c);
    r
}
