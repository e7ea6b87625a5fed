use gc::{Gc, Trace};
use std::cell::RefCell;

#[derive(Trace)]
struct Node {
    kids: RefCell<Vec<Gc<Node>>>,
}

fn main() {}
