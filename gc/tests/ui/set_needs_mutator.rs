use gc::{Gc, Lock};

fn main() {
    let m = gc::attach();
    let a = Gc::new(&m, Lock::new(None::<Gc<u32>>));
    let b = Gc::new(&m, 1u32);
    // Writing a barriered cell needs the attached thread's Mutator.
    a.set(Some(b));
}
