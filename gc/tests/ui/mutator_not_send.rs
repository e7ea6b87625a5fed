fn main() {
    let m = gc::attach();
    std::thread::spawn(move || {
        let _ = gc::Gc::new(&m, 1u32);
    });
}
