//! Shared pieces of gomalloc's fuzz targets (docs/FUZZING.md):
//!
//! * [`Model`]: the live blocks, each with its size, alignment and fill pattern, checked
//!   for alignment, overlap, usable size and contents;
//! * [`Helpers`]: helper threads that run allocator calls on their own thread caches, so
//!   blocks move between caches and frees are remote; they are replaced now and then, so
//!   thread exit (cache flush) happens under the fuzzer too;
//! * [`count_actions`]: the running total of actions, printed every million;
//! * [`c_layer`]: the C entry points of the shim (`shim-c`), called by Rust path.
//!
//! The fuzzer process's own global allocator is the system one: the fuzzed heap is reached
//! only through `gomalloc::*` calls.

pub mod c_layer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

/// A live block of the model.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Address.
    pub addr: usize,
    /// Bytes asked for.
    pub size: usize,
    /// Alignment asked for.
    pub align: usize,
    /// Pattern seed of its contents.
    pub seed: u8,
}

/// Byte `i` of a block filled with `seed`.
#[inline]
pub fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8) ^ ((i >> 8) as u8).rotate_left(3)
}

/// The offsets of a block of `size` bytes that are filled and checked: every byte up to
/// 4 KiB, then the first and last KiB and one byte per 4 KiB page (multi-MiB blocks would
/// otherwise dominate the run time).
pub fn sample(size: usize, mut f: impl FnMut(usize)) {
    if size <= 4096 {
        (0..size).for_each(f);
        return;
    }
    (0..1024).for_each(&mut f);
    (1024..size - 1024).step_by(4093).for_each(&mut f);
    (size - 1024..size).for_each(f);
}

/// Writes the pattern of `seed` into the sampled bytes of `addr..addr+size`.
///
/// # Safety
/// The caller owns the block.
pub unsafe fn fill(addr: usize, size: usize, seed: u8) {
    // SAFETY: the caller owns the block's `size` bytes (# Safety); every offset is below
    // `size`.
    sample(size, |i| unsafe {
        *((addr + i) as *mut u8) = pattern(seed, i)
    });
}

/// Checks the sampled bytes of a block of `size` bytes at `addr` against the pattern of
/// `seed` (or zero for `None`), up to `len` bytes (`len < size` after a shrinking realloc).
///
/// # Safety
/// The caller owns `len.min(size)` bytes at `addr`.
pub unsafe fn verify_prefix(addr: usize, size: usize, len: usize, seed: Option<u8>, what: &str) {
    sample(size, |i| {
        if i >= len {
            return;
        }
        // SAFETY: `i < len.min(size)`, and the caller owns that many bytes at `addr`
        // (# Safety).
        let got = unsafe { *((addr + i) as *const u8) };
        let want = seed.map_or(0, |s| pattern(s, i));
        assert_eq!(
            got, want,
            "{what}: byte {i} of block {addr:#x} ({size} bytes)"
        );
    });
}

/// Checks the sampled bytes of the `size`-byte block at `addr` (see [`verify_prefix`]).
///
/// # Safety
/// The caller owns `size` bytes at `addr`.
pub unsafe fn verify(addr: usize, size: usize, seed: Option<u8>, what: &str) {
    // SAFETY: the caller owns `size` bytes at `addr` (# Safety), which is
    // `len.min(size)` for `len == size`.
    unsafe { verify_prefix(addr, size, size, seed, what) }
}

/// The live blocks, by index (actions name them by index modulo the count) and by
/// address (to check that no two overlap).
#[derive(Default)]
pub struct Model {
    /// Live blocks in allocation order.
    pub blocks: Vec<Block>,
    by_addr: BTreeMap<usize, usize>,
    /// Bytes asked for by the live blocks.
    pub live_bytes: usize,
}

