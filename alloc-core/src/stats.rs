//! Statistics: [`stats`] returns a plain, `Copy` snapshot named after Go's
//! `runtime.MemStats`; [`print_summary`] writes it readably without allocating
//! (`GOMALLOC_STATS=1` prints it at process exit; the C shim's `malloc_stats` too).
//!
//! Counting follows Go: a span's slots count as allocated while a thread cache owns it
//! (see [`crate::mcentral::MCentral`]), so the allocation fast paths count nothing and
//! `heap_alloc` can exceed the bytes the program holds by at most one span per size class
//! per thread.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

#[cfg(all(target_os = "linux", not(miri)))]
use crate::config;
use crate::mcache::{ABANDONED, ADOPTED, FLUSHES, POOL};
use crate::mcentral::CENTRAL;
use crate::mheap::HEAP;
use crate::report::Line;
use crate::scavenge;
use crate::sizeclass::{SizeClass, PAGE_SHIFT};
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::sync::Ordering;

/// One size class (Go's `MemStats.BySize`, plus spans).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size of the class in bytes.
    pub size: usize,
    /// In-use `malloc` spans of the class.
    pub spans: usize,
    /// Allocated objects (slots of cached spans count as allocated).
    pub objects: usize,
}

/// What the background scavenger and synchronous releases did.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ScavengeStats {
    /// The background thread is running now (it exists only while it has work).
    pub running: bool,
    /// Times the background thread was started (it ends when idle, and starts again when
    /// there is memory to give back).
    pub starts: usize,
    /// Starts the system refused (no thread could be created; retried a second later).
    pub start_failures: usize,
    /// The retained-bytes goal (`usize::MAX` before the thread computed one).
    pub goal: usize,
    /// Bytes the background thread released.
    pub released: usize,
    /// Bytes released synchronously as the heap grew past its goal.
    pub released_sync: usize,
    /// CPU time the background thread spent working, in nanoseconds.
    pub work_ns: usize,
    /// Steps of background work.
    pub steps: usize,
    /// Empty spans the background thread found and returned to the page heap.
    pub reclaimed_spans: usize,
    /// CPU time spent finding them, in nanoseconds (not charged to the budget).
    pub reclaim_ns: usize,
}

/// A snapshot of the heap's statistics. Bytes unless stated otherwise; field names follow
/// Go's `runtime.MemStats` where the meaning is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes obtained from the OS and still mapped: committed heap plus metadata.
    pub sys: usize,
    /// Heap memory committed (in use, idle or released).
    pub heap_sys: usize,
    /// Bytes in in-use spans.
    pub heap_inuse: usize,
    /// Bytes in free page runs (`heap_sys - heap_inuse`).
    pub heap_idle: usize,
    /// Free bytes returned to the OS (part of `heap_idle`).
    pub heap_released: usize,
    /// Bytes of allocated objects (small objects by class size, large ones by pages).
    pub heap_alloc: usize,
    /// Allocated objects.
    pub heap_objects: usize,
    /// Heap bytes backed by memory now: `heap_sys - heap_released`.
    pub heap_retained: usize,
    /// Address space reserved for the heap.
    pub heap_reserved: usize,
    /// Bytes of allocator metadata from the OS (arena records, span records, caches).
    pub metadata_sys: usize,
    /// Heap arenas (64 MiB each).
    pub arenas: usize,
    /// Large objects live now.
    pub large_objects: usize,
    /// Bytes in large objects.
    pub large_bytes: usize,
    /// Large objects allocated since start.
    pub large_allocs: usize,
    /// Threads with a cache.
    pub active_caches: usize,
    /// Thread caches flushed (thread exits).
    pub cache_flushes: usize,
    /// Thread caches abandoned in forked children: those of the parent's other threads
    /// (`crate::mcache::abandon_after_fork`).
    pub caches_abandoned: usize,
    /// Spans a thread took back from the mcentrals by freeing into them, after its cache
    /// had given them up (`crate::mcache::adopt_for_free`).
    pub spans_adopted: usize,
    /// Bytes returned to the OS since start (background, synchronous and explicit).
    pub released_total: usize,
    /// Scavenger work.
    pub scavenge: ScavengeStats,
    /// Per size class; index 0 is unused (large objects).
    pub by_size: [ClassStats; NUM_SIZE_CLASSES],
}

