//! Integration tests whose test binary runs on `GoMalloc` as its global allocator: every
//! allocation of the test harness, std and the tests themselves goes through gomalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

fn fill(p: *mut u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: the caller owns `n` bytes at `p`.
        unsafe { *p.add(i) = seed.wrapping_add(i as u8) };
    }
}

fn check(p: *const u8, n: usize, seed: u8) -> bool {
    // SAFETY: the caller owns `n` bytes at `p`.
    (0..n).all(|i| unsafe { *p.add(i) } == seed.wrapping_add(i as u8))
}

#[test]
fn every_small_size_and_alignment() {
    let mut live = Vec::new();
    for size in (0..=32768usize).step_by(97).chain([0, 1, 8, 16, 24, 32768]) {
        for align in [1usize, 8, 16, 64, 4096, 8192] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: valid layout.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: p is live.
            assert!(unsafe { gomalloc::usable_size(p) } >= size);
            fill(p, size, size as u8);
            live.push((p, l));
        }
    }
    for &(p, l) in &live {
        assert!(check(p, l.size(), l.size() as u8));
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
    gomalloc::check_heap();
}

#[test]
fn cross_thread_frees() {
    // Each producer allocates; a consumer on another thread checks and frees.
    const N: usize = 50_000;
    let (tx, rx) = mpsc::sync_channel::<(usize, usize)>(1024);
    let consumer = thread::spawn(move || {
        let mut n = 0;
        for (addr, size) in rx {
            let p = addr as *mut u8;
            assert!(check(p, size, size as u8));
            // SAFETY: the producer handed the block over.
            unsafe { gomalloc::free(p) };
            n += 1;
        }
        n
    });
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..N {
                    let size = (i * 31 + t * 7) % 3000 + 1;
                    let p = gomalloc::alloc(size, 8);
                    fill(p, size, size as u8);
                    tx.send((p as usize, size)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 3 * N);
    gomalloc::check_heap();
}

#[test]
fn ping_pong_between_threads() {
    // Two threads allocate and free each other's objects in turns.
    let (a_tx, a_rx) = mpsc::channel::<Vec<usize>>();
    let (b_tx, b_rx) = mpsc::channel::<Vec<usize>>();
    let a = thread::spawn(move || {
        for round in 0..200 {
            let batch: Vec<usize> = (0..500)
                .map(|i| gomalloc::alloc(16 + (i + round) % 200, 8) as usize)
                .collect();
            a_tx.send(batch).unwrap();
            for p in b_rx.recv().unwrap() {
                // SAFETY: the other thread handed these over.
                unsafe { gomalloc::free(p as *mut u8) };
            }
        }
    });
    let b = thread::spawn(move || {
        for round in 0..200 {
            let batch: Vec<usize> = (0..500)
                .map(|i| gomalloc::alloc(16 + (i * 3 + round) % 200, 8) as usize)
                .collect();
            b_tx.send(batch).unwrap();
            for p in a_rx.recv().unwrap() {
                // SAFETY: the other thread handed these over.
                unsafe { gomalloc::free(p as *mut u8) };
            }
        }
    });
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn short_lived_threads_whose_allocations_outlive_them() {
    let mut kept = Vec::new();
    for round in 0..40 {
        let handles: Vec<_> = (0..50)
            .map(|t| {
                thread::spawn(move || {
                    let v: Vec<Box<[u8]>> = (0..20)
                        .map(|i| vec![(t + i + round) as u8; 8 + i * 40].into_boxed_slice())
                        .collect();
                    v
                })
            })
            .collect();
        for h in handles {
            kept.push(h.join().unwrap());
        }
        // Free half of what dead threads left behind, from this thread.
        if round % 2 == 1 {
            kept.drain(..kept.len() / 2);
        }
    }
    for v in &kept {
        for b in v {
            let x = b[0];
            assert!(b.iter().all(|&y| y == x));
        }
    }
    drop(kept);
    gomalloc::check_heap();
}

#[test]
fn large_and_huge_blocks() {
    for &size in &[32769usize, 100_000, 1 << 20, 5 << 20, 64 << 20, 150 << 20] {
        let p = gomalloc::alloc(size, 8);
        assert!(!p.is_null(), "{size}");
        assert_eq!(p as usize % 8192, 0);
        // SAFETY: live block.
        unsafe {
            assert!(gomalloc::usable_size(p) >= size);
            *p = 1;
            *p.add(size - 1) = 2;
            // touch one byte per page
            for off in (0..size).step_by(4096) {
                *p.add(off) = 3;
            }
            gomalloc::free(p);
        }
    }
    gomalloc::check_heap();
}

#[test]
fn big_alignments_waste_nothing_beyond_the_alignment() {
    for shift in 13..=26 {
        let align = 1usize << shift;
        let before = gomalloc::stats();
        let p = gomalloc::alloc(100_000, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "align {align}");
        let after = gomalloc::stats();
        // The block takes its own pages; whatever alignment cut off stays free.
        assert!(
            after.heap_inuse <= before.heap_inuse + 100_000usize.next_multiple_of(8192) + (1 << 20)
        );
        // SAFETY: live block.
        unsafe { gomalloc::free(p) };
    }
    gomalloc::check_heap();
}

#[test]
fn alloc_zeroed_after_dirty_reuse() {
    for &size in &[8usize, 24, 100, 1000, 4096, 32768, 40_000, 1 << 20] {
        let mut ptrs = Vec::new();
        for _ in 0..64 {
            let p = gomalloc::alloc(size, 8);
            // SAFETY: live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, 0xAB, size) };
            ptrs.push(p);
        }
        for p in ptrs.drain(..) {
            // SAFETY: live block.
            unsafe { gomalloc::free(p) };
        }
        for _ in 0..64 {
            let p = gomalloc::alloc_zeroed(size, 8);
            // SAFETY: live block of `size` bytes.
            assert!((0..size).all(|i| unsafe { *p.add(i) } == 0), "size {size}");
            ptrs.push(p);
        }
        for p in ptrs {
            // SAFETY: live block.
            unsafe { gomalloc::free(p) };
        }
    }
}

#[test]
fn realloc_in_place_and_moving() {
    // Same class: in place.
    let p = gomalloc::alloc(100, 8);
    fill(p, 100, 9);
    // SAFETY: live blocks throughout.
    unsafe {
        let q = gomalloc::realloc(p, 110, 8);
        assert_eq!(p, q, "100 and 110 share the 112-byte class");
        assert!(check(q, 100, 9));
        let r = gomalloc::realloc(q, 5000, 8);
        assert!(check(r, 100, 9));
        // Large: grow and shrink within pages.
        let big = gomalloc::realloc(r, 100_000, 8);
        assert!(check(big, 100, 9));
        let same = gomalloc::realloc(big, 100_001, 8);
        assert_eq!(same, big, "same page count");
        let shrunk = gomalloc::realloc(same, 50_000, 8);
        assert_eq!(shrunk, big, "large shrink is in place");
        assert!(check(shrunk, 100, 9));
        let small = gomalloc::realloc(shrunk, 10, 8);
        assert!(check(small, 10, 9));
        gomalloc::free(small);
    }
    // Growth in place when the next pages are free.
    let a = gomalloc::alloc(1 << 20, 8);
    // SAFETY: live blocks.
    unsafe {
        let b = gomalloc::realloc(a, 2 << 20, 8);
        fill(b, 2 << 20, 1);
        let c = gomalloc::realloc(b, 3 << 20, 8);
        assert!(check(c, 2 << 20, 1));
        gomalloc::free(c);
    }
    gomalloc::check_heap();
}
