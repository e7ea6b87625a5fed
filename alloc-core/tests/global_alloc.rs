//! Integration tests whose test binary runs on `GoMalloc` as its global allocator: every
//! allocation of the test harness, std and the tests themselves goes through gomalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

/// Bytes 0, 1, ..., 255, 0, 1, ... (`4096 + 256` of them). Byte `i` of a block filled
/// with `seed` is `seed + i` (mod 256), so its first 4096 bytes are `RAMP[seed..]`.
static RAMP: [u8; 4096 + 256] = {
    let mut r = [0; 4096 + 256];
    let mut i = 0;
    while i < r.len() {
        r[i] = i as u8;
        i += 1;
    }
    r
};

/// The first 4096 bytes of the fill pattern of `seed` (which repeats every 256 bytes).
fn pattern(seed: u8) -> &'static [u8] {
    &RAMP[seed as usize..][..4096]
}

/// Writes the pattern of `seed` over `n` bytes at `p`, 4096 bytes at a time (one `memcpy`
/// each: byte by byte, Miri takes minutes per MiB).
fn fill(p: *mut u8, n: usize, seed: u8) {
    let pat = pattern(seed);
    for off in (0..n).step_by(pat.len()) {
        // SAFETY: the caller owns `n` bytes at `p`; the chunk lies inside them and does
        // not overlap `pat`, a static.
        unsafe {
            std::ptr::copy_nonoverlapping(pat.as_ptr(), p.add(off), (n - off).min(pat.len()))
        };
    }
}

/// Whether the `n` bytes at `p` hold the pattern of `seed`.
fn check(p: *const u8, n: usize, seed: u8) -> bool {
    let pat = pattern(seed);
    // SAFETY: the caller owns `n` initialised bytes at `p` (a non-null block), which
    // nobody writes while the slice lives.
    let block = unsafe { std::slice::from_raw_parts(p, n) };
    block.chunks(pat.len()).all(|c| c == &pat[..c.len()])
}

/// Whether the `n` bytes at `p` are all zero, compared 4 KiB at a time.
fn is_zero(p: *const u8, n: usize) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    // SAFETY: the caller owns `n` initialised bytes at `p` (a non-null block), which
    // nobody writes while the slice lives.
    let block = unsafe { std::slice::from_raw_parts(p, n) };
    block.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}

