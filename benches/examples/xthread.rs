//! `xthread <allocator> <size> <batches> <runs>`: the criterion `xthread` benchmark outside
//! criterion. Each run starts a freeing thread, as each criterion sample does, passes it
//! `batches` batches of 1000 objects of `size` bytes to free, and prints the run's time per
//! batch; then the median, least and greatest, and the median time each thread spent
//! working: nanoseconds per malloc and per (remote) free. Criterion's mean hides whether a
//! slow reading is one slow mode of some runs or every run a little slower, and which side
//! bounds the pipeline; this tells both (`docs/BENCHMARKS.md`, section 3).
//!
//!     for a in gomalloc mimalloc gomalloc mimalloc; do
//!         setarch -R target/release/examples/xthread $a 512 2000 15; done

use gomalloc_benches::{
    ALLOCATORS, AllocFn, BATCH, CrossThreadTimes, cross_thread, layout, with_allocator,
};
use std::alloc::{GlobalAlloc, Layout};
use std::process::ExitCode;

struct Runs {
    layout: Layout,
    batches: u64,
    runs: usize,
}

impl AllocFn for Runs {
    /// Each run's times.
    type Output = Vec<CrossThreadTimes>;
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) -> Self::Output {
        (0..self.runs)
            .map(|_| cross_thread(a, self.layout, self.batches))
            .collect()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, _, size, batches, runs] => (|| {
            Some((
                size.parse::<usize>().ok()?,
                batches.parse::<u64>().ok()?,
                runs.parse::<usize>().ok()?,
            ))
        })(),
        _ => None,
    };
    let Some((size, batches, runs)) = parsed.filter(|&(s, b, r)| s > 0 && b > 0 && r > 0) else {
        eprintln!(
            "usage: xthread <{}> <size> <batches> <runs>",
            ALLOCATORS.join("|")
        );
        return ExitCode::from(2);
    };
    let job = Runs {
        layout: layout(size),
        batches,
        runs,
    };
    let Some(times) = with_allocator(&args[1], job) else {
        eprintln!("xthread: unknown allocator {:?}", args[1]);
        return ExitCode::from(2);
    };
    // Microseconds per batch.
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / batches as f64;
    let sorted = |f: fn(&CrossThreadTimes) -> std::time::Duration| {
        let mut v: Vec<f64> = times.iter().map(|t| per(f(t))).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let total = sorted(|t| t.total);
    let each: Vec<String> = times
        .iter()
        .map(|t| format!("{:.1}", per(t.total)))
        .collect();
    println!(
        "{} {size} B: median {:.1} us/batch (least {:.1}, greatest {:.1}); \
         malloc {:.2} ns, free {:.2} ns; runs: {}",
        args[1],
        total[total.len() / 2],
        total[0],
        total[total.len() - 1],
        sorted(|t| t.allocating)[runs / 2] * 1000.0 / BATCH as f64,
        sorted(|t| t.freeing)[runs / 2] * 1000.0 / BATCH as f64,
        each.join(" ")
    );
    ExitCode::SUCCESS
}
