//! # gomalloc-gc: Go's garbage collector for Rust, on the gomalloc heap
//!
// The examples of this crate keep `Gc`s on the stack: the precise mode, which scans no
// stack, does not run them.
#![cfg_attr(not(feature = "precise"), doc = "```")]
#![cfg_attr(feature = "precise", doc = "```ignore")]
//! use gc::{Gc, Lock, Trace};
//!
//! #[derive(Trace)]
//! struct Node {
//!     value: u64,
//!     next: Lock<Option<Gc<Node>>>,
//! }
//!
//! let m = gc::attach();                       // this thread now takes part in collections
//! let a = Gc::new(&m, Node { value: 1, next: Lock::new(None) });
//! let b = Gc::new(&m, Node { value: 2, next: Lock::new(Some(a)) });
//! a.next.set(&m, Some(b));                    // a cycle, through the write barrier
//! gc::collect();                              // a, b are on this stack: both survive
//! assert_eq!(a.next.get().unwrap().value, 2);
//! ```
//!
//! A tricolor, non-moving mark-sweep collector built like Go's (`runtime/mgc.go`): objects
//! live in the spans of [`gomalloc`]'s heap (scan spans for types holding GC pointers,
//! noscan spans for the rest, a tiny allocator for small pointer-free values, page runs for
//! large objects), are marked in per-span mark bitmaps, and are swept lazily by turning
//! each span's mark bitmap into its allocation bitmap. The full design, including what is
//! and is not enforced by types, is `docs/gc-design.md`.
//!
//! * **Pointers**: [`Gc<T>`] is `Copy`, `Send + Sync` when `T` is. Types are traced through
//!   the `unsafe` trait [`Trace`] (`#[derive(Trace)]`).
//! * **Mutation**: GC pointers inside GC objects change only through [`Lock`] and
//!   [`RefLock`], which take `&Mutator` and apply Go's hybrid write barrier.
//! * **Slices and vectors**: `Gc<[T]>` and `Gc<str>` built in place ([`Gc::from_fn`],
//!   [`Gc::from_slice`], [`Gc::from_iter`], [`Gc::from_str`]); [`GcVec<T>`], a growable
//!   vector in the GC heap whose writes apply the barrier.
//! * **Roots**: threads [`attach`]; their stacks and registers are scanned conservatively
//!   at safepoints (allocation, [`Mutator::safepoint`], [`Mutator::blocking`]). Anything
//!   else is rooted precisely with [`Root<T>`]. [`keep_alive`] keeps a `Gc` on the stack
//!   up to a point (Go's `runtime.KeepAlive`).
//! * **Collection**: [`collect`] and the pacer ([`set_gc_percent`], [`set_memory_limit`],
//!   `GOMALLOC_GOGC`, `GOMALLOC_GCMEMLIMIT`); `GOMALLOC_GCTRACE=1` prints Go's gctrace
//!   lines, `GOMALLOC_GCPACERTRACE=1` the pacer's; [`stats`]. The mark runs while the
//!   program runs, with two short stops per cycle; `GOMALLOC_GCCONCURRENT=0` (or
//!   [`debug::set_concurrent`]) stops the world for the whole mark instead.
//!   `GOMALLOC_GCCHECKROOTS=1` (or the `checkroots` feature) checks the rooting rule at
//!   every cycle: a `Gc` in `malloc` memory or a static that names an object about to be
//!   freed ends the process with a report (`docs/gc-design.md` §9).
//! * **Weak references and finalizers**: [`Weak<T>`], [`set_finalizer`],
//!   [`clear_finalizer`].
//!
//! ## Supported targets
//!
//! Linux (glibc) on x86_64 and aarch64. The conservative stack scan spills every
//! callee-saved register that can hold a pointer with inline assembly (x86_64: rbx, rbp,
//! r12-r15; aarch64: x19-x29 and d8-d15) and takes each thread's stack bounds from
//! `pthread_getattr_np`; other architectures fail to compile. The precise mode
//! (`feature = "precise"`) needs neither. CI builds and tests x86_64 only; the aarch64
//! path is checked to assemble (`--target aarch64-unknown-linux-gnu`), not run.
//!
//! ## Fatal errors
//!
//! Some misuse leaves the collector no sane way on, and ends the process: `abort()` after
//! one line `gc: fatal error: ...` on stderr, as Go's runtime does with its `fatal error:`
//! (in Go a panicking finalizer ends the program too):
//!
//! * **a destructor that panics while the sweep runs it.** The sweep runs on whatever
//!   thread allocates or collects; unwinding out of it would leave the sweep counted as in
//!   progress (every later cycle would wait for it) and the span lost. Destructors of GC
//!   objects must not panic.
//! * **a finalizer that panics** (on the finalizer thread or in
//!   [`Mutator::run_finalizers`]). Unwinding would leave its object rooted as running,
//!   and `run_finalizers` would wait for it forever.
//! * **[`collect`] called from a destructor the sweep runs.** A cycle begins by waiting
//!   for every sweep in progress, the caller's included.
//!
//! The panic hook runs first, so the panic's own message and location come before the
//! fatal line. (With `panic = "abort"` the process ends at the panic itself.) A panic in
//! a finalizer's or a destructor's *own* code that it catches is no concern of the
//! collector.
//!
//! Module map: [`trace`] (the trait and std impls) -> `ptr` (`Gc`, object headers) ->
//! `slice` (`Gc<[T]>`, `Gc<str>`) -> `cell` (barriers) -> `vec` (`GcVec`) -> `heap` (span caches, central lists, tiny allocator, sweeping) ->
//! `mark` (grey work, stack scanning) -> `collector` (the cycle) -> `pacer`, `weak`,
//! `root`, `stats`, [`debug`]. `handshake` (the mark's flush rounds and barrier-buffer
//! hand-off), `workshare` (the markers' shared grey work and their termination) and
//! `greentea` (the span-queued mark's grey bits) depend on nothing else, and
//! `tests/loom.rs` model-checks all three.

