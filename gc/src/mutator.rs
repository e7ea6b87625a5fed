//! Mutator threads: attaching, safepoints, blocking regions, and stopping the world.
//!
//! World protocol (all under [`WORLD`]'s mutex, with [`WORLD_CV`] for every change that a
//! thread waits for):
//! * a thread is `RUNNING`, `PARKED` (stopped at a safepoint) or `BLOCKING` (inside
//!   [`Mutator::blocking`]); the latter two published their stack pointer first;
//! * a collector sets `stw`, raises `STOP` in [`GC_FLAGS`] and waits until no other
//!   attached thread is `RUNNING`: it yields its core for a while, then sleeps with
//!   `stopper_sleeping` set. A thread that stops wakes the waiters only then
//!   ([`stopped_under_lock`]): nobody else waits for a thread to stop;
//! * restarting sets `stw = false`, bumps `epoch`, sets every `PARKED` thread back to
//!   `RUNNING` and wakes everyone. Parked threads wait for the epoch to change; threads
//!   leaving a blocking region, and threads attaching, wait while `stw` is set.
//!
//! Only the restarting collector moves a parked thread back to `RUNNING`, under the
//! world lock. A parked thread must never do it itself on waking: the next cycle may
//! already have stopped the world while it slept, and a stale `PARKED` would let that
//! cycle mark while the thread runs (the bug behind `tests/back_to_back.rs`).

use crate::handle::ShadowStack;
use crate::handshake;
use crate::heap::Kind;
use crate::heap::{self, Cache, TINY_SIZE};
use crate::mark::{thread_stack_bounds, with_registers_spilled};
use gomalloc::gcapi;
use gomalloc::gcapi::MAX_SMALL_SIZE;
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

// The request flags of `GC_FLAGS` and the thread states; the handshake's accesses to
// them, with their orderings, are in `crate::handshake`.
pub(crate) use crate::handshake::{BLOCKING, FLUSH, MARKING, PARKED, RUNNING, STOP};
/// The flush round the collector asked for last ([`FLUSH`]).
pub(crate) static FLUSH_ROUND: AtomicU64 = AtomicU64::new(0);
/// The collector's requests ([`STOP`], [`MARKING`], [`FLUSH`]). Read on every allocation
/// (one relaxed load on the fast path).
pub(crate) static GC_FLAGS: AtomicU8 = AtomicU8::new(0);

/// What the collector needs from an attached thread.
pub(crate) struct ThreadRec {
    pub state: AtomicU8,
    /// Stack pointer published at the last safepoint (valid while not `RUNNING`).
    pub sp: AtomicUsize,
    /// One past the highest address of the thread's stack.
    pub stack_hi: usize,
    /// Times the thread went back to `RUNNING` after a stop (a debug check that nothing
    /// resumes while the world is stopped).
    pub resumed: AtomicU64,
    /// The last flush round ([`FLUSH_ROUND`]) in which this thread moved its barrier
    /// buffer to the collector's shared list (release; the collector reads it with
    /// acquire before taking the list).
    pub flushed: AtomicU64,
    /// The thread's handle scopes (precise roots).
    pub handles: ShadowStack,
    /// Whether the concurrent mark in progress still owes this thread's stack and handle
    /// scopes a scan (`handshake::STACK_OWED`, set at mark start), and who does it: the
    /// thread itself when it runs again ([`Mutator::scan_own_stack`]), or the collector
    /// while the thread stays stopped (`collector::scan_stopped_stacks`).
    pub scan: AtomicU8,
    /// While `BLOCKING`: the words of `[sp, stack_hi)` that may be GC pointers, as the
    /// thread left them on entering the region (empty while it detaches). The collector
    /// scans this copy, never the live stack of a blocking thread: the closure may write
    /// the caller's locals (above `sp`) at any time. Written by the thread before it
    /// publishes `BLOCKING`, read by a collector that saw it `BLOCKING`: with the world
    /// stopped, or holding its stack scan (`handshake::claim_scan`), which the thread
    /// waits for before it enters another region (the lock orders the two).
    pub blocked_stack: Mutex<Vec<usize>>,
}

