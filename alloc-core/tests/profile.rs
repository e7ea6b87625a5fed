//! The heap profile's sampling and records: known allocation sites of known sizes,
//! counted as `pprof` would show them (scaled as Go's `scaleHeapSample`). Each case runs
//! in a child process (this test binary re-executed with `GOMALLOC_PROFILE_CASE`), which
//! sets the rate first, so that no other test's allocations are sampled with it. Records
//! are told apart by size, so the stacks need no frame pointers here (`run-profile.sh`
//! reads them). Run: `cargo test -p gomalloc --test profile` (the fast path without a
//! countdown) and with `--features profile` (with it).

use gomalloc::profile::{self, Record, pprof::scale_sampled};
use std::process::Command;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

/// Mean bytes between samples in these tests.
const RATE: usize = 8 << 10;
/// Site A: `A_N` objects of `A_SIZE` bytes; site B: `B_N` of `B_SIZE`. Sizes no other
/// allocation of the child has, so that a record's size names its site.
const A_SIZE: usize = 2008;
const A_N: usize = 2000;
const B_SIZE: usize = 136;
const B_N: usize = 16000;

/// Expected relative standard deviation of the estimated bytes of `n` objects of `size`:
/// each is sampled with probability `p = 1 - exp(-size/RATE)` and the estimate is the
/// number sampled over `p`, so `sd/mean = sqrt((1 - p) / (n p))`.
fn rel_sd(n: usize, size: usize) -> f64 {
    let p = 1.0 - (-(size as f64) / RATE as f64).exp();
    ((1.0 - p) / (n as f64 * p)).sqrt()
}

/// Scaled (allocated, in use) bytes of the records of objects of `size`.
fn bytes_of(recs: &[Record], size: usize) -> (f64, f64) {
    recs.iter()
        .filter(|r| r.size == size)
        .fold((0.0, 0.0), |(a, u), r| {
            (
                a + scale_sampled(r.allocs, r.size, r.charged, RATE).1,
                u + scale_sampled(r.allocs - r.frees, r.size, r.charged, RATE).1,
            )
        })
}

/// Asserts `got` is within 5 standard deviations of `want` (a false failure about once in
/// 1.7 million runs).
fn close(what: &str, got: f64, want: f64, sd: f64) {
    let err = (got - want).abs() / want;
    assert!(
        err <= 5.0 * sd,
        "{what}: {got:.0} bytes, expected {want:.0} (+-{:.0}%)",
        500.0 * sd
    );
}

/// One object of site A, in a function of its own that calls the allocation and then
/// converts its result, so that its frame is on the stack whatever the build does with the
/// iterator in `site_a` (`cargo test -p gomalloc` made that a 12-byte jump into the
/// iterator's code, which left no return address of `site_a` to find).
#[inline(never)]
fn one_a() -> Box<[u8]> {
    vec![1u8; A_SIZE].into_boxed_slice()
}

#[inline(never)]
fn site_a() -> Vec<Box<[u8]>> {
    (0..A_N).map(|_| one_a()).collect()
}

#[inline(never)]
fn site_b() -> Vec<Box<[u8]>> {
    (0..B_N)
        .map(|_| vec![2u8; B_SIZE].into_boxed_slice())
        .collect()
}

