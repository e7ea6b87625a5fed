fn main() {
    let mut m = gc::attach();
    let x = m.blocking(|| gc::Gc::new(&m, 1u32));
    let _ = x;
}
