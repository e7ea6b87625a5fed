//! Shared pieces of the gomalloc benchmarks: the allocators under test, the loops the
//! criterion benchmark (`benches/alloc.rs`) and the instruction-count binary
//! (`examples/pairs.rs`) run through them, and the Rust workloads of `gomalloc bench`
//! ([`rustload`]).
//!
//! A binary has one global allocator, so every allocator here is called through its
//! [`GlobalAlloc`] methods directly. The loops are generic over the allocator, so each
//! one is compiled (and inlined, where the allocator allows it) separately: no dynamic
//! dispatch is measured.

pub mod rustload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

pub use gomalloc::GoMalloc;
pub use mimalloc::MiMalloc;
pub use tikv_jemallocator::Jemalloc;

/// Alignment of every benchmarked allocation.
pub const ALIGN: usize = 8;

/// The allocators under test, by the name the benchmarks and `pairs` use.
pub const ALLOCATORS: [&str; 4] = ["gomalloc", "system", "mimalloc", "jemalloc"];

/// The layout of a `size`-byte benchmark object.
///
/// # Panics
/// If `size` rounded up to [`ALIGN`] overflows `isize`.
pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("valid layout")
}

/// Something generic code can do with each allocator: [`with_allocator`] calls
/// [`AllocFn::call`] with the named one.
pub trait AllocFn {
    /// What the call returns.
    type Output;
    /// Runs with allocator `a`.
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) -> Self::Output;
}

static GO: GoMalloc = GoMalloc;
static SYS: System = System;
static MI: MiMalloc = MiMalloc;
static JE: Jemalloc = Jemalloc;

/// Runs `f` with the allocator called `name` (one of [`ALLOCATORS`]); `None` for an
/// unknown name.
pub fn with_allocator<F: AllocFn>(name: &str, f: F) -> Option<F::Output> {
    Some(match name {
        "gomalloc" => f.call(&GO),
        "system" => f.call(&SYS),
        "mimalloc" => f.call(&MI),
        "jemalloc" => f.call(&JE),
        _ => return None,
    })
}

/// The harness baseline for instruction counts: `alloc` hands out one static buffer
/// (through `black_box`, so the caller still tests it for null) and `dealloc` does nothing.
/// `pairs null SIZE N` measures what the loop itself costs.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullAlloc;

static mut NULL_BUF: [u64; 8] = [0; 8];

// SAFETY: never used as a real allocator: only the `pairs` harness calls it, with sizes of
// at most 64 bytes, and it never writes through the pointer.
unsafe impl GlobalAlloc for NullAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        black_box(std::ptr::addr_of_mut!(NULL_BUF).cast())
    }
    #[inline(always)]
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// One malloc+free pair of `layout` through `a`.
///
/// # Panics
/// If the allocator returns null.
#[inline(always)]
pub fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: `layout` has a non-zero size (every benchmark size is at least 8).
    let p = unsafe { a.alloc(black_box(layout)) };
    assert!(!p.is_null(), "out of memory");
    // SAFETY: `p` was just allocated by `a` with `layout` and is not used again.
    unsafe { a.dealloc(black_box(p), layout) };
}

/// `n` malloc+free pairs of `layout` through `a`.
#[inline(never)]
pub fn pairs<A: GlobalAlloc>(a: &A, layout: Layout, n: u64) {
    for _ in 0..n {
        pair(a, layout);
    }
}

/// `n` objects of `layout` through `a` in batches of [`BATCH`]: allocate a batch, then free
/// it in allocation order (`n` is rounded up to whole batches).
#[inline(never)]
pub fn batches<A: GlobalAlloc>(a: &A, layout: Layout, n: u64) {
    let mut slots = [core::ptr::null_mut(); BATCH];
    for _ in 0..n.div_ceil(BATCH as u64) {
        alloc_all(a, layout, &mut slots);
        // SAFETY: the batch was just allocated by `a` with `layout`; not used afterwards.
        unsafe { free_all(a, layout, &slots) };
    }
}