impl Model {
    /// Checks a block fresh from the allocator (alignment, usable size, no overlap with
    /// any live block) and adds it.
    pub fn add(&mut self, b: Block) {
        assert_ne!(b.addr, 0);
        assert_eq!(b.addr % b.align, 0, "misaligned {b:?}");
        assert!(gomalloc::owns(b.addr as *const u8), "not owned: {b:?}");
        // SAFETY: a live gomalloc block.
        let usable = unsafe { gomalloc::usable_size(b.addr as *const u8) };
        assert!(usable >= b.size, "usable {usable} < size in {b:?}");
        let end = b.addr + b.size.max(1);
        if let Some((&a, &e)) = self.by_addr.range(..end).next_back() {
            assert!(e <= b.addr, "{b:?} overlaps the block at {a:#x}..{e:#x}");
        }
        self.by_addr.insert(b.addr, end);
        self.live_bytes += b.size;
        self.blocks.push(b);
    }

    /// Removes the block at index `i` (modulo the count) and returns it.
    pub fn take(&mut self, i: usize) -> Option<Block> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.blocks.swap_remove(i % self.blocks.len());
        self.by_addr.remove(&b.addr);
        self.live_bytes -= b.size;
        Some(b)
    }
}

/// A job for a helper thread: runs there, returns an address (or anything as `usize`).
pub type Job = Box<dyn FnOnce() -> usize + Send>;

struct Helper {
    jobs: Sender<Job>,
    results: Receiver<usize>,
    thread: JoinHandle<()>,
}

/// Helper threads, each with its own gomalloc thread cache.
pub struct Helpers {
    helpers: Vec<Helper>,
}

impl Helpers {
    /// Starts `n` helper threads.
    pub fn new(n: usize) -> Helpers {
        let helpers = (0..n)
            .map(|_| {
                let (jobs, job_rx) = channel::<Job>();
                let (res_tx, results) = channel();
                let thread = std::thread::spawn(move || {
                    for job in job_rx {
                        if res_tx.send(job()).is_err() {
                            break;
                        }
                    }
                });
                Helper {
                    jobs,
                    results,
                    thread,
                }
            })
            .collect();
        Helpers { helpers }
    }

    /// Runs `f` on thread `t`: 0 is the calling thread, `1..=n` the helpers.
    pub fn run(&self, t: usize, f: impl FnOnce() -> usize + Send + 'static) -> usize {
        match t.checked_sub(1).and_then(|i| self.helpers.get(i)) {
            None => f(),
            Some(h) => {
                h.jobs.send(Box::new(f)).unwrap();
                h.results.recv().unwrap()
            }
        }
    }

    /// Stops the helpers and waits for them: their caches are flushed as they exit.
    pub fn join(self) {
        for h in self.helpers {
            drop(h.jobs);
            h.thread.join().unwrap();
        }
    }
}

static ACTIONS: AtomicU64 = AtomicU64::new(0);

extern "C" fn print_total() {
    eprintln!("actions in total: {}", ACTIONS.load(Ordering::Relaxed));
}

/// Adds `n` actions to the running total, printing it at each million and at exit.
pub fn count_actions(target: &str, n: u64) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: `print_total` is an `extern "C" fn()` that stays valid until exit.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(print_total);
    });
    let before = ACTIONS.fetch_add(n, Ordering::Relaxed);
    if (before + n) / 1_000_000 != before / 1_000_000 {
        eprintln!("{target}: {} actions", before + n);
    }
    // A long run stops by itself once it has done what it was asked to
    // (scripts/fuzz-long.sh): GOMALLOC_FUZZ_ACTIONS=10000000.
    static STOP_AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let stop = *STOP_AT.get_or_init(|| {
        std::env::var("GOMALLOC_FUZZ_ACTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    });
    if before + n >= stop {
        // `_exit`, not `exit`: libFuzzer's exit handler would report a target that calls
        // `exit` as a crash.
        print_total();
        // SAFETY: ends the process at once; nothing is left to flush.
        unsafe { libc::_exit(0) };
    }
}
