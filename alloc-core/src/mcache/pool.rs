//! The cache records: the pool every thread's cache comes from and goes back to, the
//! orphan cache of threads that have none, and what a forked child does with the caches of
//! the threads that did not survive the fork.
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use super::{current, MCache, MCACHE_BYTES};
use crate::fixalloc::FixAlloc;
use crate::list::{Link, Links, List};
use crate::lock::SpinLock;
use crate::sync::{AtomicUsize, Ordering};
use core::ptr;

/// The pool's lists, through [`MCache::links`]; a record is in one of them.
pub struct InPool;
impl Link for InPool {
    type Node = MCache;
    fn links(c: &MCache) -> &Links<MCache> {
        &c.links
    }
}

/// All cache records: the active ones (owned by a live thread) and recycled ones.
pub struct Pool {
    fix: FixAlloc,
    active: List<InPool>,
    free: List<InPool>,
}

/// The cache pool. Lock order: ORPHAN -> POOL -> mcentral -> mheap.
pub static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    fix: FixAlloc::new(MCACHE_BYTES),
    active: List::new(),
    free: List::new(),
});

impl Pool {
    /// A clean cache record on the active list, or null if the OS refuses memory.
    pub fn get(&mut self) -> *mut MCache {
        let mut c = self.free.pop_front();
        if c.is_null() {
            c = self.fix.alloc().cast::<MCache>();
            if c.is_null() {
                return c;
            }
            // SAFETY: fresh storage of the right size and alignment.
            unsafe { c.write(MCache::empty()) };
        }
        // SAFETY: `c` is a valid record (fresh, or a flushed one off the free list) in no
        // list; records live for ever (fixalloc memory is never returned).
        unsafe { self.active.push_front(c) };
        c
    }

    /// Caches owned by live threads.
    pub fn nactive(&self) -> usize {
        self.active.len()
    }

    /// Moves a flushed cache from the active list to the free list.
    ///
    /// # Safety
    /// `c` is on this pool's active list and flushed; nobody uses it any more.
    pub unsafe fn put(&mut self, c: *mut MCache) {
        // SAFETY: `c` is on this pool's active list (# Safety); off it, it is in no list.
        unsafe {
            self.active.remove(c);
            self.free.push_front(c);
        }
    }
}

/// Pointer to the orphan cache record (null until first needed).
pub struct OrphanCache(*mut MCache);
// SAFETY: the record is allocator metadata; ORPHAN's lock serialises its use.
unsafe impl Send for OrphanCache {}

/// The shared cache of threads without one, taken with its lock.
pub static ORPHAN: SpinLock<OrphanCache> = SpinLock::new(OrphanCache(ptr::null_mut()));

/// Runs `f` with the orphan cache held, or returns `None` if none could be made.
pub fn with_orphan<R>(f: impl FnOnce(&MCache) -> R) -> Option<R> {
    let mut g = ORPHAN.lock();
    if g.0.is_null() {
        g.0 = POOL.lock().get();
        if g.0.is_null() {
            return None;
        }
    }
    // SAFETY: the orphan cache lives forever and the lock makes us its only user.
    Some(f(unsafe { &*g.0 }))
}

/// In a forked child: abandon the caches of the threads that did not survive the fork.
///
/// The fork copied them at whatever instruction their threads were at: a thread may have
/// been inside `malloc` or `free`, which touch the thread's own cache with no lock (a span
/// list half relinked, a remote-free bitmap half taken), or half way through its exit
/// flush.
/// Flushing such a cache in the child could hang it: shim-c's fork tests caught children
/// spinning in `MCentral::settle` on a span that the dead thread had already handed on
/// (a few forks in 30000), and a half-rotated retained list is a cycle.
/// So, like jemalloc's and mimalloc's children, the child leaves them as they are: their
/// spans stay owned by a record no thread uses (frees into them are remote frees, never
/// collected), and the record is never reused. What is lost is the free space in at most
/// [`RETAIN_TOTAL_BYTES`](super::RETAIN_TOTAL_BYTES) plus one span per class, per thread the parent had, and it is
/// memory the child shares with its parent until written. The orphan cache is used only
/// under its lock, which `fork_prepare` took, so it is whole, and it stays in use.
///
/// # Safety
/// Called once in the child, single-threaded, with every allocator lock free.
pub unsafe fn abandon_after_fork() {
    let me = current();
    let orphan = ORPHAN.lock().0;
    let mut pool = POOL.lock();
    let mut c = pool.active.front();
    while !c.is_null() {
        // SAFETY: `c` is on the active list.
        let next = unsafe { pool.active.next(c) };
        if c != me && c != orphan {
            // SAFETY: `c` is on the active list; its owner thread does not exist here, and
            // its record, in no list now, is never reused (it may be mid-update).
            unsafe { pool.active.remove(c) };
            ABANDONED.fetch_add(1, Ordering::Relaxed);
        }
        c = next;
    }
}

/// Caches abandoned in forked children ([`abandon_after_fork`]), for [`crate::stats()`].
pub static ABANDONED: AtomicUsize = AtomicUsize::new(0);
