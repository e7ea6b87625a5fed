//! `gomalloc::free_fast`, the C `free` fast path (shim-c `free_impl`): it frees slots of
//! spans the calling thread's cache owns and declines (returns false, doing nothing)
//! everything else, which the general `free` then handles. Misuse (double free, interior
//! pointers) aborts and is tested from C under LD_PRELOAD (`shim-c/tests/c/misuse.c`).

use gomalloc::{alloc, check_heap, free, free_fast, owns};

/// Makes sure the calling thread has a cache of its own. These tests are the process's
/// first users of the heap (the test harness allocates with `System`), and while another
/// test's thread is still initialising it, allocations go to the shared orphan cache,
/// whose spans no thread owns, so `free_fast` rightly declines them.
fn own_cache() {
    while gomalloc::mcache::current_or_init().is_none() {
        std::thread::yield_now();
    }
}

#[test]
fn frees_owned_slots_and_declines_the_rest() {
    own_cache();
    const ROUNDS: usize = if cfg!(miri) { 50 } else { 300 };
    for &size in &[8usize, 24, 64, 512, 4096, 32768] {
        for round in 0..ROUNDS {
            // Both come from spans the cache holds now, so both are owned when freed; the
            // sizes alternate, so consecutive frees go to different spans.
            let p = alloc(size, 8);
            let q = alloc(16, 8);
            assert!(!p.is_null() && !q.is_null());
            // SAFETY: `p` and `q` are live small objects of this thread's cache.
            unsafe {
                assert!(free_fast(p), "size {size}, round {round}");
                assert!(free_fast(q), "size 16, round {round}");
            }
        }
    }
    // SAFETY: null is never a slot; the general free ignores it.
    assert!(!unsafe { free_fast(core::ptr::null_mut()) });
    // A large object is declined and left alone.
    let big = alloc(1 << 20, 8);
    // SAFETY: `big` is live.
    assert!(!unsafe { free_fast(big) });
    assert!(owns(big));
    // SAFETY: `big` is live and freed once.
    unsafe { free(big) };
    check_heap();
}

#[test]
fn declines_objects_of_another_threads_spans() {
    let ps: Vec<usize> = std::thread::spawn(|| (0..100).map(|_| alloc(48, 8) as usize).collect())
        .join()
        .unwrap();
    for &p in &ps {
        // After the other thread exited its cache was flushed: its spans are not ours.
        // SAFETY: `p` is live.
        assert!(!unsafe { free_fast(p as *mut u8) });
        // SAFETY: `p` is live and freed once.
        unsafe { free(p as *mut u8) };
    }
    check_heap();
}

#[test]
fn the_hint_forgets_spans_the_cache_gives_up() {
    own_cache();
    // Fill several spans of one class, so that the cache retains the full ones; a
    // layout-aware free into the oldest span (found through the arena map: it is not the
    // cache's current span) makes that span the hint. A 48-byte span
    // (one page) holds 170 objects: 2000 fill 11 spans, 500 (under Miri) 2.
    const N: usize = if cfg!(miri) { 500 } else { 2000 };
    let ps: Vec<usize> = (0..N).map(|_| alloc(48, 8) as usize).collect();
    assert!(ps.iter().all(|&p| p != 0));
    let first = gomalloc::arena::span_of(ps[0]);
    let twin = ps[1..]
        .iter()
        .position(|&p| gomalloc::arena::span_of(p) == first)
        .map(|i| i + 1)
        .expect("a second object in the first span");
    // SAFETY: `ps[0]` is live, of this layout, and freed once.
    unsafe { gomalloc::free_sized(ps[0] as *mut u8, 48, 8) };
    let class = gomalloc::malloc::small_class(48, 8).unwrap().index();
    // SAFETY: the calling thread's cache is live.
    let hint = unsafe { (*gomalloc::mcache::current()).free_hint[class].get() };
    assert_eq!(hint, first);
    // The retained spans go back to the mcentral. The hint must forget its span (once
    // there, the span's record may be freed and reused by another thread): a checked build
    // verifies at every use that the hint names a span the cache owns, and a free into the
    // span is declined from now on.
    gomalloc::release_memory();
    // SAFETY: `ps[twin]` is live; declined, it is left alone.
    assert!(!unsafe { free_fast(ps[twin] as *mut u8) });
    for &p in &ps[1..] {
        let p = p as *mut u8;
        // SAFETY: `p` is live; declined or freed, it is freed once.
        unsafe {
            if !free_fast(p) {
                free(p);
            }
        }
    }
    check_heap();
}