fn child(case: &str) {
    if case == "sizes" {
        return sizes();
    }
    if case == "first" {
        return first_allocation_of_a_thread();
    }
    profile::set_rate(RATE);
    match case {
        "sites" => {
            let mut a = site_a();
            let b = site_b();
            a.truncate(A_N / 2); // half of site A freed
            let recs = profile::records();
            let (a_alloc, a_inuse) = bytes_of(&recs, A_SIZE);
            let (b_alloc, b_inuse) = bytes_of(&recs, B_SIZE);
            let (sa, sb) = (rel_sd(A_N, A_SIZE), rel_sd(B_N, B_SIZE));
            close("A allocated", a_alloc, (A_N * A_SIZE) as f64, sa);
            close(
                "A in use",
                a_inuse,
                (A_N / 2 * A_SIZE) as f64,
                rel_sd(A_N / 2, A_SIZE),
            );
            close("B allocated", b_alloc, (B_N * B_SIZE) as f64, sb);
            close("B in use", b_inuse, (B_N * B_SIZE) as f64, sb);
            // The stacks pass through the allocator's frames (walked by their call-frame
            // information, this test being built without frame pointers) into the site:
            // a return address within the first 4 KiB of `one_a`'s code.
            let at = one_a as fn() -> Box<[u8]> as usize;
            for r in recs.iter().filter(|r| r.size == A_SIZE) {
                assert!(
                    r.stack.iter().any(|&f| (at..at + 4096).contains(&f)),
                    "no frame of one_a ({at:#x}) in {:#x?}",
                    r.stack
                );
            }
            drop((a, b));
            let recs = profile::records();
            assert_eq!(bytes_of(&recs, A_SIZE).1, 0.0, "A freed, still in use");
            assert_eq!(bytes_of(&recs, B_SIZE).1, 0.0, "B freed, still in use");
        }
        "threads" => {
            let threads: Vec<_> = (0..4)
                .map(|_| std::thread::spawn(|| drop(site_b())))
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            let (alloc, inuse) = bytes_of(&profile::records(), B_SIZE);
            close(
                "B allocated in 4 threads",
                alloc,
                (4 * B_N * B_SIZE) as f64,
                rel_sd(4 * B_N, B_SIZE),
            );
            assert_eq!(inuse, 0.0);
        }
        "fork" => {
            let before = bytes_of(&profile::records(), A_SIZE).0;
            assert_eq!(before, 0.0);
            // SAFETY: the child runs only this allocator's code and Rust's, then `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let a = site_a();
                let (alloc, inuse) = bytes_of(&profile::records(), A_SIZE);
                let sd = rel_sd(A_N, A_SIZE);
                let ok = ((alloc - (A_N * A_SIZE) as f64).abs() / (A_N * A_SIZE) as f64)
                    <= 5.0 * sd
                    && inuse == alloc;
                drop(a);
                // SAFETY: ends the forked child without running the parent's exit hooks.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child: {status}"
            );
            // The child's samples stay the child's.
            assert_eq!(bytes_of(&profile::records(), A_SIZE).0, 0.0);
        }
        "pairs" => {
            // Each object is freed before the next is allocated, so the fast path's slot
            // goes back to the span, not to the loan it came from: every loan still runs
            // out, and every allocation is counted.
            site_pairs();
            let (alloc, inuse) = bytes_of(&profile::records(), PAIR_SIZE);
            close(
                "pairs allocated",
                alloc,
                (PAIR_N * PAIR_SIZE) as f64,
                rel_sd(PAIR_N, PAIR_SIZE),
            );
            assert_eq!(inuse, 0.0);
        }
        #[cfg(not(feature = "profile"))]
        "loans" => {
            // Loans go back exactly: when sampling stops, and when a thread exits. Slots
            // lent and never used, or freed into a window a run of frees moved, would stay
            // counted as allocated.
            // A thread spawned and joined first, so that this thread's cache holds spans
            // of what spawning takes (cached spans count as allocated).
            std::thread::spawn(|| {}).join().unwrap();
            // Frees into spans no cache holds wait to be collected: collected first.
            gomalloc::release_memory();
            let before = gomalloc::stats().by_size;
            std::thread::spawn(|| {
                // A rate whose samples are far apart, so that loans are whole windows
                // (near a sample, every loan is repaid anyway).
                profile::set_rate(1 << 30);
                churn_classes();
                assert_lent();
                profile::set_rate(0);
                churn_classes();
                profile::set_rate(1 << 30);
                churn_classes();
                assert_lent();
            })
            .join()
            .unwrap();
            gomalloc::release_memory();
            let after = gomalloc::stats().by_size;
            for size in LOAN_SIZES {
                let class = after.iter().position(|c| c.size >= size).unwrap();
                assert_eq!(
                    after[class].objects, before[class].objects,
                    "objects of {size} bytes left allocated"
                );
            }
        }
        #[cfg(not(feature = "profile"))]
        "lent_double_free" => lent_double_free(),
        _ => panic!("unknown case {case}"),
    }
}

