use gc::{Gc, RefLock};

fn main() {
    let m = gc::attach();
    let a = Gc::new(&m, RefLock::new(Vec::<Gc<u32>>::new()));
    let b = Gc::new(&m, 1u32);
    // Borrowing a barriered cell mutably needs the attached thread's Mutator.
    a.borrow_mut().push(b);
}
