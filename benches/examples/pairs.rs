//! `pairs <allocator> <size> <iterations> [batch]`: runs `iterations` malloc+free pairs of
//! `size` bytes (alignment 8) through the named allocator's `GlobalAlloc` methods, for
//! counting instructions under `valgrind --tool=callgrind` (see `benches/callgrind.sh`).
//! With `batch`, the same number of objects is allocated 1000 at a time and then freed.
//!
//! Allocators: gomalloc, system, mimalloc, jemalloc, and `null` (the loop alone: see
//! [`NullAlloc`]).

use gomalloc_benches::{ALLOCATORS, AllocFn, NullAlloc, batches, layout, pairs, with_allocator};
use std::alloc::{GlobalAlloc, Layout};
use std::process::ExitCode;

struct Pairs {
    layout: Layout,
    n: u64,
    batch: bool,
}

impl AllocFn for Pairs {
    type Output = ();
    fn call<A: GlobalAlloc + Sync + 'static>(self, a: &'static A) {
        if self.batch {
            batches(a, self.layout, self.n);
        } else {
            pairs(a, self.layout, self.n);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!(
            "usage: pairs <{}|null> <size> <iterations> [batch]",
            ALLOCATORS.join("|")
        );
        ExitCode::from(2)
    };
    let batch = match args.get(4).map(String::as_str) {
        None => false,
        Some("batch") => true,
        Some(_) => return usage(),
    };
    if args.len() > 5 || args.len() < 4 {
        return usage();
    }
    let (Ok(size), Ok(n)) = (args[2].parse::<usize>(), args[3].parse::<u64>()) else {
        return usage();
    };
    if size == 0 {
        eprintln!("pairs: size must be at least 1");
        return ExitCode::from(2);
    }
    let job = Pairs {
        layout: layout(size),
        n,
        batch,
    };
    if args[1] == "null" {
        static NULL: NullAlloc = NullAlloc;
        job.call(&NULL);
        return ExitCode::SUCCESS;
    }
    match with_allocator(&args[1], job) {
        Some(()) => ExitCode::SUCCESS,
        None => usage(),
    }
}
