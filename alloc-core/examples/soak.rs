//! Soak test: a multi-threaded random workload on `GoMalloc` for a set time, checking
//! every byte it owns and reporting resident memory over time (docs/SOAK.md).
//!
//!     cargo run --release -p gomalloc --example soak -- --secs 600 --threads 4
//!
//! Worker threads start and end all the time (each lives for a random number of
//! operations); they allocate (sizes from 1 byte to 4 MiB, some over-aligned, some
//! zeroed), free, realloc, and hand blocks to each other through a shared exchange, so
//! frees are remote and blocks outlive the thread that made them. The main thread forks
//! now and then; the child allocates, checks and frees on its own and exits. Every block
//! is filled with a pattern when allocated and checked in full before it is freed or
//! resized. At the end everything is freed and `gomalloc::check_heap()` runs.
//!
//! Exit status 0 and a last line `soak: OK ...` mean a clean run.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

const MIB: usize = 1 << 20;

/// A block the workload owns, filled with the pattern of `seed`.
#[derive(Clone, Copy)]
struct Block {
    addr: usize,
    layout: Layout,
    seed: u8,
}

fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8) ^ ((i >> 8) as u8).rotate_left(3)
}

impl Block {
    fn fill(&self) {
        // SAFETY: the workload owns `layout.size()` bytes at `addr`.
        let s = unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.layout.size()) };
        for (i, b) in s.iter_mut().enumerate() {
            *b = pattern(self.seed, i);
        }
    }

    /// Checks the first `len` bytes; panics naming the first bad one.
    fn check(&self, len: usize) {
        // SAFETY: the workload owns at least `len` bytes at `addr`.
        let s = unsafe { std::slice::from_raw_parts(self.addr as *const u8, len) };
        if let Some(i) = (0..len).find(|&i| s[i] != pattern(self.seed, i)) {
            panic!(
                "corrupted block {:#x} ({} bytes): byte {i} is {:#x}, expected {:#x}",
                self.addr,
                self.layout.size(),
                s[i],
                pattern(self.seed, i)
            );
        }
    }

    fn free(self) {
        self.check(self.layout.size());
        LIVE.fetch_sub(self.layout.size(), Ordering::Relaxed);
        // SAFETY: allocated with `layout`, freed once.
        unsafe { dealloc(self.addr as *mut u8, self.layout) };
    }
}

