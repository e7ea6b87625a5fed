//! Atomics facade: `core` atomics normally, loom's under `cfg(loom)` so the lock-free
//! pieces ([`crate::lock`], [`crate::remote::RemoteFrees`],
//! [`crate::remote::IntrusiveStack`]) can be model-checked.
//!
//! Layer: primitives (the crate root's module map, `lib.rs`).

// Under loom only the lock-free structures are built; the spans that use the others are not.
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Yield the processor inside a spin loop.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    // A raw system call: the scavenger thread spins on the heap lock too, and it may not
    // enter libc (`crate::sys`).
    #[cfg(all(not(loom), not(miri)))]
    crate::sys::sched_yield();
    #[cfg(all(not(loom), miri))]
    std::thread::yield_now();
}