#![warn(missing_docs)]
// Under `cfg(loom)` the crate is empty: gomalloc builds only its lock-free structures
// there, and `tests/loom.rs` compiles the modules it checks, `handshake`, `workshare` and
// `greentea`, by themselves.
#![cfg(not(loom))]

extern crate self as gc;

mod cell;
mod checkmark;
mod checkroots;
mod collector;
pub mod debug;
mod greentea;
mod handle;
mod handshake;
mod heap;
mod mark;
mod mutator;
mod pacer;
mod ptr;
mod root;
mod slice;
mod stats;
pub mod trace;
mod vec;
mod weak;
mod workshare;

pub use cell::{Lock, Ref, RefLock, RefMut};
pub use collector::collect;
pub use gomalloc_gc_derive::Trace;
pub use handle::{HandleScope, Local};
pub use mark::Tracer;
pub use mutator::{Mutator, attach};
pub use pacer::{MIN_HEAP, parse_gogc, parse_limit, set_gc_percent, set_memory_limit};
pub use ptr::{Gc, keep_alive};
pub use root::{Root, root_count};
pub use stats::{GcStats, PAUSE_BUCKETS, PAUSE_RING, fmt_ms};
pub use trace::{Trace, Untraced};
pub use vec::GcVec;
pub use weak::{Weak, armed_finalizers, clear_finalizer, set_finalizer};

/// The collector's statistics now.
pub fn stats() -> GcStats {
    collector_init();
    let st = stats::STATS.lock().unwrap();
    let mut s = st.s.clone();
    st.fill_recent(&mut s);
    let wall = collector::start_time().elapsed().as_secs_f64() * collector::cores() as f64;
    s.gc_cpu_fraction = if wall > 0.0 {
        (st.gc_cpu.as_secs_f64() / wall).min(1.0)
    } else {
        0.0
    };
    drop(st);
    s.total_alloc = heap::TOTAL_ALLOC.load(std::sync::atomic::Ordering::Relaxed);
    s.mallocs = heap::MALLOCS.load(std::sync::atomic::Ordering::Relaxed);
    s.heap_live = heap::HEAP_LIVE.load(std::sync::atomic::Ordering::Relaxed);
    s.heap_goal = pacer::HEAP_GOAL.load(std::sync::atomic::Ordering::Relaxed);
    s.limiter_last_enabled = pacer::LIMITER_LAST_ENABLED.load(std::sync::atomic::Ordering::Relaxed);
    s.heap_spans = heap::SPAN_BYTES.load(std::sync::atomic::Ordering::Relaxed);
    s.objects_freed = stats::COUNTERS
        .freed
        .load(std::sync::atomic::Ordering::Relaxed);
    s.finalizers_run = stats::COUNTERS
        .finalizers_run
        .load(std::sync::atomic::Ordering::Relaxed);
    s.gc_percent = pacer::gc_percent();
    s.memory_limit = pacer::memory_limit();
    s.mutators = mutator::world().threads.len();
    s
}

fn collector_init() {
    collector::init();
}

/// Support for `#[derive(Trace)]`; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Implemented for every type with a `Drop` impl, so that the derive's own impl of it
    /// conflicts with a user's `Drop` (design §4, `Trace` rule 5).
    pub trait MustNotImplDrop {}
    #[allow(drop_bounds)]
    impl<T: Drop> MustNotImplDrop for T {}
}