/// The heap's statistics now. Takes the heap lock and the cache pool's lock briefly, reads
/// the per-class counters without locks; never allocates.
pub fn stats() -> Stats {
    let c = HEAP.lock().c;
    let active_caches = POOL.lock().nactive();
    let mut by_size = [ClassStats::default(); NUM_SIZE_CLASSES];
    let (mut heap_alloc, mut heap_objects) = (0, 0);
    for (i, b) in by_size.iter_mut().enumerate().skip(1) {
        let class = SizeClass(i as u8);
        b.size = class.size();
        let m = &CENTRAL[class.index()];
        b.spans = m.spans.load(Ordering::Relaxed);
        b.objects = m.objects.load(Ordering::Relaxed);
        heap_alloc += b.objects * b.size;
        heap_objects += b.objects;
    }
    let large_bytes = c.large_pages << PAGE_SHIFT;
    let released = c.pages_released << PAGE_SHIFT;
    Stats {
        sys: c.heap_sys + c.metadata_sys,
        heap_sys: c.heap_sys,
        heap_inuse: c.pages_inuse << PAGE_SHIFT,
        heap_idle: c.pages_free << PAGE_SHIFT,
        heap_released: released,
        heap_alloc: heap_alloc + large_bytes,
        heap_objects: heap_objects + c.large_objects,
        heap_retained: c.heap_sys - released,
        heap_reserved: c.heap_reserved,
        metadata_sys: c.metadata_sys,
        arenas: c.arenas,
        large_objects: c.large_objects,
        large_bytes,
        large_allocs: c.large_allocs,
        active_caches,
        cache_flushes: FLUSHES.load(Ordering::Relaxed),
        caches_abandoned: ABANDONED.load(Ordering::Relaxed),
        spans_adopted: ADOPTED.load(Ordering::Relaxed),
        released_total: c.released_total,
        scavenge: ScavengeStats {
            running: scavenge::running(),
            starts: scavenge::STARTS.load(Ordering::Relaxed),
            start_failures: scavenge::START_FAILURES.load(Ordering::Relaxed),
            goal: scavenge::retained_goal(),
            released: scavenge::RELEASED.load(Ordering::Relaxed),
            released_sync: c.scavenged_sync,
            work_ns: scavenge::WORK_NS.load(Ordering::Relaxed),
            steps: scavenge::STEPS.load(Ordering::Relaxed),
            reclaimed_spans: scavenge::RECLAIMED_SPANS.load(Ordering::Relaxed),
            reclaim_ns: scavenge::RECLAIM_NS.load(Ordering::Relaxed),
        },
        by_size,
    }
}

