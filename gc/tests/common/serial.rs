//! Running a test alone among its file's tests, in frames on a zeroed stack.
//!
//! The stack scan is conservative: any word on an attached thread's stack that points into
//! an object keeps it alive, stale words in a frame's unwritten slots included. libtest
//! runs tests on threads whose stacks glibc reuses, so a test's frames may hold addresses
//! that the test run there before left behind, and a test that asserts an object was freed
//! can be foiled by another test's stack, or by its own. Such tests run through [`alone`].

use std::sync::{Mutex, MutexGuard};

/// Holds off every other test of the file that takes it.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `body` under [`serial`], after zeroing 256 KiB of stack below this frame, so that
/// `body`'s frames start out holding no stale address.
#[inline(never)]
#[allow(dead_code)] // not every file that takes `serial` needs it
pub fn alone(body: impl FnOnce()) {
    let _serial = serial();
    gc::debug::clear_stack(256 << 10);
    body();
}
