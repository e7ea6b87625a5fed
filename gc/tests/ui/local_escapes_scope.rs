use gc::Gc;

fn main() {
    let m = gc::attach();
    // A `Local` roots its object only while its scope lasts: it cannot leave it.
    let escaped = m.scope(|s| s.handle(Gc::new(&m, 1u64)));
    println!("{}", *escaped);
}