/// Writes a readable summary of [`stats`] to file descriptor `fd`, without allocating.
pub fn print_summary(fd: i32) {
    let s = stats();
    let mut l = Line::new();
    let kib = |l: &mut Line, name: &str, v: usize| {
        l.str("gomalloc: ")
            .str(name)
            .dec_padded(v >> 10, 12)
            .str(" KiB\n");
    };
    l.str("gomalloc: ---- statistics ----\n");
    kib(&mut l, "sys           ", s.sys);
    kib(&mut l, "heap_sys      ", s.heap_sys);
    kib(&mut l, "heap_inuse    ", s.heap_inuse);
    kib(&mut l, "heap_alloc    ", s.heap_alloc);
    l.flush_to(fd);
    kib(&mut l, "heap_idle     ", s.heap_idle);
    kib(&mut l, "heap_released ", s.heap_released);
    kib(&mut l, "heap_retained ", s.heap_retained);
    kib(&mut l, "metadata_sys  ", s.metadata_sys);
    l.flush_to(fd);
    kib(&mut l, "large_bytes   ", s.large_bytes);
    kib(&mut l, "released_total", s.released_total);
    l.str("gomalloc: objects ")
        .dec(s.heap_objects)
        .str(", large objects ")
        .dec(s.large_objects)
        .str(" (")
        .dec(s.large_allocs)
        .str(" allocated), arenas ")
        .dec(s.arenas)
        .str(", thread caches ")
        .dec(s.active_caches)
        .str(" (")
        .dec(s.cache_flushes)
        .str(" flushed, ")
        .dec(s.caches_abandoned)
        .str(" abandoned at fork), spans taken back by their thread ")
        .dec(s.spans_adopted)
        .str("\n");
    l.flush_to(fd);
    let sc = s.scavenge;
    l.str("gomalloc: scavenger ")
        .str(if sc.running { "running" } else { "not running" })
        .str(" (started ")
        .dec(sc.starts)
        .str(" times): released ")
        .dec(sc.released >> 10)
        .str(" KiB in the background, ")
        .dec(sc.released_sync >> 10)
        .str(" KiB synchronously, ")
        .dec(sc.work_ns / 1000)
        .str(" us of CPU in ")
        .dec(sc.steps)
        .str(" steps\n");
    l.flush_to(fd);
    l.str("gomalloc: class     size    spans      objects\n");
    l.flush_to(fd);
    for (i, b) in s.by_size.iter().enumerate() {
        if b.spans == 0 && b.objects == 0 {
            continue;
        }
        l.str("gomalloc: ")
            .dec_padded(i, 5)
            .dec_padded(b.size, 9)
            .dec_padded(b.spans, 9)
            .dec_padded(b.objects, 13)
            .str("\n");
        l.flush_to(fd);
    }
}

/// Where the summary at exit goes: stderr, or the duplicate of it that
/// [`keep_stderr_for_exit`] took.
static EXIT_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

/// Keeps a duplicate of stderr (close-on-exec) for the summary at exit, once the summary is
/// asked for: a program may close its stderr before it exits (GNU coreutils do, in their
/// `close_stdout` at exit), and `gomalloc run --stats -- ls` then printed nothing.
pub(crate) fn keep_stderr_for_exit() {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        use core::sync::atomic::Ordering::Relaxed;
        if EXIT_FD.load(Relaxed) != 2 {
            return;
        }
        // SAFETY: duplicating a descriptor touches no memory; a failure leaves stderr.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if fd >= 0 && EXIT_FD.compare_exchange(2, fd, Relaxed, Relaxed).is_err() {
            // SAFETY: `fd` is ours, just made, and not published.
            unsafe { libc::close(fd) };
        }
    }
}

/// Runs at process exit (from `.fini_array`, so nothing is registered with `atexit`, which
/// may allocate) and prints the summary if `GOMALLOC_STATS` asked for it.
#[cfg(all(target_os = "linux", not(miri)))]
extern "C" fn at_exit() {
    if config::stats_at_exit() {
        print_summary(EXIT_FD.load(core::sync::atomic::Ordering::Relaxed));
    }
    crate::profile::at_exit();
}

/// The descriptor the exit reports go to: stderr, or the close-on-exec duplicate of it
/// taken at start-up when one was asked for.
pub(crate) fn exit_fd() -> i32 {
    EXIT_FD.load(core::sync::atomic::Ordering::Relaxed)
}

#[cfg(all(target_os = "linux", not(miri)))]
#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sizes_and_totals_are_consistent() {
        let s = stats();
        assert_eq!(s.by_size[1].size, 8);
        assert_eq!(s.by_size[NUM_SIZE_CLASSES - 1].size, 32768);
        assert_eq!(s.heap_sys, s.heap_inuse + s.heap_idle);
        assert!(s.heap_released <= s.heap_idle);
        assert_eq!(s.heap_retained, s.heap_sys - s.heap_released);
    }
}