impl ThreadRec {
    /// Fills `blocked_stack` from `[sp, stack_hi)`: called by the thread itself, `RUNNING`,
    /// on entering a blocking region. Nothing in the precise mode (no stack is scanned).
    fn copy_stack(&self, sp: usize) {
        if !cfg!(feature = "precise") {
            let mut copy = self.blocked_stack.lock().unwrap_or_else(|e| e.into_inner());
            crate::mark::stack_candidates(sp, self.stack_hi, &mut copy);
        }
    }

    /// Back to `RUNNING` (with the world lock held).
    pub(crate) fn resume(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
        self.state.store(RUNNING, Ordering::Release);
    }
}

pub(crate) struct World {
    pub threads: Vec<Arc<ThreadRec>>,
    pub stw: bool,
    pub epoch: u64,
    /// A cycle is in progress (sweep termination, stopped, or incremental marking). Set and
    /// cleared through [`World::set_collecting`], which mirrors it in [`COLLECTING`].
    collecting: bool,
    /// The cycle in progress is the incremental test mode's.
    pub incremental: bool,
    /// A collector sleeps on [`WORLD_CV`] until the threads it stops have stopped
    /// (`collector::stop_the_world`); set and cleared by it, under the lock.
    pub stopper_sleeping: bool,
}

pub(crate) static WORLD: Mutex<World> = Mutex::new(World {
    threads: Vec::new(),
    stw: false,
    epoch: 0,
    collecting: false,
    incremental: false,
    stopper_sleeping: false,
});
pub(crate) static WORLD_CV: Condvar = Condvar::new();

/// [`World`]'s `collecting`, readable without the world lock: written with it, under the
/// lock. The pacer's test on every allocation slow path while the heap is over its trigger
/// (a whole concurrent mark) reads this rather than take the lock, so that the mutators'
/// refills do not contend for the lock the collector's stops take.
pub(crate) static COLLECTING: AtomicBool = AtomicBool::new(false);

impl World {
    /// Whether a cycle is in progress.
    pub(crate) fn collecting(&self) -> bool {
        self.collecting
    }

    /// Starts or ends a cycle; [`COLLECTING`] follows.
    pub(crate) fn set_collecting(&mut self, on: bool) {
        self.collecting = on;
        COLLECTING.store(on, Ordering::Relaxed);
    }
}

/// Address and size of the thread list's static (for the misuse checker: through it, the
/// threads' handle stacks and blocked-stack copies).
pub(crate) fn world_range() -> (usize, usize) {
    (&WORLD as *const _ as usize, std::mem::size_of_val(&WORLD))
}

