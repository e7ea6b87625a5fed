//! Runs of layout-aware frees (`gomalloc::free_sized`, Rust's `dealloc`) through spans the
//! thread retains. A batch freed in allocation order (or in its reverse) goes through one
//! retained span after another, none of them the span the class allocates from: the free
//! at a window's edge loads that window for the frees that follow
//! (`Span::load_window_for_frees`), and the span becomes its class's free hint
//! (`MCache::free_hint`), so that those frees take `free_sized`'s first tier.

use gomalloc::{alloc, check_heap, free_sized};

/// Makes sure the calling thread has a cache of its own (see `free_fast.rs`).
fn own_cache() {
    while gomalloc::mcache::current_or_init().is_none() {
        std::thread::yield_now();
    }
}

/// The span holding `p`.
fn span(p: usize) -> &'static gomalloc::span::Span {
    // SAFETY: `p` is a live object, so its span record is live.
    unsafe { &*gomalloc::arena::span_of(p) }
}

/// The class's free hint of the calling thread's cache.
fn hint(size: usize) -> *mut gomalloc::span::Span {
    let class = gomalloc::malloc::small_class(size, 8).unwrap().index();
    // SAFETY: the calling thread's cache is live.
    unsafe { (*gomalloc::mcache::current()).free_hint[class].get() }
}

#[test]
fn runs_of_frees_load_windows_of_retained_spans() {
    own_cache();
    // 8 B: 1024-slot spans; 48 B: 170 slots (a short last window); 64 B: 128; 256 B: 32
    // (one window, always loaded when retained).
    const N: usize = if cfg!(miri) { 200 } else { 3000 };
    // Under Miri, the two sizes whose 200 objects fill more than one multi-window span.
    let sizes: &[usize] = if cfg!(miri) {
        &[48, 64]
    } else {
        &[8, 48, 64, 256]
    };
    for &size in sizes {
        for backwards in [false, true] {
            let mut ps: Vec<usize> = (0..N).map(|_| alloc(size, 8) as usize).collect();
            assert!(ps.iter().all(|&p| p != 0));
            let first = ps[0];
            if backwards {
                ps.reverse();
            }
            for (i, &p) in ps.iter().enumerate() {
                // SAFETY: `p` is live, of this layout, and freed once.
                unsafe { free_sized(p as *mut u8, size, 8) };
                if i % 199 == 0 {
                    check_heap();
                }
            }
            check_heap();
            // The first span of the batch is retained (the class allocates from a later
            // one), so the run through it loaded windows of it for its frees; it holds
            // no object now.
            let s = span(first);
            if !backwards && s.nelems.get() > 64 {
                assert_ne!(s.window(), gomalloc::span::NO_WINDOW, "{size} B");
            }
            // The whole batch's slots are free again and are handed out again.
            let again: Vec<usize> = (0..N).map(|_| alloc(size, 8) as usize).collect();
            for p in again {
                // SAFETY: `p` was just allocated with this layout and is freed once.
                unsafe { free_sized(p as *mut u8, size, 8) };
            }
            check_heap();
        }
    }
}

#[test]
fn the_hint_follows_a_run_into_a_retained_span() {
    own_cache();
    // 64-byte objects, 128 to a span: the first 128 fill a span the cache then retains.
    let ps: Vec<usize> = (0..1000).map(|_| alloc(64, 8) as usize).collect();
    let first = span(ps[0]);
    let in_first: Vec<usize> = ps
        .iter()
        .copied()
        .filter(|&p| core::ptr::eq(span(p), first))
        .collect();
    assert!(in_first.len() > 64);
    // SAFETY: each object is live, of this layout, and freed once.
    unsafe { free_sized(in_first[0] as *mut u8, 64, 8) };
    assert_eq!(hint(64), first as *const _ as *mut _);
    // The free at the first slot of the span's first window loaded that window.
    assert_eq!(first.window(), 0);
    for &p in &in_first[1..] {
        // SAFETY: each object is live, of this layout, and freed once.
        unsafe { free_sized(p as *mut u8, 64, 8) };
    }
    check_heap();
    for &p in ps.iter().filter(|&&p| !core::ptr::eq(span(p), first)) {
        // SAFETY: each object is live, of this layout, and freed once.
        unsafe { free_sized(p as *mut u8, 64, 8) };
    }
    check_heap();
}
