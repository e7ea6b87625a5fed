//! Process-wide set-up, done once, lazily, from the first slow-path allocation: the
//! pthread key whose destructor flushes a thread's cache, and the `pthread_atfork`
//! handlers that make `fork` safe (they take every allocator lock: orphan cache, cache
//! pool, mcentrals, page heap, then the heap profile's records with feature `profile`).
//!
//! Both calls may allocate (glibc's `pthread_atfork` grows a list with `malloc`). While
//! set-up is in progress every allocation, including re-entrant ones from this thread,
//! goes through the orphan cache, so nothing waits on it.
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use crate::mcache::{self, MCache, ORPHAN, POOL};
use crate::mcentral::CENTRAL;
use crate::mheap::HEAP;
use crate::sync::{AtomicU8, Ordering};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

static INIT: AtomicU8 = AtomicU8::new(UNINIT);
static mut KEY: libc::pthread_key_t = 0;

/// Runs the one-time set-up if nobody has; true once it is complete.
#[inline]
pub fn ensure_init() -> bool {
    match INIT.load(Ordering::Acquire) {
        READY => true,
        RUNNING => false,
        _ => init_slow(),
    }
}

#[cold]
fn init_slow() -> bool {
    if INIT
        .compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return INIT.load(Ordering::Acquire) == READY;
    }
    // SAFETY: KEY is written once, here, before READY is published; the handlers are
    // `extern "C"` functions with the right signatures.
    unsafe {
        let key = &raw mut KEY;
        if libc::pthread_key_create(key, Some(on_thread_exit)) != 0 {
            crate::report::fatal("cannot create the thread-exit key; error", 0);
        }
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    crate::config::read_env();
    crate::cpu::detect();
    crate::mheap::HEAP
        .lock()
        .set_release_policy(&crate::scavenge::POLICY);
    INIT.store(READY, Ordering::Release);
    true
}

/// Attaches `c` to the calling thread so it is flushed when the thread exits.
pub fn register_thread(c: *mut MCache) {
    // SAFETY: KEY was created before READY was published (ensure_init returned true).
    // pthread_setspecific may calloc; this thread is INITIALIZING, so that allocation
    // uses the orphan cache.
    unsafe {
        libc::pthread_setspecific(KEY, c.cast());
    }
}

extern "C" fn on_thread_exit(c: *mut libc::c_void) {
    // SAFETY: the key's value is the exiting thread's own cache (set by register_thread).
    unsafe { mcache::thread_exit(c.cast()) }
}

/// Takes every allocator lock, in lock order, so the fork happens with none half-held.
extern "C" fn fork_prepare() {
    ORPHAN.raw_lock();
    POOL.raw_lock();
    for c in CENTRAL.iter() {
        c.partial.raw_lock();
    }
    HEAP.raw_lock();
    crate::profile::bucket::TABLE.raw_lock();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks on this thread.
    unsafe { unlock_all() }
}

extern "C" fn fork_child() {
    // SAFETY: the child's only thread is the one that took the locks in fork_prepare; after
    // unlocking, it abandons the caches of the threads that did not survive.
    unsafe {
        unlock_all();
        mcache::abandon_after_fork();
        crate::scavenge::after_fork_child();
    }
}

/// # Safety
/// The calling thread holds every allocator lock (taken by `fork_prepare`).
unsafe fn unlock_all() {
    // SAFETY: this thread took every allocator lock in `fork_prepare` (# Safety).
    unsafe {
        crate::profile::bucket::TABLE.raw_unlock();
        HEAP.raw_unlock();
        for c in CENTRAL.iter().rev() {
            c.partial.raw_unlock();
        }
        POOL.raw_unlock();
        ORPHAN.raw_unlock();
    }
}
