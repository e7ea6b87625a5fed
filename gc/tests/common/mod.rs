//! The singly linked list the multi-threaded collector tests build and check, and their
//! random slot picks.
// Each test file that includes this module uses part of it.
#![allow(dead_code)]

use gc::{Gc, Lock, Trace};

/// A list node whose link can only change through the barriered `Lock`.
#[derive(Trace)]
pub struct Link {
    pub value: u64,
    pub next: Lock<Option<Gc<Link>>>,
}

/// `(length, sum of values)` of the list starting at `c`.
pub fn list_sum(mut c: Option<Gc<Link>>) -> (u64, u64) {
    let (mut n, mut s) = (0, 0);
    while let Some(x) = c {
        n += 1;
        s += x.value;
        c = x.next.get();
    }
    (n, s)
}

/// Steps the xorshift generator at `x` (non-zero) and returns its new state: the tests'
/// random slot picks.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}
