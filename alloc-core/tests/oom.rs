//! Out of memory: under `ulimit -v` (`RLIMIT_AS`: address space) and under a data limit
//! (`RLIMIT_DATA`: writable private memory, which makes the commit `mprotect` fail),
//! `GoMalloc` returns null, so Rust reports allocation failure (`try_reserve` gives an
//! error, `Vec` ends in `handle_alloc_error`), the heap stays consistent, and allocations
//! succeed again once memory was freed. Each case runs in a child process (this test binary
//! re-executed with `GOMALLOC_OOM_CASE`), since the limits are per process.

use std::alloc::{Layout, alloc, dealloc};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

const MIB: usize = 1 << 20;

/// A field of `/proc/self/status` in bytes (`VmSize`, `VmData`).
fn status_bytes(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

fn set_limit(resource: libc::__rlimit_resource_t, bytes: usize) {
    let r = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(resource, &r) }, 0);
}

/// Allocates blocks of `size` bytes (touching one byte each) into `held` until the
/// allocator returns null; returns how many it got.
fn until_null(size: usize, align: usize, held: &mut Vec<(usize, Layout)>) -> usize {
    let layout = Layout::from_size_align(size, align).unwrap();
    let mut n = 0;
    while held.len() < held.capacity() {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return n;
        }
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write(1) };
        held.push((p as usize, layout));
        n += 1;
    }
    panic!("{size}-byte blocks never ran out ({n} of them)");
}

fn free_all(held: &mut Vec<(usize, Layout)>) {
    for (p, l) in held.drain(..) {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { dealloc(p as *mut u8, l) };
    }
}

/// The child's work once its limit is set: every allocation that cannot fit returns null,
/// none crashes, the heap checks clean after each phase, and after freeing, the memory
/// is usable again.
fn exhaust_and_recover() {
    // The checked build's whole-heap walk would run thousands of times here.
    gomalloc::check::set_heap_check_interval(4096);
    // Room for the pointers, reserved before memory runs out.
    let mut held: Vec<(usize, Layout)> = Vec::with_capacity(1 << 21);
    // Impossible and huge requests: null / Err, at once.
    for size in [
        1usize << 40,
        1 << 46,
        isize::MAX as usize - 4096,
        usize::MAX / 2,
    ] {
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve(size).is_err(), "try_reserve({size})");
        if let Ok(l) = Layout::from_size_align(size, 8) {
            // SAFETY: non-zero size. (black_box: an allocation whose result is only
            // compared with null may be optimised away and assumed to succeed.)
            let p = std::hint::black_box(unsafe { alloc(l) });
            assert!(p.is_null(), "alloc({size})");
        }
    }
    let l = Layout::from_size_align(MIB, 1 << 30).unwrap();
    // SAFETY: non-zero size. A 1 GiB alignment needs 1 GiB of address space.
    let p = std::hint::black_box(unsafe { alloc(l) });
    if !p.is_null() {
        // SAFETY: allocated just above.
        unsafe { dealloc(p, l) };
    }
    gomalloc::check_heap();
    let mut report = String::new();
    for (size, align) in [
        (MIB, 8),
        (64 << 10, 8),
        (1000, 8),
        (4 << 20, 1 << 20),
        (2048, 8),
    ] {
        let got = until_null(size, align, &mut held);
        assert!(got > 0, "no {size}-byte block at all");
        gomalloc::check_heap();
        // Out of memory now: bigger requests fail as well, cleanly.
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve(256 * MIB).is_err());
        free_all(&mut held);
        gomalloc::release_memory();
        gomalloc::check_heap();
        // Memory is back: most of it can be allocated again.
        let again = until_null(size, align, &mut held);
        assert!(
            again >= got * 9 / 10,
            "{size}-byte blocks: {got} before, only {again} after freeing"
        );
        free_all(&mut held);
        gomalloc::release_memory();
        gomalloc::check_heap();
        report += &format!(" {size}B:{got}/{again}");
    }
    println!("recovered:{report}");
}

/// Runs in the child: sets the limit named by the environment variable, then works.
#[test]
fn oom_child() {
    let Ok(case) = std::env::var("GOMALLOC_OOM_CASE") else {
        return; // in the parent this test does nothing
    };
    match case.as_str() {
        "address_space" => {
            set_limit(libc::RLIMIT_AS, status_bytes("VmSize:") + 768 * MIB);
            exhaust_and_recover();
        }
        "data" => {
            set_limit(libc::RLIMIT_DATA, status_bytes("VmData:") + 384 * MIB);
            exhaust_and_recover();
        }
        "vec_abort" => {
            set_limit(libc::RLIMIT_AS, status_bytes("VmSize:") + 256 * MIB);
            let v = vec![7u8; 1 << 30];
            println!("unreachable: {}", v[12345]);
        }
        other => panic!("unknown case {other}"),
    }
    std::process::exit(0);
}

fn child(case: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "oom_child", "--nocapture", "--test-threads=1"])
        .env("GOMALLOC_OOM_CASE", case)
        .env("GOMALLOC_SCAVENGE", "off")
        .output()
        .unwrap()
}

fn expect_recovery(case: &str) {
    let out = child(case);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{case}: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("recovered:"), "{case}: {stdout}");
    let line = stdout
        .split("recovered:")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    eprintln!("{case}: blocks before / after freeing:{line}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "sets RLIMIT_AS in a child process: Miri can neither spawn processes nor limit its memory"
)]
fn null_under_ulimit_v_and_recovery() {
    expect_recovery("address_space");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "sets RLIMIT_DATA in a child process: Miri can neither spawn processes nor limit its memory"
)]
#[cfg_attr(
    feature = "guard-pages",
    ignore = "at the data limit a freed block's guard page cannot be made writable again, \
              so the block is not reused (docs/HARDENING.md)"
)]
fn null_under_data_limit_and_recovery() {
    expect_recovery("data");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "sets RLIMIT_AS in a child process: Miri can neither spawn processes nor limit its memory"
)]
fn vec_reports_handle_alloc_error() {
    let out = child("vec_abort");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("memory allocation of 1073741824 bytes failed"),
        "Rust's handle_alloc_error message: {stderr}"
    );
}