/// xorshift64*: a small, fast, seedable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A size: mostly small, sometimes up to 1 MiB, rarely up to 4 MiB.
    fn size(&mut self) -> usize {
        match self.below(1000) {
            0..=699 => 1 + self.below(256) as usize,
            700..=949 => 256 + self.below(32 << 10) as usize,
            950..=997 => (32 << 10) + self.below(MIB as u64) as usize,
            _ => MIB + self.below(3 * MIB as u64) as usize,
        }
    }
    fn layout(&mut self) -> Layout {
        let align = match self.below(100) {
            0..=89 => 8,
            90..=97 => 64,
            _ => 1 << (12 + self.below(9)), // 4 KiB .. 1 MiB
        };
        Layout::from_size_align(self.size(), align).unwrap()
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static OPS: AtomicUsize = AtomicUsize::new(0);
static THREADS: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
/// Blocks waiting to be freed (or resized) by some other thread.
static EXCHANGE: Mutex<Vec<Block>> = Mutex::new(Vec::new());
const EXCHANGE_MAX: usize = 4096;

struct Settings {
    secs: u64,
    threads: usize,
    max_live: usize,
    report_every: u64,
}

fn new_block(rng: &mut Rng, max_live: usize) -> Option<Block> {
    let layout = rng.layout();
    if LIVE.load(Ordering::Relaxed) + layout.size() > max_live {
        return None;
    }
    let zeroed = rng.below(10) == 0;
    // SAFETY: non-zero size.
    let p = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    assert!(!p.is_null(), "out of memory at {} bytes", layout.size());
    assert_eq!(p as usize % layout.align(), 0, "misaligned");
    if zeroed {
        // SAFETY: a fresh block of `layout.size()` bytes.
        let s = unsafe { std::slice::from_raw_parts(p, layout.size()) };
        assert!(
            s.iter().all(|&b| b == 0),
            "alloc_zeroed gave non-zero bytes"
        );
    }
    LIVE.fetch_add(layout.size(), Ordering::Relaxed);
    let b = Block {
        addr: p as usize,
        layout,
        seed: rng.next() as u8,
    };
    b.fill();
    Some(b)
}

fn resize(rng: &mut Rng, b: Block, max_live: usize) -> Block {
    let new_size = rng.size();
    if LIVE.load(Ordering::Relaxed) + new_size > max_live + b.layout.size() {
        return b;
    }
    b.check(b.layout.size());
    // SAFETY: `b` is live with its layout; the new size is non-zero.
    let p = unsafe { realloc(b.addr as *mut u8, b.layout, new_size) };
    assert!(!p.is_null(), "realloc to {new_size} failed");
    let nb = Block {
        addr: p as usize,
        layout: Layout::from_size_align(new_size, b.layout.align()).unwrap(),
        seed: b.seed,
    };
    nb.check(new_size.min(b.layout.size()));
    LIVE.fetch_add(new_size, Ordering::Relaxed);
    LIVE.fetch_sub(b.layout.size(), Ordering::Relaxed);
    let nb = Block {
        seed: rng.next() as u8,
        ..nb
    };
    nb.fill();
    nb
}

/// One worker's life: a random number of operations, then exit, leaving some blocks to
/// others.
fn worker(seed: u64, max_live: usize) {
    let mut rng = Rng(seed | 1);
    let mut mine: Vec<Block> = Vec::with_capacity(1024);
    let life = 20_000 + rng.below(200_000);
    for _ in 0..life {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        match rng.below(100) {
            0..=44 if mine.len() < 1000 => {
                if let Some(b) = new_block(&mut rng, max_live) {
                    mine.push(b);
                }
            }
            0..=74 if !mine.is_empty() => {
                let i = rng.below(mine.len() as u64) as usize;
                mine.swap_remove(i).free();
            }
            75..=84 if !mine.is_empty() => {
                let i = rng.below(mine.len() as u64) as usize;
                mine[i] = resize(&mut rng, mine[i], max_live);
            }
            85..=92 if !mine.is_empty() => {
                let i = rng.below(mine.len() as u64) as usize;
                let mut ex = EXCHANGE.lock().unwrap();
                if ex.len() < EXCHANGE_MAX {
                    ex.push(mine.swap_remove(i));
                }
            }
            _ => {
                // Take someone else's block: free it here, or keep it (resized).
                let b = {
                    let mut ex = EXCHANGE.lock().unwrap();
                    let n = ex.len() as u64;
                    (n > 0).then(|| ex.swap_remove(rng.below(n) as usize))
                };
                if let Some(b) = b {
                    if rng.below(2) == 0 {
                        b.free();
                    } else {
                        mine.push(resize(&mut rng, b, max_live));
                    }
                }
            }
        }
        OPS.fetch_add(1, Ordering::Relaxed);
    }
    // Half of what is left outlives this thread.
    let mut ex = EXCHANGE.lock().unwrap();
    for b in mine {
        if ex.len() < EXCHANGE_MAX && rng.below(2) == 0 {
            ex.push(b);
        } else {
            b.free();
        }
    }
}

/// In a forked child: allocate, check and free on its own, then `_exit`.
fn child_work(seed: u64) -> ! {
    let result = std::panic::catch_unwind(|| {
        let mut rng = Rng(seed | 1);
        let mut mine = Vec::new();
        for _ in 0..20_000 {
            if rng.below(2) == 0 || mine.is_empty() {
                if let Some(b) = new_block(&mut rng, usize::MAX) {
                    mine.push(b);
                }
            } else {
                let i = rng.below(mine.len() as u64) as usize;
                mine.swap_remove(i).free();
            }
        }
        mine.into_iter().for_each(Block::free);
        gomalloc::check_heap();
    });
    // SAFETY: _exit ends the child without running the parent's atexit handlers.
    unsafe { libc::_exit(if result.is_ok() { 0 } else { 1 }) }
}

fn fork_once(seed: u64) {
    // SAFETY: the child only allocates through gomalloc (whose pthread_atfork handlers
    // make that safe), touches no lock the other threads may hold, and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child_work(seed);
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "forked child failed: status {status:#x}"
    );
}

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn parse_args() -> Settings {
    let mut s = Settings {
        secs: 30,
        threads: 4,
        max_live: 256 * MIB,
        report_every: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let v = || {
            pair.get(1)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number")
        };
        match pair[0].as_str() {
            "--secs" => s.secs = v(),
            "--threads" => s.threads = v() as usize,
            "--max-live-mib" => s.max_live = v() as usize * MIB,
            "--report-every" => s.report_every = v(),
            other => panic!("unknown argument {other}; see the file's header"),
        }
    }
    if s.report_every == 0 {
        s.report_every = (s.secs / 12).max(1);
    }
    s
}

