// `OnceLock` sets its value once, through `&self`, without the write barrier (a GC pointer
// stored into a black object while marking would be lost).
use gc::{Gc, Trace};
use std::sync::OnceLock;

#[derive(Trace)]
struct Node {
    parent: OnceLock<Gc<Node>>,
}

fn main() {}