/// Objects of the pairs case: a size no other allocation of the child has.
const PAIR_SIZE: usize = 200;
const PAIR_N: usize = 200_000;

#[inline(never)]
fn site_pairs() {
    for i in 0..PAIR_N {
        std::hint::black_box(vec![i as u8; PAIR_SIZE]);
    }
}

/// Sizes of the loans case: a class whose spans hold two windows (112 bytes, 73 slots),
/// one of a window (176), and classes of few slots (1536, 3072, 5376). Classes that
/// nothing else in the child allocates, so that other threads' caches, whose spans
/// count as allocated, leave their counts alone.
#[cfg(not(feature = "profile"))]
const LOAN_SIZES: [usize; 5] = [100, 170, 1500, 3000, 5000];

/// Allocates in each of [`LOAN_SIZES`], keeping a third of the blocks a while and
/// freeing the rest at once, then frees everything in allocation order (runs of frees
/// that move the windows of the spans the loans came from).
#[cfg(not(feature = "profile"))]
fn churn_classes() {
    for size in LOAN_SIZES {
        let mut kept = Vec::with_capacity(20_000);
        for i in 0..60_000 {
            let b = std::hint::black_box(vec![1u8; size]);
            if i % 3 == 0 {
                kept.push(b);
            }
            if kept.len() == 20_000 {
                kept.drain(..10_000);
            }
        }
        drop(kept);
    }
}

/// Asserts that the fast path of each class of [`LOAN_SIZES`] holds a loan, after up to
/// two more allocations of each (the first may take the last slot lent, the second then
/// takes a new loan).
#[cfg(not(feature = "profile"))]
fn assert_lent() {
    let c = gomalloc::mcache::current();
    for size in LOAN_SIZES {
        let class = gomalloc::stats()
            .by_size
            .iter()
            .position(|c| c.size >= size)
            .unwrap();
        let lent = || {
            // SAFETY: `c` is this thread's cache; its spans are live records.
            let (fast, own) = unsafe { ((*c).fast_span(class), (*c).span(class)) };
            !std::ptr::eq(fast, own) && fast.window_free() != 0
        };
        let mut kept = Vec::new();
        while !lent() && kept.len() < 2 {
            kept.push(std::hint::black_box(vec![1u8; size]));
        }
        assert!(lent(), "no loan of {size}-byte slots");
    }
}

/// A slot that was freed, lent to the fast path, and then freed again: the free cannot
/// see the loan, but giving the loan back finds the slot free twice and ends the
/// process.
#[cfg(not(feature = "profile"))]
fn lent_double_free() {
    use gomalloc::mcache;
    const SIZE: usize = 48;
    // A rate whose sample never comes: loans of whole windows.
    profile::set_rate(1 << 40);
    let layout = std::alloc::Layout::from_size_align(SIZE, 8).unwrap();
    let c = mcache::current();
    let class = gomalloc::stats()
        .by_size
        .iter()
        .position(|c| c.size >= SIZE)
        .unwrap();
    // Free slots in the span's windows: 64 blocks allocated, then freed.
    let mut freed: Vec<usize> = (0..64)
        // SAFETY: a valid layout.
        .map(|_| unsafe { std::alloc::alloc(layout) } as usize)
        .collect();
    for &q in &freed {
        // SAFETY: each block was allocated just above and is freed once here.
        unsafe { std::alloc::dealloc(q as *mut u8, layout) };
    }
    let mut kept = Vec::with_capacity(1000);
    // Allocate until the fast path's loan holds one of those slots (a victim), taking
    // those that are handed out again off the list.
    let victim = loop {
        // SAFETY: `c` is this thread's cache; its fast span is a live record.
        let proxy = unsafe { (*c).fast_span(class) };
        let (base, e) = (proxy.window_base.get(), proxy.elemsize.get() as usize);
        let in_loan = |q: usize| {
            let off = q.wrapping_sub(base);
            e != 0 && off < 64 * e && proxy.window_free() >> (off / e) & 1 != 0
        };
        if let Some(&v) = freed.iter().find(|&&q| in_loan(q)) {
            break Some(v);
        }
        if kept.len() == kept.capacity() {
            break None;
        }
        // SAFETY: a valid layout.
        let q = unsafe { std::alloc::alloc(layout) };
        freed.retain(|&f| f != q as usize);
        kept.push(q);
    };
    let p = victim.expect("no freed slot was lent") as *mut u8;
    // SAFETY: not safe: the double free under test.
    unsafe { std::alloc::dealloc(p, layout) };
    // Sampling stops at the next slow path, which repays every loan: the first
    // allocation of a class this thread has not used, before the loan of `SIZE`'s
    // class hands the slot out (after that, the double free would go unnoticed, as one
    // of a slot allocated again does).
    profile::set_rate(0);
    std::hint::black_box(vec![0u8; 27_000]);
    eprintln!("the double free was not found");
}

