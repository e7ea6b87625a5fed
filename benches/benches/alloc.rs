//! Criterion benchmark of gomalloc against `System` (glibc), mimalloc and jemalloc, all
//! called through their `GlobalAlloc` methods in one run (issue 2, Performance):
//!
//! * `pair/SIZE`: one malloc+free pair, single-threaded, for 8 B .. 1 MiB;
//! * `batch/SIZE`: allocate 1000 objects, then free the 1000;
//! * `xthread/SIZE`: one thread allocates batches of 1000, another frees them (every free
//!   is a cross-thread free), time per batch.
//!
//! Run with `cargo bench -p gomalloc-benches --bench alloc`; `benches/ratios.py` turns the
//! results under `target/criterion` into a table of ratios against gomalloc.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gomalloc_benches::{
    ALLOCATORS, AllocFn, BATCH, alloc_all, cross_thread, free_all, layout, pair, with_allocator,
};
use std::alloc::GlobalAlloc;
use std::hint::black_box;
use std::time::Duration;

/// Sizes of the single-threaded pair benchmark.
const PAIR_SIZES: [usize; 6] = [8, 64, 512, 4096, 32768, 1 << 20];
/// Sizes of the batch benchmarks.
const BATCH_SIZES: [usize; 3] = [8, 64, 512];

struct Pair<'a, 'c> {
    c: &'a mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    name: &'a str,
    size: usize,
}

impl AllocFn for Pair<'_, '_> {
    type Output = ();
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) {
        let l = layout(self.size);
        self.c
            .bench_with_input(BenchmarkId::new(self.name, self.size), &l, |b, &l| {
                b.iter(|| pair(a, l))
            });
    }
}

struct Batch<'a, 'c> {
    c: &'a mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    name: &'a str,
    size: usize,
}

impl AllocFn for Batch<'_, '_> {
    type Output = ();
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) {
        let l = layout(self.size);
        let mut slots = vec![std::ptr::null_mut::<u8>(); BATCH];
        self.c
            .bench_with_input(BenchmarkId::new(self.name, self.size), &l, |b, &l| {
                b.iter(|| {
                    alloc_all(a, l, &mut slots);
                    // SAFETY: `slots` holds BATCH live objects of `l` from `a`, freed once.
                    unsafe { free_all(a, l, black_box(&slots)) };
                })
            });
    }
}

struct CrossThread<'a, 'c> {
    c: &'a mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    name: &'a str,
    size: usize,
}

impl AllocFn for CrossThread<'_, '_> {
    type Output = ();
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) {
        let l = layout(self.size);
        self.c
            .bench_with_input(BenchmarkId::new(self.name, self.size), &l, |b, &l| {
                b.iter_custom(|iters| cross_thread(a, l, iters).total)
            });
    }
}

fn pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    g.throughput(Throughput::Elements(1));
    for size in PAIR_SIZES {
        for name in ALLOCATORS {
            with_allocator(
                name,
                Pair {
                    c: &mut g,
                    name,
                    size,
                },
            );
        }
    }
    g.finish();
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for size in BATCH_SIZES {
        for name in ALLOCATORS {
            with_allocator(
                name,
                Batch {
                    c: &mut g,
                    name,
                    size,
                },
            );
        }
    }
    g.finish();
}

fn cross_thread_batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("xthread");
    g.throughput(Throughput::Elements(BATCH as u64));
    for size in BATCH_SIZES {
        for name in ALLOCATORS {
            with_allocator(
                name,
                CrossThread {
                    c: &mut g,
                    name,
                    size,
                },
            );
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = pairs, batches, cross_thread_batches
}
criterion_main!(benches);
