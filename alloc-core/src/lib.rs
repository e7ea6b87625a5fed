//! gomalloc (skeleton; the design header lands with the heap).
#![no_std]

pub mod sizeclass;
pub mod sizeclasses;