fn main() {
    let s = parse_args();
    println!(
        "soak: {} s, {} threads, live set at most {} MiB",
        s.secs,
        s.threads,
        s.max_live / MIB
    );
    let start = Instant::now();
    let mut rng = Rng(0x5eed_0f50_a4d1 ^ std::process::id() as u64);
    let mut handles: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let (mut forks, mut next_report, mut next_fork) = (0, s.report_every, 2.0);
    let (mut rss_max, mut rss_samples) = (0usize, Vec::new());
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}",
        "t(s)", "rss MiB", "live MiB", "heap MiB", "ops M", "threads", "forks"
    );
    while start.elapsed() < Duration::from_secs(s.secs) {
        // Replace finished workers.
        let mut i = 0;
        while i < handles.len() {
            if handles[i].is_finished() {
                if handles.swap_remove(i).join().is_err() {
                    eprintln!("soak: FAILED (a worker panicked)");
                    std::process::exit(1);
                }
            } else {
                i += 1;
            }
        }
        while handles.len() < s.threads {
            let (seed, max_live) = (rng.next(), s.max_live);
            THREADS.fetch_add(1, Ordering::Relaxed);
            handles.push(std::thread::spawn(move || worker(seed, max_live)));
        }
        let t = start.elapsed().as_secs_f64();
        if t >= next_fork {
            fork_once(rng.next());
            forks += 1;
            next_fork = t + 2.0;
        }
        if t >= next_report as f64 {
            let (r, st) = (rss(), gomalloc::stats());
            rss_max = rss_max.max(r);
            rss_samples.push(r);
            println!(
                "{:>6.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>6}",
                t,
                r as f64 / MIB as f64,
                LIVE.load(Ordering::Relaxed) as f64 / MIB as f64,
                st.heap_sys as f64 / MIB as f64,
                OPS.load(Ordering::Relaxed) as f64 / 1e6,
                THREADS.load(Ordering::Relaxed),
                forks
            );
            while next_report as f64 <= t {
                next_report += s.report_every;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    STOP.store(true, Ordering::Relaxed);
    for h in handles {
        if h.join().is_err() {
            eprintln!("soak: FAILED (a worker panicked)");
            std::process::exit(1);
        }
    }
    let left: Vec<Block> = std::mem::take(&mut *EXCHANGE.lock().unwrap());
    left.into_iter().for_each(Block::free);
    gomalloc::check_heap();
    let live = LIVE.load(Ordering::Relaxed);
    assert_eq!(live, 0, "bytes still accounted live");
    gomalloc::release_memory();
    let half = rss_samples.len() / 2;
    let second_half_max = rss_samples[half..].iter().max().copied().unwrap_or(0);
    println!(
        "soak: OK {} s, {:.1} M operations, {} threads started, {} forks; RSS max {:.0} MiB, \
         max in the second half {:.0} MiB, after release_memory {:.0} MiB",
        s.secs,
        OPS.load(Ordering::Relaxed) as f64 / 1e6,
        THREADS.load(Ordering::Relaxed),
        forks,
        rss_max as f64 / MIB as f64,
        second_half_max as f64 / MIB as f64,
        rss() as f64 / MIB as f64
    );
}
