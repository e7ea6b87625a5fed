use std::rc::Rc;

fn main() {
    let m = gc::attach();
    let _ = gc::Gc::new(&m, Rc::new(1u32));
}