pub(crate) fn world() -> MutexGuard<'static, World> {
    WORLD.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait(w: MutexGuard<'static, World>) -> MutexGuard<'static, World> {
    WORLD_CV.wait(w).unwrap_or_else(|e| e.into_inner())
}

/// Publishes, under the world lock `w`, that the thread with `state` stopped (`PARKED` or
/// `BLOCKING`), and wakes the waiters if a collector sleeps until the threads it stops have
/// stopped. Only that collector waits for a thread to stop (parked threads wait for the
/// world to restart, `collect()` callers for the cycle to end); while it yields its core
/// instead, it reads the states itself. Waking every parked thread at each park would
/// have each take the world lock, find the world still stopped and sleep again: context
/// switches that, with more threads than cores, keep the collector off its core (in the
/// pause benchmark at 256 MiB on 2 cores, the median stop was 1.4 times as long, and a
/// run's longest 1.9 times).
fn stopped_under_lock(w: &World, state: &AtomicU8, stopped: u8) {
    handshake::publish_stopped(state, stopped);
    if w.stopper_sleeping {
        WORLD_CV.notify_all();
    }
}

thread_local! {
    static ATTACHED: Cell<*mut MState> = const { Cell::new(std::ptr::null_mut()) };
}

/// The calling thread's mutator, if it is attached (for `gc::collect()`): a second handle
/// on the same state, which must not be dropped.
///
/// The state lives in its own allocation, not in the `Box<Mutator>` the user holds: moving
/// or mutably borrowing that box (which asserts uniqueness) must not invalidate this
/// pointer (Miri's aliasing models check exactly that).
pub(crate) fn current() -> Option<ManuallyDrop<Mutator>> {
    let p = ATTACHED.with(|a| a.get());
    NonNull::new(p).map(|st| {
        ManuallyDrop::new(Mutator {
            st,
            _not_send: PhantomData,
        })
    })
}

/// A mutator's state, shared by the user's `Mutator` and [`current`]; accessed through
/// shared references only (interior mutability), on its own thread.
pub(crate) struct MState {
    rec: Arc<ThreadRec>,
    cache: UnsafeCell<Cache>,
    /// Live `RefMut`s of traced types on this thread: while non-zero the thread does not
    /// stop for collections (the collector must not read a mutably borrowed value).
    open_borrows: Cell<u32>,
    /// The write barrier's buffer: objects this thread shaded (mark bit set, not yet
    /// scanned), moved to the collector's shared grey list (`collector::SHADE`) when it
    /// holds `cell::BARRIER_BUF` and by [`Mutator::flush_barrier`] before the thread stops
    /// (parks, waits for a cycle, enters a blocking region, detaches) or collects. So
    /// while the world is stopped every buffer but the collector's own is empty, and the
    /// collector flushes its own before mark termination drains `SHADE`.
    barrier: UnsafeCell<Vec<usize>>,
}

/// A thread's membership in the collector's world: the guard returned by [`attach`].
///
/// Allocation ([`Gc::new`](crate::Gc::new)), barriered writes
/// ([`Lock::set`](crate::Lock::set), [`RefLock::borrow_mut`](crate::RefLock::borrow_mut)) and
/// [`Weak::upgrade`](crate::Weak::upgrade) take `&Mutator`: only an attached thread that is
/// not inside a blocking region can change the object graph. `!Send` and `!Sync`.
///
/// An attached thread must reach a safepoint regularly (allocate, call
/// [`Mutator::safepoint`]) and must wait for other threads (joins, channels, locks) inside
/// [`Mutator::blocking`]: otherwise every collection waits for it.
pub struct Mutator {
    /// From `Box::into_raw` in [`attach`]; freed by the drop of the handle `attach`
    /// returned (never by a [`current`] handle).
    st: NonNull<MState>,
    _not_send: PhantomData<*mut ()>,
}

/// Attaches the calling thread to the collector. Its stack and registers are scanned
/// conservatively at every collection until the guard is dropped.
///
/// # Panics
/// If the thread is already attached.
pub fn attach() -> Box<Mutator> {
    crate::collector::init();
    assert!(
        current().is_none(),
        "gc::attach: this thread is already attached"
    );
    let (_, hi) = thread_stack_bounds();
    let rec = Arc::new(ThreadRec {
        state: AtomicU8::new(RUNNING),
        sp: AtomicUsize::new(0),
        stack_hi: hi,
        resumed: AtomicU64::new(0),
        flushed: AtomicU64::new(0),
        handles: ShadowStack::new(),
        // Nothing to scan: a new thread holds no GC pointer that a scanned stack or a
        // root does not hold too (the mark sees every object reachable at its start).
        scan: AtomicU8::new(handshake::STACK_SCANNED),
        blocked_stack: Mutex::new(Vec::new()),
    });
    {
        let mut w = world();
        while w.stw {
            w = wait(w);
        }
        w.threads.push(rec.clone());
    }
    let st = Box::into_raw(Box::new(MState {
        rec,
        cache: UnsafeCell::new(Cache::new()),
        open_borrows: Cell::new(0),
        barrier: UnsafeCell::new(Vec::with_capacity(crate::cell::BARRIER_BUF)),
    }));
    ATTACHED.with(|a| a.set(st));
    Box::new(Mutator {
        // SAFETY: from `Box::into_raw`, non-null.
        st: unsafe { NonNull::new_unchecked(st) },
        _not_send: PhantomData,
    })
}

impl Drop for Mutator {
    fn drop(&mut self) {
        self.cache_mut().release_all();
        self.flush_barrier();
        let rec = &self.st().rec;
        with_registers_spilled(|sp| {
            rec.sp.store(sp, Ordering::Release);
            // Leaving: nothing on this stack is a root any more (a `Gc` used after the
            // guard `attach` returned is gone is unrooted by the rooting rule), so a cycle
            // that runs while we wait for the world to restart scans an empty copy.
            // Copying the stack here would only leave its words in this thread's dead
            // frames (and, once glibc hands the stack to a new thread, in that thread's
            // frames as stale roots).
            rec.blocked_stack
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            let mut w = world();
            // A collector may be counting on us as stopped: leave only while the world runs.
            stopped_under_lock(&w, &rec.state, BLOCKING);
            while w.stw {
                w = wait(w);
            }
            w.threads.retain(|t| !Arc::ptr_eq(t, rec));
        });
        WORLD_CV.notify_all();
        ATTACHED.with(|a| a.set(std::ptr::null_mut()));
        // SAFETY: from `Box::into_raw` in `attach`; this is the handle `attach` returned
        // (`current` handles are never dropped) and the thread-local no longer names it.
        drop(unsafe { Box::from_raw(self.st.as_ptr()) });
    }
}

impl Mutator {
    #[inline(always)]
    fn st(&self) -> &MState {
        // SAFETY: live until the drop of the handle `attach` returned, which outlives every
        // borrow of any handle on this thread.
        unsafe { self.st.as_ref() }
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub(crate) fn cache_mut(&self) -> &mut Cache {
        // SAFETY: the cache is used only by this mutator's thread (`Mutator` is `!Sync`),
        // and no method holds the reference across a call that takes it again.
        unsafe { &mut *self.st().cache.get() }
    }

    pub(crate) fn rec(&self) -> &Arc<ThreadRec> {
        &self.st().rec
    }

    /// Moves the grey objects of `t` (just shaded by this thread) into its barrier buffer;
    /// returns how many the buffer holds.
    pub(crate) fn buffer_grey(&self, t: &mut crate::mark::Tracer) -> usize {
        // SAFETY: the buffer is used only by this mutator's thread (`Mutator` is `!Sync`),
        // and the functions that borrow it mutably (`buffer_grey`, `buffer_rescan`,
        // `flush_barrier`, `safepoint_slow`) call nothing that borrows it again while they
        // hold it.
        let buf = unsafe { &mut *self.st().barrier.get() };
        t.take_grey(buf);
        buf.len()
    }

    /// Queues the already marked scan object at `base` for one more scan, in this thread's
    /// barrier buffer (`RefLock`'s insertion half): a marker that takes it scans it again.
    /// Returns how many the buffer holds.
    pub(crate) fn buffer_rescan(&self, base: usize) -> usize {
        // SAFETY: the buffer is used only by this mutator's thread (`Mutator` is `!Sync`),
        // and the functions that borrow it mutably (`buffer_grey`, `buffer_rescan`,
        // `flush_barrier`, `safepoint_slow`) call nothing that borrows it again while they
        // hold it.
        let buf = unsafe { &mut *self.st().barrier.get() };
        buf.push(base);
        buf.len()
    }

    /// Moves this thread's barrier buffer to the collector's shared grey list.
    pub(crate) fn flush_barrier(&self) {
        // SAFETY: the buffer is used only by this mutator's thread (`Mutator` is `!Sync`),
        // and the functions that borrow it mutably (`buffer_grey`, `buffer_rescan`,
        // `flush_barrier`, `safepoint_slow`) call nothing that borrows it again while they
        // hold it.
        let buf = unsafe { &mut *self.st().barrier.get() };
        handshake::hand_off(buf, &crate::collector::SHADE);
    }

    /// Objects in this thread's barrier buffer (for tests of the flush).
    pub(crate) fn barrier_buffered(&self) -> usize {
        // SAFETY: the buffer is used only by this mutator's thread (`Mutator` is `!Sync`),
        // and no `&mut` to it is live here (`buffer_grey`, `buffer_rescan`, `flush_barrier`
        // and `safepoint_slow` drop theirs before returning).
        unsafe { (*self.st().barrier.get()).len() }
    }

    /// A safepoint: stops here if a collection is waiting for this thread (unless a
    /// `RefMut` of a traced type is alive on it: see [`RefLock::borrow_mut`](crate::RefLock::borrow_mut)).
    #[inline]
    pub fn safepoint(&self) {
        let flags = handshake::requests(&GC_FLAGS);
        if flags & (STOP | FLUSH) != 0 {
            self.safepoint_slow(flags);
        }
    }

    /// What a safepoint does when a collector asked for something: flush the barrier
    /// buffer for a flush round, park for a stop.
    #[cold]
    #[inline(never)]
    fn safepoint_slow(&self, flags: u8) {
        if flags & FLUSH != 0 {
            // SAFETY: the buffer is used only by this mutator's thread (`Mutator` is
            // `!Sync`), and the functions that borrow it mutably (`buffer_grey`,
            // `buffer_rescan`, `flush_barrier`, this one) call nothing that borrows it again
            // while they hold it (`handshake::acknowledge` only locks the shared list).
            let buf = unsafe { &mut *self.st().barrier.get() };
            handshake::acknowledge(
                &FLUSH_ROUND,
                &self.rec().flushed,
                buf,
                &crate::collector::SHADE,
            );
        }
        if flags & STOP != 0 && self.st().open_borrows.get() == 0 {
            self.park();
        }
    }

    /// True inside [`Mutator::blocking`]'s closure (where `gc::collect()` can still be
    /// called). Only this thread moves its own state out of `BLOCKING`.
    pub(crate) fn in_blocking_region(&self) -> bool {
        self.rec().state.load(Ordering::Relaxed) == BLOCKING
    }

    /// A `RefMut` of a traced type was opened on this thread.
    #[inline]
    pub(crate) fn open_borrow(&self) {
        self.st().open_borrows.set(self.st().open_borrows.get() + 1);
    }

    /// A `RefMut` of a traced type was dropped.
    #[inline]
    pub(crate) fn close_borrow(&self) {
        self.st().open_borrows.set(self.st().open_borrows.get() - 1);
    }

    /// Panics if a `RefMut` of a traced type is alive on this thread (a cycle cannot run
    /// here: it would have to read the borrowed value).
    pub(crate) fn assert_no_open_borrow(&self, what: &str) {
        assert!(
            self.st().open_borrows.get() == 0,
            "{what} while a RefLock is mutably borrowed on this thread"
        );
    }

    /// Stops at a safepoint until the world restarts.
    #[cold]
    #[inline(never)]
    pub(crate) fn park(&self) {
        self.cache_mut().release_all();
        self.flush_barrier();
        with_registers_spilled(|sp| {
            self.rec().sp.store(sp, Ordering::Release);
            let mut w = world();
            if !w.stw {
                return;
            }
            let epoch = w.epoch;
            stopped_under_lock(&w, &self.rec().state, PARKED);
            // `start_the_world` bumps the epoch and sets us `RUNNING` in one critical
            // section; a later cycle may be stopping the world again by the time we wake,
            // and then it waits for us to park again.
            while w.epoch == epoch {
                w = wait(w);
            }
            debug_assert_ne!(self.rec().state.load(Ordering::Relaxed), PARKED);
            drop(w);
            // Still inside the frame whose stack pointer we published: the stack above it
            // stays as the collector may be reading it.
            self.scan_own_stack();
        });
    }

    /// A concurrent mark's stack handshake, on the way back to running the program (from
    /// a stop, a wait for a cycle's end, a blocking region), before the thread changes its
    /// handle scopes or its stack above the stack pointer it published: if the mark still
    /// owes this thread's stack a scan, the thread scans it now (Go scans a goroutine's
    /// stack when it stops it; here the thread stops itself, at mark start); if the
    /// collector is scanning it, the thread waits for the end. So no thread runs the
    /// program with its stack unscanned while a mark runs, and what it stores into objects
    /// that are already black (new objects, scanned ones) was marked or will be.
    fn scan_own_stack(&self) {
        if !handshake::resume_scan(&self.rec().scan) {
            return;
        }
        with_registers_spilled(|sp| {
            let mut t = crate::mark::Tracer::new();
            let bytes = crate::collector::scan_thread(
                &mut t,
                self.rec(),
                crate::collector::StackAt::From(sp),
            );
            crate::collector::SELF_SCANNED_BYTES.fetch_add(bytes, Ordering::Relaxed);
            crate::collector::SHADE_BYTES.fetch_add(t.marked_bytes, Ordering::Relaxed);
            crate::pacer::SCAN_DONE.fetch_add(t.marked_bytes, Ordering::Relaxed);
            self.buffer_grey(&mut t);
            self.flush_barrier();
        });
        handshake::end_scan(&self.rec().scan);
    }

    /// Waits, stopped as at a safepoint, until the cycle in progress has ended.
    #[cold]
    #[inline(never)]
    pub(crate) fn wait_cycle_end(&self) {
        self.cache_mut().release_all();
        self.flush_barrier();
        with_registers_spilled(|sp| {
            self.rec().sp.store(sp, Ordering::Release);
            let mut w = world();
            // Restarting the world resumes us; if the next cycle has begun before we woke,
            // park again for it (its collector waits for that).
            while w.collecting() {
                if self.rec().state.load(Ordering::Relaxed) != PARKED {
                    stopped_under_lock(&w, &self.rec().state, PARKED);
                }
                w = wait(w);
            }
            if self.rec().state.load(Ordering::Relaxed) == PARKED {
                self.rec().resume();
            }
            drop(w);
            // A mark that began and ended while we waited scanned this stack (we were
            // parked): nothing is owed, but a scan the collector holds must end first.
            self.scan_own_stack();
        });
    }

    /// Runs `f` in a blocking region: collections may run meanwhile without waiting for
    /// this thread. Use it around joins, channel receives, lock waits and sleeps. `f`
    /// cannot use the mutator (it is borrowed mutably), so it cannot allocate or write
    /// barriered cells; reading GC objects is fine (marking never changes them), and the
    /// `Gc` pointers on this thread's stack stay rooted.
    ///
    /// The roots are the stack as it was on entry: the thread copies the words of its
    /// stack that may be GC pointers, and collections scan that copy, never the live stack,
    /// which `f` may write (its captured locals) while they run. So a `Gc` that `f` reads
    /// out of an object, or writes into a captured local, is not a root until `f` returns:
    /// keep it reachable from a rooted object meanwhile. The copy costs one pass over the
    /// thread's stack per call (a comparison per word, and a store per word that falls in
    /// the GC heap's address range), about what one collection's scan of the stack costs.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.cache_mut().release_all();
        self.flush_barrier();
        let rec = self.rec().clone();
        let r = with_registers_spilled(move |sp| {
            rec.sp.store(sp, Ordering::Release);
            rec.copy_stack(sp);
            stopped_under_lock(&world(), &rec.state, BLOCKING);
            let r = f();
            let mut w = world();
            while w.stw {
                w = wait(w);
            }
            rec.resume();
            r
        });
        // Before anything changes the handle scopes the collector may be reading.
        self.scan_own_stack();
        r
    }

    /// Allocates an object of `kind`, `size` bytes, aligned to `align`: the tiny
    /// allocator, the span cache, or a large span. A safepoint. Aborts when out of memory.
    #[inline(always)]
    pub(crate) fn alloc_object(&self, kind: Kind, size: usize, align: usize) -> *mut u8 {
        #[cfg(feature = "profile")]
        if gomalloc::profile::sample_due(size) {
            return self.alloc_sampled(kind, size, align, size);
        }
        // Allocation goes on on this path while a cycle marks (windows are loaded black,
        // `heap::mark_free_if_marking`) and while the thread samples for the heap profile
        // (windows hold no more than the countdown allows, `heap::Sampling`); a stop or
        // flush request sends it to the slow path's safepoint.
        let flags = GC_FLAGS.load(Ordering::Relaxed);
        if flags & (STOP | FLUSH) == 0 {
            let p = self.alloc_fast(kind, size, align);
            if !p.is_null() {
                return p;
            }
        }
        self.alloc_slow(kind, size, align)
    }

    /// A slot of the tiny block or of the cached span of the size's class, or null.
    #[inline(always)]
    fn alloc_fast(&self, kind: Kind, size: usize, align: usize) -> *mut u8 {
        if size > MAX_SMALL_SIZE {
            return std::ptr::null_mut();
        }
        if kind == Kind::Noscan && size < TINY_SIZE && align <= 8 {
            self.cache_mut().tiny_fast(size, align)
        } else if let Some(class) = gcapi::small_class(size, align) {
            self.cache_mut().alloc_fast(kind, class)
        } else {
            std::ptr::null_mut()
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, kind: Kind, size: usize, align: usize) -> *mut u8 {
        #[cfg(not(feature = "profile"))]
        let sampled_class = if gomalloc::profile::rate() != 0 {
            match self.cache_mut().sample_before(kind, size, align) {
                heap::SampleStep::Sample(charged) => {
                    return self.alloc_sampled(kind, size, align, charged);
                }
                heap::SampleStep::Then(class) => Some(class),
            }
        } else {
            self.cache_mut().stop_sampling();
            None
        };
        let p = self.alloc_slow_unsampled(kind, size, align);
        #[cfg(not(feature = "profile"))]
        if let Some(class) = sampled_class {
            self.cache_mut().sample_after(class);
        }
        p
    }

    /// [`Mutator::alloc_slow`] once the heap profile's countdown is taken: the safepoint,
    /// the pacer, then a slot, a refill or a large span.
    fn alloc_slow_unsampled(&self, kind: Kind, size: usize, align: usize) -> *mut u8 {
        self.safepoint();
        if crate::pacer::should_collect() && self.st().open_borrows.get() == 0 {
            crate::collector::collect_auto(self);
            if crate::collector::MARKING_CONCURRENTLY.load(Ordering::Relaxed) {
                // Between rounds the thread looks for a stop: a collector waiting for it
                // (mark termination) waits for one round at most, not for all of them.
                let mut rounds = 0;
                while rounds < crate::pacer::MAX_ASSIST_ROUNDS
                    && handshake::requests(&GC_FLAGS) & STOP == 0
                    && crate::pacer::should_assist()
                    && crate::collector::assist(crate::pacer::ASSIST_BUDGET)
                {
                    rounds += 1;
                }
                self.safepoint();
                if crate::pacer::over_goal() && !self.in_blocking_region() {
                    // A concurrent mark that the allocation outran: wait for its end
                    // rather than let the heap pass the goal (Go makes the thread assist,
                    // and parks it when no work is left to assist with); the pacer starts
                    // the next cycle earlier.
                    crate::pacer::OUTRAN.store(true, Ordering::Relaxed);
                    let t0 = std::time::Instant::now();
                    self.wait_cycle_end();
                    crate::pacer::WAIT_NS
                        .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
            }
        }
        let c = self.cache_mut();
        let small = if size <= MAX_SMALL_SIZE {
            gcapi::small_class(size, align)
        } else {
            None
        };
        let p = match small {
            Some(_) if kind == Kind::Noscan && size < TINY_SIZE && align <= 8 => {
                c.alloc_tiny(size, align)
            }
            Some(class) => {
                let p = c.alloc_fast(kind, class);
                if p.is_null() {
                    c.refill(kind, class)
                } else {
                    p
                }
            }
            None => heap::alloc_large(kind, size, align),
        };
        if p.is_null() {
            gomalloc::report::fatal("gc: out of memory allocating", size);
        }
        if GC_FLAGS.load(Ordering::Relaxed) & crate::mutator::MARKING != 0 {
            self.mark_new(p as usize, kind, size, align);
        }
        p
    }

    /// A sampled object: as `alloc_slow`, but always the one object of a large span, which
    /// the heap profile records and whose sweep counts its free.
    #[cold]
    #[inline(never)]
    fn alloc_sampled(&self, kind: Kind, size: usize, align: usize, charged: usize) -> *mut u8 {
        self.safepoint();
        if crate::pacer::should_collect() && self.st().open_borrows.get() == 0 {
            crate::collector::collect_auto(self);
        }
        let p = heap::alloc_large(kind, size, align);
        if p.is_null() {
            gomalloc::report::fatal("gc: out of memory allocating", size);
        }
        // SAFETY: `p` is the one object of a fresh span nobody else knows of yet.
        unsafe { gomalloc::profile::record_sampled_charged(p, size, charged) };
        if GC_FLAGS.load(Ordering::Relaxed) & crate::mutator::MARKING != 0 {
            let span = gcapi::span_of(p as usize);
            let base = p as usize;
            // SAFETY: `p` is the one object of its live span, allocated just now.
            unsafe { gcapi::mark(gcapi::object_at(span, base)) };
        }
        p
    }

    /// Allocate-black: marks an object allocated while a cycle is marking.
    fn mark_new(&self, p: usize, kind: Kind, size: usize, align: usize) {
        let span = match gcapi::small_class(size, align) {
            Some(_) if kind == Kind::Noscan && size < TINY_SIZE && align <= 8 => gcapi::span_of(p),
            Some(class) => self.cache_mut().span_of_class(kind, class),
            None => gcapi::span_of(p),
        };
        // SAFETY: `span` is the live span holding `p`, a slot of it allocated just now.
        unsafe { gcapi::mark(gcapi::object_at(span, p)) };
    }

    /// Runs the finalizers queued so far on this thread and waits until the finalizer
    /// thread is idle (for tests and orderly shutdown).
    pub fn run_finalizers(&mut self) {
        crate::weak::run_pending(self);
    }
}
