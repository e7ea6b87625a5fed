use gc::{Gc, Trace};
use std::sync::Mutex;

#[derive(Trace)]
struct Node {
    next: Mutex<Option<Gc<Node>>>,
}

fn main() {}
