//! Two allocation sites of known sizes, for the heap profile's end-to-end test
//! (`shim-c/tests/run-profile.sh`, which reads the profile with `go tool pprof`).
//!
//! `keep_big` allocates `BIG_N` blocks of `BIG_SIZE` bytes and keeps them; `churn_small`
//! allocates `SMALL_N` of `SMALL_SIZE` bytes, keeping at most `SMALL_KEEP` at a time, and
//! frees them all. The profile is written on demand with `gomalloc::profile::write` (the
//! first argument) while both are as described: `inuse_space` has keep_big first,
//! `alloc_space` churn_small:
//!
//! ```text
//! cargo build --release -p gomalloc --example profile_sites
//! GOMALLOC_PROFILE_RATE=32KiB target/release/examples/profile_sites heap.pb.gz
//! go tool pprof -top -sample_index=inuse_space heap.pb.gz
//! ```

use std::alloc::{Layout, alloc, dealloc};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

const BIG_SIZE: usize = 4096;
const BIG_N: usize = 2000;
const SMALL_SIZE: usize = 100;
const SMALL_N: usize = 200_000;
const SMALL_KEEP: usize = 20_000;

#[inline(never)]
fn keep_big(out: &mut Vec<*mut u8>) {
    let l = Layout::from_size_align(BIG_SIZE, 8).unwrap();
    for _ in 0..BIG_N {
        // SAFETY: a non-zero size.
        let p = unsafe { alloc(l) };
        out.push(black_box(p));
    }
}

#[inline(never)]
fn churn_small() {
    let l = Layout::from_size_align(SMALL_SIZE, 8).unwrap();
    let mut ring = vec![std::ptr::null_mut(); SMALL_KEEP];
    for i in 0..SMALL_N {
        let k = i % SMALL_KEEP;
        if i >= SMALL_KEEP {
            // SAFETY: allocated below with `l`, freed once.
            unsafe { dealloc(ring[k], l) };
        }
        // SAFETY: a non-zero size.
        ring[k] = black_box(unsafe { alloc(l) });
    }
    for p in ring {
        // SAFETY: allocated with `l`, freed once.
        unsafe { dealloc(p, l) };
    }
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: profile_sites PROFILE");
    let mut big = Vec::with_capacity(BIG_N);
    keep_big(&mut big);
    churn_small();
    gomalloc::profile::write(&path).expect("writing the profile");
    black_box(&big);
}