/// Objects per batch of [`batches`] (and of the criterion batch benchmarks).
pub const BATCH: usize = 1000;

/// Fills `slots` with fresh objects of `layout` from `a`.
///
/// # Panics
/// If the allocator returns null.
#[inline(always)]
pub fn alloc_all<A: GlobalAlloc>(a: &A, layout: Layout, slots: &mut [*mut u8]) {
    for s in slots.iter_mut() {
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { a.alloc(black_box(layout)) };
        assert!(!p.is_null(), "out of memory");
        *s = black_box(p);
    }
}

/// Frees every object in `slots`, in order.
///
/// # Safety
/// Every pointer in `slots` is a live object allocated by `a` with `layout`, and none is
/// used afterwards.
#[inline(always)]
pub unsafe fn free_all<A: GlobalAlloc>(a: &A, layout: Layout, slots: &[*mut u8]) {
    for &p in slots {
        // SAFETY: `p` is a live object allocated by `a` with `layout`, not used afterwards
        // (# Safety).
        unsafe { a.dealloc(black_box(p), layout) };
    }
}

/// Times of one [`cross_thread`] run.
#[derive(Clone, Copy, Debug)]
pub struct CrossThreadTimes {
    /// From the first allocation until the last batch is freed.
    pub total: Duration,
    /// Time the allocating thread spent allocating (not waiting for buffers).
    pub allocating: Duration,
    /// Time the freeing thread spent freeing (not waiting for batches).
    pub freeing: Duration,
}

/// `iters` batches of [`BATCH`] objects of `l` allocated on this thread and freed, in
/// allocation order, on a new thread (every free a cross-thread one). Two batches
/// circulate, so the threads overlap: one fills a batch while the other empties the
/// previous one; the total is bound by the slower side and by the hand-offs, which is why
/// each side's busy time is measured too (two clock reads per batch and side).
///
/// # Panics
/// If the allocator returns null.
pub fn cross_thread<A: GlobalAlloc + Sync + 'static>(
    a: &'static A,
    l: Layout,
    iters: u64,
) -> CrossThreadTimes {
    // Batches travel as addresses (usize) so the buffers are `Send`; two buffers circulate.
    let (to_free, freeing) = sync_channel::<Vec<usize>>(2);
    let (to_fill, filling) = sync_channel::<Vec<usize>>(2);
    for _ in 0..2 {
        to_fill.send(vec![0; BATCH]).expect("channel open");
    }
    std::thread::scope(|s| {
        let freer = s.spawn(move || {
            let mut busy = Duration::ZERO;
            for mut batch in freeing.iter() {
                let t = Instant::now();
                for p in batch.iter_mut() {
                    // SAFETY: each address is a live object of `l` from `a`, sent once.
                    unsafe { a.dealloc(black_box(*p as *mut u8), l) };
                    *p = 0;
                }
                busy += t.elapsed();
                if to_fill.send(batch).is_err() {
                    break;
                }
            }
            busy
        });
        let start = Instant::now();
        let mut allocating = Duration::ZERO;
        for _ in 0..iters {
            let mut batch = filling.recv().expect("freeing thread alive");
            let t = Instant::now();
            for p in batch.iter_mut() {
                // SAFETY: the layout has a non-zero size.
                let q = unsafe { a.alloc(black_box(l)) };
                assert!(!q.is_null(), "out of memory");
                *p = q as usize;
            }
            allocating += t.elapsed();
            to_free.send(batch).expect("freeing thread alive");
        }
        drop(to_free);
        // Wait for the freeing thread to give both buffers back (or to stop).
        let _ = filling.recv();
        let _ = filling.recv();
        let total = start.elapsed();
        CrossThreadTimes {
            total,
            allocating,
            freeing: freer.join().expect("freeing thread"),
        }
    })
}
