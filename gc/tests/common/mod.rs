//! The singly linked list the multi-threaded collector tests build and check.

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