#[test]
fn every_small_size_and_alignment() {
    // Under Miri every 16th of these sizes, still from 0 to 32768.
    let step = if cfg!(miri) { 97 * 16 } else { 97 };
    let mut live = Vec::new();
    for size in (0..=32768usize)
        .step_by(step)
        .chain([0, 1, 8, 16, 24, 32768])
    {
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
    // Each producer allocates; a consumer on another thread checks and frees. Under Miri
    // fewer blocks and a smaller channel, so the producers still wait on the consumer.
    const N: usize = if cfg!(miri) { 120 } else { 50_000 };
    const CHANNEL: usize = if cfg!(miri) { 16 } else { 1024 };
    let (tx, rx) = mpsc::sync_channel::<(usize, usize)>(CHANNEL);
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
    // Two threads allocate and free each other's objects in turns. Under Miri fewer and
    // smaller rounds: the spans of the larger classes still fill and are refilled, after
    // the other thread freed into them.
    const ROUNDS: usize = if cfg!(miri) { 20 } else { 200 };
    const BATCH: usize = if cfg!(miri) { 60 } else { 500 };
    let (a_tx, a_rx) = mpsc::channel::<Vec<usize>>();
    let (b_tx, b_rx) = mpsc::channel::<Vec<usize>>();
    let a = thread::spawn(move || {
        for round in 0..ROUNDS {
            let batch: Vec<usize> = (0..BATCH)
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
        for round in 0..ROUNDS {
            let batch: Vec<usize> = (0..BATCH)
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
    // Under Miri 4 rounds of 4 threads (two rounds free half of what is kept).
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 40 };
    const THREADS: usize = if cfg!(miri) { 4 } else { 50 };
    let mut kept = Vec::new();
    for round in 0..ROUNDS {
        let handles: Vec<_> = (0..THREADS)
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
            // One comparison of the whole box (boxes are at most 768 bytes).
            assert!(**b == [b[0]; 768][..b.len()]);
        }
    }
    drop(kept);
    gomalloc::check_heap();
}

#[test]
fn large_and_huge_blocks() {
    // One byte per page: every page was committed. Under Miri (whose OS layer hands out
    // plain memory, where committing means nothing) one per MiB.
    let touch_every = if cfg!(miri) { 1 << 20 } else { 4096 };
    for &size in &[32769usize, 100_000, 1 << 20, 5 << 20, 64 << 20, 150 << 20] {
        let p = gomalloc::alloc(size, 8);
        assert!(!p.is_null(), "{size}");
        assert_eq!(p as usize % 8192, 0);
        // SAFETY: live block.
        unsafe {
            assert!(gomalloc::usable_size(p) >= size);
            *p = 1;
            *p.add(size - 1) = 2;
            for off in (0..size).step_by(touch_every) {
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
        let p = gomalloc::alloc(100_000, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "align {align}");
        // The block's span holds its own pages, rounded up to the large-block grain, and no
        // more: whatever the alignment cut off stays free in the page heap. (The span, not the global heap_inuse, is checked:
        // other tests allocate at the same time.)
        let s = gomalloc::arena::span_of(p as usize);
        // SAFETY: `p` is live, so its span record is live.
        let (base, npages) = unsafe { ((*s).base.get(), (*s).npages.get()) };
        assert_eq!(base, p as usize, "align {align}");
        let guard = gomalloc::harden::GUARD_PAGES; // the guard-pages feature adds one
        assert_eq!(
            (npages - guard) << 13,
            100_000usize
                .div_ceil(8192)
                .next_multiple_of(gomalloc::malloc::LARGE_GRAIN_PAGES)
                << 13,
            "align {align}"
        );
        // SAFETY: live block.
        unsafe { gomalloc::free(p) };
    }
    gomalloc::check_heap();
}

#[test]
fn alloc_zeroed_after_dirty_reuse() {
    // Under Miri 16 blocks of each size: the zeroed ones still reuse the dirty ones' memory.
    const N: usize = if cfg!(miri) { 16 } else { 64 };
    for &size in &[8usize, 24, 100, 1000, 4096, 32768, 40_000, 1 << 20] {
        let mut ptrs = Vec::new();
        for _ in 0..N {
            let p = gomalloc::alloc(size, 8);
            // SAFETY: live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, 0xAB, size) };
            ptrs.push(p);
        }
        for p in ptrs.drain(..) {
            // SAFETY: live block.
            unsafe { gomalloc::free(p) };
        }
        for _ in 0..N {
            let p = gomalloc::alloc_zeroed(size, 8);
            assert!(is_zero(p, size), "size {size}");
            ptrs.push(p);
        }
        for p in ptrs {
            // SAFETY: live block.
            unsafe { gomalloc::free(p) };
        }
    }
}

#[test]
fn realloc_grown_a_little_at_a_time_moves_rarely() {
    // A buffer grown by 64 bytes at a time from 1 KiB to 1 MiB: each move adds 1/8 of
    // room, so it moves O(log n) times (log_1.125 1024 is 59; fewer when a large block
    // grows into the free pages after it), not once per size class or page. A growth that
    // fits the block's usable size is in place and keeps the room.
    let mut p = gomalloc::alloc(1024, 8);
    fill(p, 1024, 3);
    let (mut size, mut moves) = (1024, 0);
    while size < 1 << 20 {
        size += 64;
        // SAFETY: `p` is live.
        let usable = unsafe { gomalloc::usable_size(p) };
        // SAFETY: `p` is live with at least `size - 64` bytes; it is replaced by the result.
        let q = unsafe { gomalloc::realloc(p, size, 8) };
        assert!(!q.is_null());
        if size <= usable {
            assert_eq!(q, p, "a growth to {size} within {usable} bytes moved");
            // SAFETY: `q` is live.
            assert_eq!(unsafe { gomalloc::usable_size(q) }, usable);
        }
        moves += usize::from(q != p);
        p = q;
    }
    assert!(check(p, 1024, 3));
    assert!(moves <= 64, "{moves} moves");
    // Growing geometrically, the caller gets what it asked for: no headroom.
    // SAFETY: `p` is live; replaced by the result, which is live.
    let q = unsafe { gomalloc::realloc(p, 4 << 20, 8) };
    // SAFETY: `q` is live.
    assert!(unsafe { gomalloc::usable_size(q) } < (4 << 20) + (4 << 20) / 16);
    // Shrinking to half or more stays in place, small or large.
    // SAFETY: live blocks, each replaced by the result.
    unsafe {
        let r = gomalloc::realloc(q, 3 << 20, 8);
        assert_eq!(r, q);
        let small = gomalloc::alloc(1000, 8);
        let same = gomalloc::realloc(small, 600, 8);
        assert_eq!(same, small);
        gomalloc::free(same);
        gomalloc::free(r);
    }
    gomalloc::check_heap();
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

/// The cache that owns the span of `p`, as an address (0: none).
fn owner_of(p: *const u8) -> usize {
    let s = gomalloc::arena::span_of(p as usize);
    assert!(!s.is_null());
    // SAFETY: `p` is a live object, so its span record is live.
    unsafe { (*s).owner.load(std::sync::atomic::Ordering::Relaxed) as usize }
}

/// Spans this thread's cache took from the mcentrals so far.
fn central_refills() -> usize {
    // SAFETY: the calling thread's cache (or the static empty one) is live.
    unsafe { (*gomalloc::mcache::current()).refills.get() }
}

/// Fills `out` (with room reserved) with `n` objects of `l`.
fn alloc_into(l: Layout, n: usize, out: &mut Vec<usize>) {
    assert!(
        out.capacity() - out.len() >= n,
        "reserve first: no allocation in between"
    );
    for i in 0..n {
        // SAFETY: valid, non-zero layout.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        fill(p, l.size(), i as u8);
        out.push(p as usize);
    }
}

fn alloc_batch(l: Layout, n: usize) -> Vec<usize> {
    let mut v = Vec::with_capacity(n);
    alloc_into(l, n, &mut v);
    v
}

/// Checks the fill pattern of `alloc_into` and frees each object once.
fn check_and_free(l: Layout, objs: &[usize]) {
    for (i, &p) in objs.iter().enumerate() {
        assert!(check(p as *const u8, l.size(), i as u8));
        // SAFETY: allocated by `alloc_into` with `l`, freed once, here.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
}

/// The distinct span records of `objs`, sorted.
fn spans_of(objs: &[usize]) -> Vec<usize> {
    let mut s: Vec<usize> = objs
        .iter()
        .map(|&p| gomalloc::arena::span_of(p) as usize)
        .collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// Objects the retention tests allocate in a batch: a 64-byte span (one page) holds 128,
/// so a batch of 64-byte objects fills `BATCH_64 / 128` spans (15 natively, 2 under Miri)
/// and starts one more; one of 512-byte objects fills `BATCH_64 / 16`.
const BATCH_64: usize = if cfg!(miri) { 300 } else { 2000 };
const _: () = assert!(BATCH_64 / 128 >= 2, "a batch must fill several spans");

/// One round of [`a_thread_keeps_the_spans_it_filled_and_reuses_them`] on a fresh thread,
/// with objects of `size` bytes; `false` if a trim request (another test's
/// `release_memory`, or the scavenger) came while it ran, which rightly sends retained
/// spans back.
fn retained_spans_round(size: usize) -> bool {
    thread::spawn(move || {
        let trims = gomalloc::mcache::trim_requests();
        let trimmed = || gomalloc::mcache::trim_requests() != trims;
        let l = Layout::from_size_align(size, 8).unwrap();
        // Made first: the channel's own block (a few hundred bytes, 128-aligned) would
        // take a slot of the 512-byte class between the batches.
        let (tx, rx) = mpsc::channel::<Vec<usize>>();
        let first = alloc_batch(l, BATCH_64);
        let me = gomalloc::mcache::current() as usize;
        // Every span the batch filled is still this thread's (retained, not handed back
        // to the mcentral), so freeing into it takes the owner's local path.
        let all_owned = first.iter().all(|&p| owner_of(p as *const u8) == me);
        check_and_free(l, &first);
        // The next batch is served from the retained spans: no span from the mcentral
        // (counted across every class, so the vectors are made first), and the same memory.
        let mut second = Vec::with_capacity(BATCH_64);
        let mut third = Vec::with_capacity(BATCH_64);
        let refills = central_refills();
        alloc_into(l, BATCH_64, &mut second);
        let second_refills = central_refills() - refills;
        let same_spans = spans_of(&second) == spans_of(&first);
        // A third batch freed by another thread: the remote frees wait on the retained
        // spans and the owner takes them up again, still without the mcentral.
        let freer = thread::spawn(move || {
            for batch in rx {
                for p in batch {
                    // SAFETY: allocated by the owner with `l`, freed once, here.
                    unsafe { GLOBAL.dealloc(p as *mut u8, l) };
                }
            }
        });
        tx.send(second).unwrap();
        drop(tx);
        freer.join().unwrap();
        let refills = central_refills();
        alloc_into(l, BATCH_64, &mut third);
        let third_refills = central_refills() - refills;
        check_and_free(l, &third);
        if trimmed() {
            return false;
        }
        assert!(all_owned, "a filled span left the thread");
        assert_eq!(
            second_refills, 0,
            "the second batch took spans from the mcentral"
        );
        assert!(same_spans, "the second batch used other spans");
        assert_eq!(
            third_refills, 0,
            "the third batch took spans from the mcentral"
        );
        true
    })
    .join()
    .unwrap()
}

#[test]
fn a_thread_keeps_the_spans_it_filled_and_reuses_them() {
    assert!(
        (0..5).any(|_| retained_spans_round(64)),
        "every round was interrupted by a trim request"
    );
}

/// The same with 512-byte objects, 16 to a span: spans of at most 64 slots take
/// `mcache::refill`'s fast path (retained as they are, window loaded), and the remote
/// frees of the third batch send it to the general path.
#[test]
fn a_thread_keeps_its_single_window_spans_and_reuses_them() {
    assert!(
        (0..5).any(|_| retained_spans_round(512)),
        "every round was interrupted by a trim request"
    );
}

#[test]
fn retained_spans_go_back_to_the_mcentral_when_the_thread_exits() {
    let l = Layout::from_size_align(256, 8).unwrap();
    // Sixteen spans' worth: at least ten are filled whole even when a few slots go to
    // spans other threads left partly full.
    let n = 16 * gomalloc::sizeclass::size_to_class(l.size()).nelems();
    let live = thread::spawn(move || alloc_batch(l, n)).join().unwrap();
    // Only spans the batch filled completely are checked: a span it filled in part went back
    // to the mcentral with free slots, and another test's thread may rightly have taken it.
    let mut filled = 0;
    for s in spans_of(&live) {
        // SAFETY: spans of live objects are live records.
        let span = unsafe { &*(s as *const gomalloc::span::Span) };
        let mine = live
            .iter()
            .filter(|&&p| gomalloc::arena::span_of(p) as usize == s)
            .count();
        if mine == span.nelems.get() as usize {
            filled += 1;
            let owner = span.owner.load(std::sync::atomic::Ordering::Relaxed);
            assert!(owner.is_null(), "span still owned after exit");
        }
    }
    assert!(filled >= 10, "only {filled} spans filled by the batch");
    check_and_free(l, &live);
}

#[test]
fn a_threads_retained_spans_stay_under_the_bound() {
    thread::spawn(|| {
        // 2 MiB of objects in each of 24 sizes: far more full spans than a cache may keep.
        // Under Miri 6 MiB in each of 3 sizes of fewer, larger objects (spans of at most
        // 4 pages too): still over the total bound.
        let trims = gomalloc::mcache::trim_requests();
        let (sizes, per_size): (Vec<usize>, usize) = if cfg!(miri) {
            (vec![12288, 16384, 24576], 6 << 20)
        } else {
            ((1..=24).map(|i| i * 48).collect(), 2 << 20)
        };
        assert!(
            sizes.len() * per_size > gomalloc::mcache::RETAIN_TOTAL_BYTES + sizes.len() * (4 << 13)
        );
        let mut batches = Vec::new();
        for &size in &sizes {
            let l = Layout::from_size_align(size, 8).unwrap();
            batches.push((l, alloc_batch(l, per_size / size)));
        }
        gomalloc::check::check_whole_heap(); // checked builds: the lists and their count
        let me = gomalloc::mcache::current() as usize;
        let all: Vec<usize> = batches
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        let owned_bytes: usize = spans_of(&all)
            .iter()
            .map(|&s| {
                // SAFETY: spans of live objects are live records.
                let s = unsafe { &*(s as *const gomalloc::span::Span) };
                if s.owner.load(std::sync::atomic::Ordering::Relaxed) as usize == me {
                    s.npages.get() << 13
                } else {
                    0
                }
            })
            .sum();
        // The cache's own span per class (at most 4 pages each here: Go's spans and the
        // widened ones of `sizeclass::WIDE_SPAN_PAGES`) plus the retained ones.
        let bound = gomalloc::mcache::RETAIN_TOTAL_BYTES + sizes.len() * (4 << 13);
        assert!(
            owned_bytes <= bound,
            "thread owns {owned_bytes} bytes of spans, bound {bound}"
        );
        if gomalloc::mcache::trim_requests() == trims {
            // (A trim request from elsewhere rightly empties the lists.)
            assert!(owned_bytes >= 1 << 20, "too little retained: {owned_bytes}");
        }
        for (l, v) in batches {
            check_and_free(l, &v);
        }
    })
    .join()
    .unwrap();
}

/// With the retain budget spent, a refill swaps the full span for the oldest retained one
/// if that one has come free (`mcache::refill`'s fast path): nothing goes to the mcentral,
/// and the cache retains as many bytes as before. (The general path would send the
/// oldest retained span to the mcentral first, and take up the next one.)
#[test]
#[cfg_attr(miri, ignore = "fills the 16 MiB retain budget: too slow under Miri")]
fn a_spent_budget_swaps_in_the_oldest_retained_span() {
    assert!(
        (0..5).any(|_| spent_budget_round()),
        "every round was interrupted by a trim request"
    );
}

/// One round of [`a_spent_budget_swaps_in_the_oldest_retained_span`] on a fresh thread;
/// `false` if a trim request came while it ran.
fn spent_budget_round() -> bool {
    thread::spawn(|| {
        let trims = gomalloc::mcache::trim_requests();
        // 512-byte objects, a span's worth at a time (`per`: 64 to a 32 KiB span): more
        // spans than the budget holds, so the batch ends with the budget spent and its
        // last span full.
        let l = Layout::from_size_align(512, 8).unwrap();
        let class = gomalloc::sizeclass::size_to_class(l.size());
        let per = class.nelems();
        let span_bytes = class.npages() << gomalloc::sizeclass::PAGE_SHIFT;
        let spans = gomalloc::mcache::RETAIN_TOTAL_BYTES / span_bytes + 64;
        let all = alloc_batch(l, spans * per);
        // Twice the room needed, so that the buffer (`2 * per` words) is of another size
        // class than `l`'s and takes none of the slots counted here.
        let mut again = Vec::with_capacity(2 * per);
        let retained = gomalloc::mcache::own_retained_bytes();
        // Every retained span comes free; the span allocated from stays full. Its slots
        // are the batch's last `per` objects only if the batch began on a span of its
        // own; one that began on a span from the mcentral with slots taken is no test.
        // (Checked without allocating: an allocation of `l`'s class here would refill.)
        let last_span = gomalloc::arena::span_of(*all.last().unwrap());
        let (rest, last) = all.split_at(all.len() - per);
        if last
            .iter()
            .any(|&p| gomalloc::arena::span_of(p) != last_span)
            || rest
                .iter()
                .any(|&p| gomalloc::arena::span_of(p) == last_span)
        {
            check_and_free(l, &all);
            return false;
        }
        check_and_free(l, rest);
        let refills = central_refills();
        alloc_into(l, per, &mut again);
        let central = central_refills() - refills;
        let retained_after = gomalloc::mcache::own_retained_bytes();
        let one_span = spans_of(&again).len() == 1;
        check_and_free(l, &again);
        for &p in last {
            // SAFETY: allocated above with `l`, freed once, here.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        if gomalloc::mcache::trim_requests() != trims {
            return false;
        }
        assert_eq!(
            retained,
            gomalloc::mcache::RETAIN_TOTAL_BYTES,
            "budget not spent"
        );
        assert_eq!(central, 0, "the refill went to the mcentral");
        assert!(
            one_span,
            "a span's worth of objects took more than one free span"
        );
        assert_eq!(
            retained_after, retained,
            "the refill changed the retained bytes: not a swap"
        );
        true
    })
    .join()
    .unwrap()
}

#[test]
fn one_class_may_retain_the_whole_budget() {
    // glibc's bench-malloc-simple shape: a batch of 4 KiB blocks (eight to a 32 KiB span)
    // larger than any per-class share would be, then freed by the same thread.
    thread::spawn(|| {
        let trims = gomalloc::mcache::trim_requests();
        let l = Layout::from_size_align(4096, 8).unwrap();
        let n = if cfg!(miri) { 300 } else { 1536 };
        let batch = alloc_batch(l, n);
        let me = gomalloc::mcache::current() as usize;
        let owned = batch
            .iter()
            .filter(|&&p| owner_of(p as *const u8) == me)
            .count();
        if gomalloc::mcache::trim_requests() == trims {
            // (A trim request from elsewhere rightly empties the lists.)
            assert!(
                owned * 10 >= n * 9,
                "the thread kept only {owned} of its {n} blocks' spans"
            );
        }
        check_and_free(l, &batch);
    })
    .join()
    .unwrap();
}

/// A thread that keeps a steady set of objects and replaces one at random each step (a
/// worker's working set: `parked` in the bench suite) frees into its retained spans at
/// random, so the spans a refill probes sometimes have few free slots while others have
/// many. A fresh span taken for each such dip would be retained for good, and the class's
/// spans would grow until 38% of their slots stayed free (62% full here); a refill takes a
/// fresh span only when the oldest spans are short of room too
/// (`mcache::retain::take_retained`), and they stay about 84% full.
#[test]
#[cfg_attr(miri, ignore = "200,000 random replacements: minutes under Miri")]
fn random_replacement_keeps_retained_spans_mostly_full() {
    thread::spawn(|| {
        let trims = gomalloc::mcache::trim_requests();
        // 1024-byte objects, 32 to a span (Go's spans of that class hold eight, where a
        // dip is likelier). 2 MiB live, far under the retain budget, so no span leaves
        // the cache.
        let l = Layout::from_size_align(1024, 8).unwrap();
        let n = 2048;
        let mut live = alloc_batch(l, n);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % n as u64) as usize;
            assert!(check(live[k] as *const u8, l.size(), k as u8));
            // SAFETY: allocated with `l` by this test, freed once, here.
            unsafe { GLOBAL.dealloc(live[k] as *mut u8, l) };
            // SAFETY: `l` has a non-zero size.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            fill(p, l.size(), k as u8);
            live[k] = p as usize;
        }
        let retained = gomalloc::mcache::own_retained_bytes();
        if gomalloc::mcache::trim_requests() == trims {
            // (A trim request from elsewhere rightly empties the lists.) The live objects'
            // spans are the class's allocating span and its retained ones; the harness's
            // few other objects add a span or two of other classes.
            let live_bytes = n * l.size();
            assert!(
                live_bytes * 100 >= retained * 75,
                "{retained} bytes of retained spans for {live_bytes} bytes live"
            );
        }
        check_and_free(l, &live);
    })
    .join()
    .unwrap();
}

#[test]
fn release_memory_asks_other_threads_for_their_retained_spans() {
    let l = Layout::from_size_align(64, 8).unwrap();
    // A 64-byte span is one page.
    let span_bytes = 8192;
    let (to_main, from_worker) = mpsc::channel::<(usize, bool)>();
    let (to_worker, from_main) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let trims = gomalloc::mcache::trim_requests();
        let mut batch = alloc_batch(l, BATCH_64);
        let mut more = Vec::with_capacity(200);
        let me = gomalloc::mcache::current() as usize;
        // Every span the batch filled is this thread's: all but the one it allocates from
        // are retained (another test's trim request may have sent some back already).
        assert!(batch.iter().all(|&p| owner_of(p as *const u8) == me));
        let retained = gomalloc::mcache::own_retained_bytes();
        check_and_free(l, &batch);
        batch.clear();
        let trimmed = gomalloc::mcache::trim_requests() != trims;
        to_main.send((retained, trimmed)).unwrap();
        // Main called release_memory(). The next refill answers the request: the retained
        // spans go to the mcentral (and, being empty, to the page heap). What the cache
        // retains afterwards is what the 200 new objects filled: at most two spans.
        from_main.recv().unwrap();
        alloc_into(l, 200, &mut more);
        let after = gomalloc::mcache::own_retained_bytes();
        assert!(
            after <= 2 * span_bytes,
            "{after} bytes still retained after the trim (were {retained})"
        );
        check_and_free(l, &more);
    });
    let (retained, trimmed) = from_worker.recv().unwrap();
    // The batch filled BATCH_64 / 128 spans, all retained unless another test's trim
    // request came.
    assert!(
        retained >= BATCH_64 / 128 * span_bytes || trimmed,
        "only {retained} bytes retained"
    );
    gomalloc::release_memory();
    to_worker.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn a_large_buffer_grown_a_little_at_a_time_moves_rarely() {
    // Two buffers grown in turn, so neither can extend into the pages after it for long:
    // without headroom each would move once per 8 KiB page on its way to `TOP` (about 500
    // times each natively, 120 under Miri, where the buffers grow to 1 MiB).
    const TOP: usize = if cfg!(miri) { 1 << 20 } else { 4 << 20 };
    const MAX_MOVES: usize = if cfg!(miri) { 60 } else { 120 };
    let l = Layout::from_size_align(40 << 10, 8).unwrap();
    // SAFETY: valid layouts; each buffer is reallocated with its current size and freed once.
    unsafe {
        let mut bufs = [GLOBAL.alloc(l), GLOBAL.alloc(l)];
        let mut size = l.size();
        let mut moves = 0;
        while size < TOP {
            let new = size + 1000;
            for b in bufs.iter_mut() {
                assert!(!b.is_null());
                *b.add(size - 1) = 7;
                let q = GLOBAL.realloc(*b, Layout::from_size_align(size, 8).unwrap(), new);
                assert!(!q.is_null());
                assert_eq!(*q.add(size - 1), 7, "contents kept");
                if q != *b {
                    moves += 1;
                }
                *b = q;
            }
            size = new;
        }
        assert!(
            moves < MAX_MOVES,
            "{moves} moves for 2 x {} steps",
            TOP / 1000
        );
        for b in bufs {
            assert!(gomalloc::usable_size(b) >= size);
            GLOBAL.dealloc(b, Layout::from_size_align(size, 8).unwrap());
        }
    }
}

/// A thread that filled more spans than its cache may retain, and frees their objects,
/// takes back the spans it gave up (its frees are then local); another thread's free into
/// such a span is a remote free, and the span stays with the mcentral.
#[test]
#[cfg_attr(miri, ignore = "fills the 16 MiB retain budget: too slow under Miri")]
fn a_thread_takes_back_the_spans_it_gave_up_when_it_frees_into_them() {
    thread::spawn(|| {
        let l = Layout::from_size_align(256, 8).unwrap();
        // 8 MiB past the budget, in one class: the oldest spans went to the mcentral.
        let objs = alloc_batch(l, (gomalloc::mcache::RETAIN_TOTAL_BYTES + (8 << 20)) / 256);
        let me = gomalloc::mcache::current() as usize;
        let span_owner = |s: usize| {
            // SAFETY: callers keep a live object in `s`, so the record is live.
            unsafe {
                (*(s as *const gomalloc::span::Span))
                    .owner
                    .load(std::sync::atomic::Ordering::Relaxed) as usize
            }
        };
        let in_span = |s: usize| -> Vec<usize> {
            (0..objs.len())
                .filter(|&i| gomalloc::arena::span_of(objs[i]) as usize == s)
                .collect()
        };
        // Two spans the cache gave up (which ones depends on its probes and swaps).
        let mut unowned = objs
            .iter()
            .map(|&p| gomalloc::arena::span_of(p) as usize)
            .filter(|&s| span_owner(s) == 0);
        let s1 = unowned.next().expect("spans went to the mcentral");
        let s2 = unowned
            .find(|&s| s != s1)
            .expect("spans went to the mcentral");
        let (in1, in2) = (in_span(s1), in_span(s2));
        assert!(in1.len() >= 2 && in2.len() >= 2);
        // Another thread's free into s1: a remote free, s1 stays unowned.
        let p = objs[in1[0]];
        assert!(check(p as *const u8, 256, in1[0] as u8));
        // SAFETY: allocated with `l`, freed once, there.
        thread::spawn(move || unsafe { GLOBAL.dealloc(p as *mut u8, l) })
            .join()
            .unwrap();
        assert_eq!(span_owner(s1), 0, "a remote free took the span");
        // This thread's free into s2 takes it back.
        let q = objs[in2[0]];
        assert!(check(q as *const u8, 256, in2[0] as u8));
        // SAFETY: allocated with `l`, freed once, here.
        unsafe { GLOBAL.dealloc(q as *mut u8, l) };
        assert_eq!(span_owner(s2), me, "the span went back to its thread");
        gomalloc::check::check_whole_heap(); // checked builds: the lists and their count
        for (i, &p) in objs.iter().enumerate() {
            if i != in1[0] && i != in2[0] {
                assert!(check(p as *const u8, 256, i as u8));
                // SAFETY: allocated with `l`, each freed once, here.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
        }
    })
    .join()
    .unwrap();
}

/// A forked child abandons the caches of the parent's other threads (they may have been in
/// the middle of an allocation) and goes on: it frees objects of their spans (remote frees
/// into spans no thread will collect) and of its own, and allocates.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_forked_child_abandons_the_other_threads_caches() {
    let l = Layout::from_size_align(96, 8).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (ready_tx, done_rx) = (ready_tx.clone(), done_rx.clone());
            thread::spawn(move || {
                // A cache with a span of the class in it, held until the parent is done.
                let objs = alloc_batch(l, 100);
                ready_tx.send(objs.clone()).unwrap();
                let _ = done_rx.lock().unwrap().recv();
                check_and_free(l, &objs);
            })
        })
        .collect();
    let theirs: Vec<Vec<usize>> = (0..2).map(|_| ready_rx.recv().unwrap()).collect();
    let mine = alloc_batch(l, 100);
    let before = gomalloc::stats().caches_abandoned;
    // SAFETY: the child only allocates, frees and calls `_exit`; it never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // No assertion here: a panic would unwind into the test harness's copy.
        let mut ok = gomalloc::stats().caches_abandoned - before >= 2; // and libtest's
        let again = alloc_batch(l, 1000);
        for objs in theirs.iter().chain([&mine, &again]) {
            for (i, &p) in objs.iter().enumerate() {
                ok &= check(p as *const u8, l.size(), i as u8);
                // SAFETY: live objects of `l`, each freed once in this process.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
        }
        // SAFETY: `_exit` ends the child at once, without running the parent's exit code.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-parameter.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    drop(done_tx);
    for h in holders {
        h.join().unwrap();
    }
    check_and_free(l, &mine);
}
