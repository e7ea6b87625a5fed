use gc::{Gc, Trace};
use std::cell::OnceCell;

#[derive(Trace)]
struct Node {
    parent: OnceCell<Gc<Node>>,
}

fn main() {}
