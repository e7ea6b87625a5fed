//! `phases <allocator> <size> <batches>`: times the two halves of the batch pattern apart:
//! allocating 1000 objects of `size` bytes, then freeing them in order, `batches` times,
//! and prints nanoseconds per malloc and per free. A batch benchmark's total hides which
//! half an allocator wins; this tells it (see `docs/BENCHMARKS.md`, section 3).
//!
//! Run it without address randomisation so that runs compare, and alternate allocators:
//!
//!     for a in gomalloc mimalloc gomalloc mimalloc; do
//!         setarch -R target/release/examples/phases $a 64 20000; done

use gomalloc_benches::{ALLOCATORS, AllocFn, BATCH, alloc_all, free_all, layout, with_allocator};
use std::alloc::{GlobalAlloc, Layout};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Phases {
    layout: Layout,
    batches: u64,
}

impl AllocFn for Phases {
    /// Time spent allocating, time spent freeing.
    type Output = (Duration, Duration);
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) -> Self::Output {
        let mut slots = vec![std::ptr::null_mut(); BATCH];
        let (mut alloc, mut free) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..self.batches {
            let t0 = Instant::now();
            alloc_all(a, self.layout, &mut slots);
            let t1 = Instant::now();
            // SAFETY: the batch was just allocated by `a` with `layout`; not used afterwards.
            unsafe { free_all(a, self.layout, &slots) };
            let t2 = Instant::now();
            alloc += t1 - t0;
            free += t2 - t1;
        }
        (alloc, free)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, _, size, batches] => size.parse::<usize>().ok().zip(batches.parse::<u64>().ok()),
        _ => None,
    };
    let Some((size, batches)) = parsed.filter(|&(s, b)| s > 0 && b > 0) else {
        eprintln!("usage: phases <{}> <size> <batches>", ALLOCATORS.join("|"));
        return ExitCode::from(2);
    };
    let job = Phases {
        layout: layout(size),
        batches,
    };
    let Some((alloc, free)) = with_allocator(&args[1], job) else {
        eprintln!("phases: unknown allocator {:?}", args[1]);
        return ExitCode::from(2);
    };
    let per = |d: Duration| d.as_secs_f64() * 1e9 / (batches as f64 * BATCH as f64);
    println!(
        "{} {size} B: malloc {:.2} ns, free {:.2} ns",
        args[1],
        per(alloc),
        per(free)
    );
    ExitCode::SUCCESS
}
