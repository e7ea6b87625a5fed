use gc::{Gc, Trace};

#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Would read a possibly swept object.
        let _ = self.next.map(|n| n.next.is_some());
    }
}

fn main() {}