/// One object of `size` bytes allocated by the site of the sizes case.
#[inline(never)]
fn one_sized(size: usize) -> Box<[u8]> {
    vec![3u8; size].into_boxed_slice()
}

/// Small sizes of the sizes case: 2,001 sizes in a few size classes.
const SMALL_SIZES: std::ops::RangeInclusive<usize> = 1000..=3000;
/// Large sizes of the sizes case: 1,025 sizes in a few page counts.
const LARGE_SIZES: std::ops::RangeInclusive<usize> = 40_000..=56_384;

/// One site allocating blocks of thousands of sizes, every block sampled (rate 1): it
/// has one record per charged size (a size class, or a page count), not one per size,
/// and the records sum the requested bytes exactly, as allocated and as freed. (With the
/// feature `profile`, whose fast path counts the bytes asked for, a small block is
/// charged its own size, so it has a record per size.)
///
/// The blocks are allocated by a thread of their own, so that every one is sampled: it
/// makes its cache (an allocation) while the rate is still 0, so that what it allocates
/// on the way is not sampled, and waits; the rate is then set to 1, which the thread takes
/// up at the first allocation of each size class (a refill, as its cache holds no span of
/// these classes). It then allocates the blocks into a vector made before it started.
/// Nothing else allocates while the rate is 1.
fn sizes() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let sizes: Vec<usize> = SMALL_SIZES.chain(LARGE_SIZES.step_by(16)).collect();
    let mut blocks: Vec<Box<[u8]>> = Vec::with_capacity(sizes.len());
    let classes = gomalloc::stats().by_size;
    // 0: starting, 1: the thread has its cache, 2: the rate is 1.
    let phase = AtomicU8::new(0);
    let mut blocks = std::thread::scope(|t| {
        let h = t.spawn(|| {
            std::hint::black_box(Box::new(0u64));
            phase.store(1, Ordering::Release);
            while phase.load(Ordering::Acquire) != 2 {
                std::hint::spin_loop();
            }
            for &n in &sizes {
                blocks.push(one_sized(n));
            }
            blocks
        });
        while phase.load(Ordering::Acquire) != 1 {
            std::hint::spin_loop();
        }
        profile::set_rate(1);
        phase.store(2, Ordering::Release);
        let blocks = h.join().unwrap();
        profile::set_rate(0);
        blocks
    });
    let at = one_sized as fn(usize) -> Box<[u8]> as usize;
    let ours = || -> Vec<Record> {
        profile::records()
            .into_iter()
            .filter(|r| r.stack.iter().any(|&f| (at..at + 4096).contains(&f)))
            .collect()
    };
    let charged = |n: usize| match classes.iter().find(|c| c.size >= n) {
        Some(_) if n <= 32 << 10 && cfg!(feature = "profile") => n,
        Some(c) if n <= 32 << 10 => c.size,
        _ => n.next_multiple_of(8192),
    };
    let mut want: Vec<usize> = sizes.iter().map(|&n| charged(n)).collect();
    want.sort();
    want.dedup();
    let recs = ours();
    let mut got: Vec<usize> = recs.iter().map(|r| r.charged).collect();
    got.sort();
    assert_eq!(got, want, "one record per charged size");
    if !cfg!(feature = "profile") {
        assert!(
            recs.len() < 20,
            "{} records for {} sizes",
            recs.len(),
            sizes.len()
        );
    }
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    let sum = |f: fn(&Record) -> u64| recs.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.allocs), sizes.len() as u64);
    assert_eq!(sum(|r| r.alloc_bytes), total);
    assert_eq!(sum(|r| r.free_bytes), 0);
    // Every other block freed: the records count their requested bytes out.
    let mut freed = 0u64;
    for (i, b) in blocks.iter_mut().enumerate() {
        if i % 2 == 0 {
            freed += b.len() as u64;
            *b = Box::new([]);
        }
    }
    let recs = ours();
    let sum = |f: fn(&Record) -> u64| recs.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.free_bytes), freed);
    assert_eq!(sum(|r| r.frees), sizes.len().div_ceil(2) as u64);
    drop(blocks);
}

