//! The object the barrier and checkmark tests build their scenarios from: a barriered
//! slot (`Lock`) and a barriered list (`RefLock`), so a scenario can hide an object behind
//! either kind of write.

use gc::{Gc, Lock, RefLock, Trace};

/// A node with a numbered identity, one slot and one list.
#[derive(Trace)]
pub struct Obj {
    pub id: u32,
    pub slot: Lock<Option<Gc<Obj>>>,
    pub list: RefLock<Vec<Gc<Obj>>>,
}

/// A new, empty `Obj` numbered `id`.
pub fn obj(m: &gc::Mutator, id: u32) -> Gc<Obj> {
    Gc::new(
        m,
        Obj {
            id,
            slot: Lock::new(None),
            list: RefLock::new(Vec::new()),
        },
    )
}
