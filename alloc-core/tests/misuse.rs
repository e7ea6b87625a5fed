//! Misuse is caught, never absorbed: each case runs in a child process (this test binary
//! re-executed with `GOMALLOC_MISUSE_CASE`), which must die of SIGABRT after printing one
//! line naming the problem.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// A 64-byte object whose slot the thread's span has left behind: allocates until the span
/// has moved to a later 64-slot window.
fn alloc_64_behind_the_window() -> usize {
    let p = gomalloc::alloc(64, 8) as usize;
    let span = p & !8191; // 64-byte objects live in one-page spans
    let window = |a: usize| (a - span) / 64 / 64;
    for _ in 0..1000 {
        let q = gomalloc::alloc(64, 8) as usize;
        if q & !8191 == span && window(q) != window(p) {
            break;
        }
    }
    p
}

/// Runs in the child: performs the misuse named by the environment variable.
#[test]
fn misuse_child() {
    let Ok(case) = std::env::var("GOMALLOC_MISUSE_CASE") else {
        return; // in the parent this test does nothing
    };
    // SAFETY: deliberately wrong; the allocator must abort before any harm is done.
    unsafe {
        match case.as_str() {
            "double_free_small" => {
                let p = gomalloc::alloc(64, 8);
                gomalloc::free(p);
                gomalloc::free(p);
            }
            "double_free_other_window" => {
                // The first object's slot is then checked in the bitmap, not the window.
                let p = alloc_64_behind_the_window();
                gomalloc::free(p as *mut u8);
                gomalloc::free(p as *mut u8);
            }
            "double_free_remote" => {
                // Another remote free between the two frees of `p`: the push of the second
                // does not see `p` at the head of the list (that check covers two frees
                // in a row only), so it is found when the owner collects remote frees.
                let p = gomalloc::alloc(64, 8) as usize;
                let q = gomalloc::alloc(64, 8) as usize;
                std::thread::spawn(move || gomalloc::free(p as *mut u8))
                    .join()
                    .unwrap();
                std::thread::spawn(move || gomalloc::free(q as *mut u8))
                    .join()
                    .unwrap();
                std::thread::spawn(move || gomalloc::free(p as *mut u8))
                    .join()
                    .unwrap();
                for _ in 0..100_000 {
                    gomalloc::alloc(64, 8);
                }
            }
            "double_free_remote_at_push" => {
                // Two frees in a row from a thread that does not own the span: the second
                // finds the slot's remote-free bit set. Nobody collects the bitmap
                // afterwards, so only the free itself can catch it.
                let p = gomalloc::alloc(64, 8) as usize;
                std::thread::spawn(move || {
                    gomalloc::free(p as *mut u8);
                    gomalloc::free(p as *mut u8);
                })
                .join()
                .unwrap();
            }
            "double_free_sized_run" => {
                // A run of frees through a retained span: the free of its first slot loads
                // the span's first window for the frees that follow, so the second free of
                // the same object is a bit already set in that window (the first tier).
                let ps: Vec<*mut u8> = (0..300).map(|_| gomalloc::alloc(64, 8)).collect();
                gomalloc::free_sized(ps[0], 64, 8);
                gomalloc::free_sized(ps[1], 64, 8);
                gomalloc::free_sized(ps[1], 64, 8);
            }
            "double_free_large" => {
                let p = gomalloc::alloc(1 << 20, 8);
                gomalloc::free(p);
                gomalloc::free(p);
            }
            "interior_small" => {
                let p = gomalloc::alloc(64, 8);
                gomalloc::free(p.add(8));
            }
            "interior_sized" => {
                // Rust's dealloc path (layout known): the object is in the current window.
                let p = gomalloc::alloc(64, 8);
                gomalloc::free_sized(p.add(8), 64, 8);
            }
            "double_free_sized" => {
                let p = gomalloc::alloc(48, 8);
                gomalloc::free_sized(p, 48, 8);
                gomalloc::free_sized(p, 48, 8);
            }
            "double_free_sized_bitmap" => {
                // The layout-aware free's second tier, bitmap side: `p` is in an older
                // window of the thread's span, and the first free makes that span the
                // class's free hint, which the second free then tries.
                let p = alloc_64_behind_the_window();
                gomalloc::free_sized(p as *mut u8, 64, 8);
                gomalloc::free_sized(p as *mut u8, 64, 8);
            }
            "double_free_sized_retained" => {
                // The second tier, window side: 512-byte spans hold 16 objects, so after
                // 17 the first span is retained with its one window loaded; the first
                // free finds it through the arena map and makes it the hint.
                let p = gomalloc::alloc(512, 8);
                for _ in 0..16 {
                    gomalloc::alloc(512, 8);
                }
                gomalloc::free_sized(p, 512, 8);
                gomalloc::free_sized(p, 512, 8);
            }
            "wrong_layout_interior" => {
                // A wrong layout sends the free to the general path, which still diagnoses.
                let p = gomalloc::alloc(64, 8);
                gomalloc::free_sized(p.add(16), 4096, 8);
            }
            "interior_large" => {
                let p = gomalloc::alloc(100_000, 8);
                gomalloc::free(p.add(4096));
            }
            "foreign" => {
                let mut x = 5u64;
                gomalloc::free(&mut x as *mut u64 as *mut u8);
            }
            "usable_size_foreign" => {
                let x = 5u64;
                gomalloc::usable_size(&x as *const u64 as *const u8);
            }
            "usable_size_after_free" => {
                let p = gomalloc::alloc(64, 8);
                gomalloc::free(p);
                gomalloc::usable_size(p);
            }
            "realloc_in_place_after_free" => {
                // 100 -> 110 bytes stays in the 112-byte class: realloc would return `p`
                // untouched without the liveness check.
                let p = gomalloc::alloc(100, 8);
                gomalloc::free(p);
                gomalloc::realloc(p, 110, 8);
            }
            other => panic!("unknown case {other}"),
        }
    }
    // Reaching this line means the misuse went unnoticed.
    std::process::exit(3);
}

