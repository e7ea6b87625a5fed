//! Taking spans back on free (`mcache::adopt_for_free`), in a process of its own so that
//! the process-wide count of adopted spans moves only with this test.

use std::alloc::{GlobalAlloc, Layout};
use std::thread;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

fn alloc_n(l: Layout, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            // SAFETY: non-zero layout.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            p as usize
        })
        .collect()
}

fn free_all(l: Layout, v: &[usize]) {
    for &p in v {
        // SAFETY: allocated with `l` by `alloc_n`, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
}

/// A span the cache could not retain (the budget is spent and its class retains nothing
/// to make room) is not taken back: it would go straight back to its mcentral, at the cost
/// of two lock round trips for every free into it.
#[test]
#[cfg_attr(miri, ignore = "fills the 16 MiB retain budget: too slow under Miri")]
fn a_span_the_budget_cannot_hold_is_not_taken_back() {
    thread::spawn(|| {
        let big = Layout::from_size_align(256, 8).unwrap();
        let small = Layout::from_size_align(1024, 8).unwrap();
        // Class `big` spends the whole budget; every span of class `small` then goes to
        // its mcentral when full.
        let b = alloc_n(
            big,
            (gomalloc::mcache::RETAIN_TOTAL_BYTES + (1 << 20)) / 256,
        );
        let s = alloc_n(small, (4 << 20) / 1024);
        let before = gomalloc::stats().spans_adopted;
        free_all(small, &s);
        assert_eq!(gomalloc::stats().spans_adopted, before);
        free_all(big, &b);
    })
    .join()
    .unwrap();
}
