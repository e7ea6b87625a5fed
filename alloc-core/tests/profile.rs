//! The heap profile's sampling and records: known allocation sites of known sizes,
//! counted as `pprof` would show them (scaled as Go's `scaleHeapSample`). Each case runs
//! in a child process (this test binary re-executed with `GOMALLOC_PROFILE_CASE`), which
//! sets the rate first, so that no other test's allocations are sampled with it. Records
//! are told apart by size, so the stacks need no frame pointers here (`run-profile.sh`
//! reads them). Run: `cargo test -p gomalloc --test profile` (the fast path without a
//! countdown) and with `--features profile` (with it).

use gomalloc::profile::{self, Record, pprof::scale};
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
                a + scale(r.allocs, r.size, RATE).1,
                u + scale(r.allocs - r.frees, r.size, RATE).1,
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

#[inline(never)]
fn site_a() -> Vec<Box<[u8]>> {
    (0..A_N)
        .map(|_| vec![1u8; A_SIZE].into_boxed_slice())
        .collect()
}

#[inline(never)]
fn site_b() -> Vec<Box<[u8]>> {
    (0..B_N)
        .map(|_| vec![2u8; B_SIZE].into_boxed_slice())
        .collect()
}

fn child(case: &str) {
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
            // a return address within the first 4 KiB of `site_a`'s code.
            let at = site_a as fn() -> Vec<Box<[u8]>> as usize;
            for r in recs.iter().filter(|r| r.size == A_SIZE) {
                assert!(
                    r.stack.iter().any(|&f| (at..at + 4096).contains(&f)),
                    "no frame of site_a ({at:#x}) in {:#x?}",
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
        _ => panic!("unknown case {case}"),
    }
}

/// The child's entry point; in the parent it does nothing.
#[test]
fn profile_child() {
    if let Ok(case) = std::env::var("GOMALLOC_PROFILE_CASE") {
        child(&case);
    }
}

fn run(case: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "profile_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GOMALLOC_PROFILE_CASE", case)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "case {case}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// A bad rate gets the warning every `GOMALLOC_*` variable gets, and sampling stays off.
#[test]
fn bad_rate_is_refused() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "profile_child", "--nocapture"])
        .env("GOMALLOC_PROFILE_RATE", "fast")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gomalloc: ignoring GOMALLOC_PROFILE_RATE=fast: expected a byte count"),
        "{err}"
    );
}