fn expect_abort(case: &str, message: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "misuse_child", "--nocapture", "--test-threads=1"])
        .env("GOMALLOC_MISUSE_CASE", case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{case}: {:?} {stderr}",
        out.status
    );
    assert!(stderr.contains(message), "{case}: stderr was {stderr:?}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("gomalloc: "))
        .unwrap();
    assert!(
        line.contains("0x"),
        "{case}: the line names the address: {line}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_small() {
    expect_abort("double_free_small", "double free");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_in_another_window() {
    expect_abort("double_free_other_window", "double free");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_in_a_window_loaded_for_frees() {
    expect_abort("double_free_sized_run", "double free");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_from_other_threads() {
    expect_abort("double_free_remote", "double free");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_from_another_thread_is_caught_at_the_free() {
    expect_abort("double_free_remote_at_push", "double free of 0x");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_large() {
    expect_abort("double_free_large", "double free (or free of a pointer");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn interior_pointer_small() {
    expect_abort("interior_small", "middle of an object");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn interior_pointer_with_layout() {
    expect_abort("interior_sized", "middle of an object");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_with_layout() {
    expect_abort("double_free_sized", "double free");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_with_layout_in_an_older_window() {
    expect_abort("double_free_sized_bitmap", "double free of 0x");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn double_free_with_layout_in_a_retained_span() {
    expect_abort("double_free_sized_retained", "double free of 0x");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn interior_pointer_with_a_wrong_layout() {
    expect_abort("wrong_layout_interior", "middle of an object");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn interior_pointer_large() {
    expect_abort("interior_large", "middle of an object");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn foreign_pointer() {
    expect_abort("foreign", "not allocated by gomalloc");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn usable_size_of_foreign_pointer() {
    expect_abort("usable_size_foreign", "not allocated by gomalloc");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn usable_size_after_free() {
    expect_abort("usable_size_after_free", "use of a freed pointer");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn realloc_in_place_after_free() {
    expect_abort("realloc_in_place_after_free", "use of a freed pointer");
}
