use gc::{Gc, Trace};
use std::sync::RwLock;

#[derive(Trace)]
struct Node {
    kids: RwLock<Vec<Gc<Node>>>,
}

fn main() {}
