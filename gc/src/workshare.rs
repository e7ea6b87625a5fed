//! Parallel marking's shared grey work and how the markers agree that it is done (Go's
//! `gcMarkDone` without the handshake: the work buffers and `nwait` of `mgcwork.go` and
//! `mgc.go`). Every marker drains its own grey stack and gives chunks of it to the
//! [`WorkList`] while another marker is out of work; a marker out of work counts itself
//! in the markers' idle counter and leaves when all `n` are counted ([`run_marker`]).
//!
//! Termination is correct because only a marker that is not counted idle pushes work:
//! a marker counts itself only after it found its stack and the list empty, and uncounts
//! itself before it takes a chunk. So when the counter reaches `n`, the list is empty and
//! no marker can fill it again: every grey object was traced.
//!
//! This module uses no other module of the crate and no gomalloc item: `tests/loom.rs`
//! compiles it under `cfg(loom)` against loom's atomics and mutex and model-checks
//! [`run_marker`] with this very code.

#[cfg(loom)]
use loom::sync::Mutex;
#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::Mutex;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chunks of grey objects shared between markers (or handed back by mark assists).
///
/// Invariant: `len` is the number of chunks in `chunks` as of the last push or pop
/// (stored under the mutex, read without it), and no chunk is empty.
pub(crate) struct WorkList {
    chunks: Mutex<Vec<Vec<usize>>>,
    len: AtomicUsize,
}

impl WorkList {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        WorkList {
            chunks: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// (loom's mutex has no `const fn new`.)
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        WorkList {
            chunks: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds `chunk` (nothing if it is empty).
    pub(crate) fn push(&self, chunk: Vec<usize>) {
        if chunk.is_empty() {
            return;
        }
        let mut c = self.chunks.lock().unwrap();
        c.push(chunk);
        self.len.store(c.len(), Ordering::Release);
    }

    /// Takes a chunk, the newest; `None` if there is none.
    pub(crate) fn pop(&self) -> Option<Vec<usize>> {
        if self.is_empty() {
            return None;
        }
        let mut c = self.chunks.lock().unwrap();
        let r = c.pop();
        self.len.store(c.len(), Ordering::Release);
        r
    }

    /// True if the list held no chunk at its last push or pop that this thread sees,
    /// read without the lock. A thread always sees its own pushes (one atomic's stores
    /// are seen in order), so a marker never finds its own chunk missing: what
    /// [`run_marker`]'s termination relies on.
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }
}

/// Runs one of `n` markers until no grey object is left anywhere: in its own stack, in
/// `work`, in the other markers'. `drain(chunk)` puts `chunk`, if any, on the marker's
/// stack and traces until the stack is empty, pushing chunks to `work` as it likes (while
/// `idle` is non-zero, to feed the idle markers); then this takes a chunk from `work`,
/// or counts the marker idle in `idle` and waits for work or for all `n` to be idle.
/// Every one of the `n` markers must run this with the same `work` and `idle`, which
/// starts at 0.
pub(crate) fn run_marker(
    work: &WorkList,
    idle: &AtomicUsize,
    n: usize,
    mut drain: impl FnMut(Option<Vec<usize>>),
) {
    let mut chunk = None;
    loop {
        drain(chunk.take());
        chunk = work.pop();
        if chunk.is_some() {
            continue;
        }
        // Counted idle only with an empty stack after a failed pop: from here until it
        // uncounts itself this marker pushes nothing.
        idle.fetch_add(1, Ordering::AcqRel);
        loop {
            if !work.is_empty() {
                idle.fetch_sub(1, Ordering::AcqRel);
                break;
            }
            if idle.load(Ordering::Acquire) == n {
                return;
            }
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
    }
}
