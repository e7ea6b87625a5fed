//! Allocation loops for instruction counts under callgrind (docs/HARDENING.md):
//!
//!     pair_cost local64 N    N malloc/free pairs of 64 bytes on one thread (fast paths)
//!     pair_cost large N      N malloc/free pairs of 100,000 bytes (page heap, guard pages)
//!     pair_cost remote N     N 64-byte objects allocated here, freed by another thread
//!                            (remote-free bitmap), then allocated again (collection)
//!
//! `scripts/hardening-cost.sh` runs each with two values of N under callgrind and divides
//! the difference, so start-up costs cancel out.

use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("local64");
    let n: usize = args
        .get(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    match mode {
        "local64" => {
            for _ in 0..n {
                let p = black_box(gomalloc::alloc(64, 8));
                // SAFETY: a live block, freed once.
                unsafe { gomalloc::free(p) };
            }
        }
        "large" => {
            for _ in 0..n {
                let p = black_box(gomalloc::alloc(100_000, 8));
                // SAFETY: a live block, freed once.
                unsafe { gomalloc::free(p) };
            }
        }
        "remote" => {
            const BATCH: usize = 4096;
            let mut done = 0;
            while done < n {
                let batch: Vec<usize> = (0..BATCH)
                    .map(|_| black_box(gomalloc::alloc(64, 8)) as usize)
                    .collect();
                std::thread::spawn(move || {
                    for p in batch {
                        // SAFETY: live blocks handed over, each freed once.
                        unsafe { gomalloc::free(p as *mut u8) };
                    }
                })
                .join()
                .unwrap();
                done += BATCH;
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
