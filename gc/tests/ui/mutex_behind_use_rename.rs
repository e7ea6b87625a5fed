// Renamed on import, the derive cannot recognise `Mutex`; its `Trace` impl requires
// `Untraced` contents, which no GC pointer is.
use gc::{Gc, Trace};
use std::sync::Mutex as Guarded;

#[derive(Trace)]
struct Node {
    next: Guarded<Option<Gc<Node>>>,
}

fn main() {}
