use gc::{Gc, Trace};

#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
}

fn main() {
    let m = gc::attach();
    let a = Gc::new(&m, Node { next: None });
    let b = Gc::new(&m, Node { next: None });
    // A plain field of a GC object cannot change: `Gc` gives `&T` only (no barrier could
    // see this write). Mutable fields are `Lock`s and `RefLock`s.
    a.next = Some(b);
    std::mem::swap(&mut *a, &mut Node { next: Some(b) });
}
