use gc::{Gc, Trace};
use std::cell::Cell;

#[derive(Trace)]
struct Node {
    next: Cell<Option<Gc<Node>>>,
}

fn main() {}
