use std::cell::Cell;

fn main() {
    let m = gc::attach();
    let g = gc::Gc::new(&m, Cell::new(1u32));
    std::thread::spawn(move || g.get());
}
