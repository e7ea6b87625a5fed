//! The hardening options catch what they promise. Each case runs in a child process (this
//! test binary re-executed with `GOMALLOC_HARDEN_CASE`) that must die of the expected
//! signal with the expected message. Most tests here need their feature; run them with
//! `cargo test -p gomalloc --release --features check,check-heap,poison,guard-pages`.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Runs in the child: performs the bad access named by the environment variable.
#[test]
fn harden_child() {
    let Ok(case) = std::env::var("GOMALLOC_HARDEN_CASE") else {
        return; // in the parent this test does nothing
    };
    // SAFETY: deliberately wrong; the hardening must stop the process.
    unsafe {
        match case.as_str() {
            "overflow_large" => {
                let p = gomalloc::alloc(100_000, 8);
                let usable = gomalloc::usable_size(p);
                assert!(usable >= 100_000);
                p.add(usable - 1).write_volatile(1); // the last byte is fine
                eprintln!("about to overflow");
                p.add(usable).write_volatile(1); // one past: the guard page
            }
            "overflow_after_realloc" => {
                let p = gomalloc::alloc(300_000, 8);
                let q = gomalloc::realloc(p, 100_000, 8); // shrinks in place, guard moves
                let usable = gomalloc::usable_size(q);
                eprintln!("about to overflow");
                q.add(usable).write_volatile(1);
            }
            "write_after_free" => {
                let p = gomalloc::alloc(48, 8);
                gomalloc::free(p);
                p.add(20).write_volatile(7);
                for _ in 0..10_000 {
                    if gomalloc::alloc(48, 8) == p {
                        break;
                    }
                }
            }
            "write_after_remote_free" => {
                let p = gomalloc::alloc(48, 8) as usize;
                std::thread::spawn(move || gomalloc::free(p as *mut u8))
                    .join()
                    .unwrap();
                (p as *mut u8).add(30).write_volatile(7);
                // The slot's span, nearly full, waits in this thread's retained spans
                // until their budget overflows and sends it to its mcentral, whose
                // partial spans a later refill takes up: allocate past the budget.
                for _ in 0..3 * gomalloc::mcache::RETAIN_TOTAL_BYTES / 48 {
                    gomalloc::alloc(48, 8);
                }
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::process::exit(3); // the bad access went unnoticed
}

fn run_child(case: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "harden_child", "--nocapture", "--test-threads=1"])
        .env("GOMALLOC_HARDEN_CASE", case)
        .output()
        .unwrap();
    (
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn expect_abort(case: &str, message: &str) {
    let (sig, stderr) = run_child(case);
    assert_eq!(sig, Some(libc::SIGABRT), "{case}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("gomalloc: "))
        .unwrap_or_else(|| panic!("{case}: no gomalloc line in {stderr:?}"));
    assert!(line.contains(message), "{case}: {line}");
    assert!(
        line.contains("0x"),
        "{case}: the line names the address: {line}"
    );
}

fn expect_segv(case: &str) {
    let (sig, stderr) = run_child(case);
    assert_eq!(sig, Some(libc::SIGSEGV), "{case}: {stderr}");
    assert!(
        stderr.contains("about to overflow"),
        "{case}: it died at the overflow, not before: {stderr}"
    );
}

#[cfg(feature = "guard-pages")]
#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn overflow_past_a_large_object_faults() {
    expect_segv("overflow_large");
}

#[cfg(feature = "guard-pages")]
#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn guard_moves_when_a_large_object_shrinks_in_place() {
    expect_segv("overflow_after_realloc");
}

/// A heap overflow into objects freed by another thread finds no allocator metadata
/// there: remote frees are bits beside the heap, not links in the dead objects. So
/// rewriting their first words (with zeros, or the address of a live object, as an
/// overflow rewriting a free-list link to have that object handed out twice would) changes
/// nothing the allocator reads. (With `poison` the write is itself reported as a write
/// after free: `write_after_remote_free_is_reported_at_reuse`.)
#[cfg(not(feature = "poison"))]
#[test]
fn overflow_into_remotely_freed_objects_redirects_nothing() {
    // A span's worth of objects; two of them freed by another thread, one kept live.
    let objs: Vec<usize> = (0..128).map(|_| gomalloc::alloc(64, 8) as usize).collect();
    let (a, b, live) = (objs[10], objs[11], objs[12]);
    std::thread::spawn(move || {
        // SAFETY: live objects of this heap, freed once.
        unsafe {
            gomalloc::free(a as *mut u8);
            gomalloc::free(b as *mut u8);
        }
    })
    .join()
    .unwrap();
    // SAFETY: deliberately writing into dead objects (an overflow from their neighbours);
    // their memory stays mapped.
    unsafe {
        (a as *mut usize).write_volatile(0);
        (b as *mut usize).write_volatile(live);
    }
    // Free most of the rest here, so the spans are worth allocating from again and their
    // remote frees are collected and reused.
    for &p in &objs[20..] {
        // SAFETY: live objects, freed once.
        unsafe { gomalloc::free(p as *mut u8) };
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let p = gomalloc::alloc(64, 8) as usize;
        assert_ne!(p, live, "a live object was handed out again");
        assert!(seen.insert(p), "{p:#x} handed out twice");
    }
    // SAFETY: `live` is still a live object.
    assert_eq!(unsafe { gomalloc::usable_size(live as *const u8) }, 64);
}

#[cfg(feature = "poison")]
#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn write_after_free_is_reported_at_reuse() {
    expect_abort("write_after_free", "write after free");
}

#[cfg(feature = "poison")]
#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn write_after_remote_free_is_reported_at_reuse() {
    expect_abort("write_after_remote_free", "write after free");
}

#[cfg(feature = "poison")]
#[test]
fn calloc_still_reads_zero_over_poison() {
    for size in [8usize, 100, 5000, 40_000] {
        let p = gomalloc::alloc(size, 8);
        // SAFETY: fresh block of `size` bytes, freed once.
        unsafe { gomalloc::free(p) };
        let q = gomalloc::alloc_zeroed(size, 8);
        // SAFETY: fresh block of `size` bytes.
        assert!((0..size).all(|i| unsafe { *q.add(i) } == 0), "size {size}");
        // SAFETY: live block.
        unsafe { gomalloc::free(q) };
    }
}

#[cfg(feature = "check-heap")]
#[test]
fn whole_heap_check_runs_on_slow_paths() {
    // Under Miri, where a whole-heap check takes seconds, 100 objects (of 16 to 3,679
    // bytes: the first of each size class is a refill, which runs the check).
    const N: usize = if cfg!(miri) { 100 } else { 2000 };
    gomalloc::check::set_heap_check_interval(1);
    let before = gomalloc::check::heap_checks();
    let mut v = Vec::new();
    for i in 0..N {
        v.push(gomalloc::alloc(16 + (i * 37) % 40_000, 8) as usize);
    }
    for p in v {
        // SAFETY: each block freed once.
        unsafe { gomalloc::free(p as *mut u8) };
    }
    gomalloc::check::set_heap_check_interval(gomalloc::check::DEFAULT_HEAP_CHECK_INTERVAL);
    assert!(
        gomalloc::check::heap_checks() > before + N / 20,
        "large allocations and refills each ran the check"
    );
}
