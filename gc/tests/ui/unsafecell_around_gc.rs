use gc::{Gc, Trace};
use std::cell::UnsafeCell;

#[derive(Trace)]
struct Node {
    next: UnsafeCell<Option<Gc<Node>>>,
}

fn main() {}