/// A size no other allocation of the child has: the first case's block.
const FIRST_SIZE: usize = 1_000_003;

/// A thread's first allocation, which also makes the thread's cache, is sampled like any
/// other: at rate 1, the record of a block of [`FIRST_SIZE`] bytes that a new thread
/// allocates first.
fn first_allocation_of_a_thread() {
    profile::set_rate(1);
    let b = std::thread::spawn(|| vec![7u8; FIRST_SIZE].into_boxed_slice())
        .join()
        .unwrap();
    profile::set_rate(0);
    let recs = profile::records();
    let n: u64 = recs
        .iter()
        .filter(|r| r.charged == FIRST_SIZE.next_multiple_of(8192))
        .map(|r| r.alloc_bytes / FIRST_SIZE as u64)
        .sum();
    assert_eq!(n, 1, "the thread's first block was not sampled");
    drop(b);
}

/// The child's entry point; in the parent it does nothing.
#[test]
fn profile_child() {
    if let Ok(case) = std::env::var("GOMALLOC_PROFILE_CASE") {
        child(&case);
    }
}

/// Runs `profile_child` with `var` set to `value`: whether it succeeded, its stdout and
/// its stderr.
fn child_with(var: &str, value: &str) -> (bool, String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "profile_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, value)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs case `case` in a child, which must pass.
fn run(case: &str) {
    let (ok, out, err) = child_with("GOMALLOC_PROFILE_CASE", case);
    assert!(ok, "case {case}: {out}\n{err}");
}

#[test]
fn two_sites_allocated_and_in_use() {
    run("sites");
}

#[test]
fn sampling_in_threads() {
    run("threads");
}

#[test]
fn sampling_across_fork() {
    run("fork");
}

#[test]
fn pairs_are_counted() {
    run("pairs");
}

#[test]
fn a_site_of_many_sizes_has_a_record_per_charged_size() {
    run("sizes");
}

#[test]
fn the_first_allocation_of_a_thread_is_sampled() {
    run("first");
}

/// Loans exist only in the default build (`profile::lend`).
#[cfg(not(feature = "profile"))]
#[test]
fn loans_go_back_when_sampling_stops_and_at_thread_exit() {
    run("loans");
}

/// The child must die reporting the double free.
#[cfg(not(feature = "profile"))]
#[test]
fn a_double_free_of_a_lent_slot_is_reported() {
    let (ok, _, err) = child_with("GOMALLOC_PROFILE_CASE", "lent_double_free");
    assert!(!ok, "{err}");
    assert!(err.contains("gomalloc: double free of 0x"), "{err}");
}

/// A bad rate gets the warning every `GOMALLOC_*` variable gets, and sampling stays off.
#[test]
fn bad_rate_is_refused() {
    let (_, _, err) = child_with("GOMALLOC_PROFILE_RATE", "fast");
    assert!(
        err.contains("gomalloc: ignoring GOMALLOC_PROFILE_RATE=fast: expected a byte count"),
        "{err}"
    );
}
