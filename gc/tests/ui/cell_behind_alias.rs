// The derive cannot see through an alias; the std cells' Trace impls require `Untraced`
// contents, which no GC pointer is.
use gc::{Gc, Trace};

type Hidden = std::cell::Cell<Option<Gc<Node>>>;

#[derive(Trace)]
struct Node {
    next: Hidden,
}

fn main() {}
