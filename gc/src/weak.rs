//! Weak references and finalizers (design §7; Go's `mfinal.go` and `mgcmark.go`
//! `markrootSpans`).
//!
//! Order at mark termination: (1) objects reachable *from* objects with finalizers were
//! marked with the roots; (2) weak references whose target is unmarked are cleared;
//! (3) each unmarked object with a finalizer is marked (revived for this cycle) and its
//! finalizer queued; (4) after the world restarts the finalizer thread runs the queue, each
//! finalizer once. Queued objects are roots until their finalizer has returned: taking an
//! entry off the queue moves its object to the `running` list in the same critical
//! section, and the roots include that list (in both modes: the precise mode does not scan
//! the stack of the thread running the finalizer).

use crate::collector::FatalOnUnwind;
use crate::mark::Tracer;
use crate::mutator::{GC_FLAGS, MARKING, Mutator, attach};
use crate::stats::COUNTERS;
use crate::{Gc, Trace};
use gomalloc::gcapi;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, Once};

/// The cell a `Weak` points to: the target's address, 0 once cleared.
struct WeakCell {
    target: AtomicUsize,
}

// SAFETY: holds no traced pointer: the target is deliberately not traced.
unsafe impl Trace for WeakCell {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer) {}
}

/// Addresses of every `WeakCell` allocated.
static WEAKS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A weak reference: does not keep its target alive, and reads `None` once the target was
/// found unreachable. `Copy`; `Send + Sync` when `T` is.
pub struct Weak<T: 'static> {
    cell: Gc<WeakCell>,
    _t: PhantomData<Gc<T>>,
}

impl<T> Clone for Weak<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Weak<T> {}
// SAFETY: like `Gc<T>`: `upgrade` hands out `Gc<T>`.
unsafe impl<T: Send + Sync> Send for Weak<T> {}
// SAFETY: like `Gc<T>`: each thread sharing a `Weak<T>` may `upgrade` it to a `Gc<T>`
// and so get `&T` (needs `T: Sync`) or let the collector drop the target (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Weak<T> {}

impl<T: Trace> Weak<T> {
    /// A weak reference to `target`.
    pub fn new(m: &Mutator, target: Gc<T>) -> Weak<T> {
        let cell = Gc::new(
            m,
            WeakCell {
                target: AtomicUsize::new(target.addr()),
            },
        );
        WEAKS.lock().unwrap().push(cell.addr());
        Weak {
            cell,
            _t: PhantomData,
        }
    }

    /// The target, if it is still alive. Takes `&Mutator` because it creates a new strong
    /// pointer: while a cycle marks concurrently the target is shaded (a read barrier on
    /// weak references).
    pub fn upgrade(&self, m: &Mutator) -> Option<Gc<T>> {
        let p = self.cell.target.load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        // SAFETY: a non-zero target is alive: it is cleared in the stop-the-world pause that
        // finds it unreachable, before anything is swept.
        let g = unsafe { Gc::from_ptr(p as *const T) };
        if GC_FLAGS.load(Ordering::Relaxed) & MARKING != 0 {
            crate::cell::shade(m, &g);
        }
        Some(g)
    }

    /// True once the target was collected.
    pub fn is_cleared(&self) -> bool {
        self.cell.target.load(Ordering::Acquire) == 0
    }
}

// SAFETY: traces the weak cell (kept alive by the `Weak`), not the target.
unsafe impl<T> Trace for Weak<T> {
    fn trace(&self, t: &mut Tracer) {
        self.cell.trace(t)
    }
}

/// Clears weak references to unmarked objects and forgets dead weak cells. World stopped,
/// marking done. Returns how many were cleared.
pub(crate) fn clear_dead_weaks() -> usize {
    let mut cleared = 0;
    let mut w = WEAKS.lock().unwrap();
    w.retain(|&cell| {
        let alive = |a: usize| {
            // SAFETY: marking is done and nothing is swept during the pause.
            gcapi::find_object(a).is_some_and(|o| unsafe { gcapi::is_marked(o) })
        };
        if !alive(cell) {
            return false;
        }
        // SAFETY: a live weak cell.
        let c = unsafe { &*(cell as *const WeakCell) };
        let target = c.target.load(Ordering::Relaxed);
        if target != 0 && !alive(target) {
            c.target.store(0, Ordering::Release);
            cleared += 1;
        }
        true
    });
    cleared
}

// ---- finalizers ----

/// A registered finalizer: the object's address, and a trampoline calling the user's `fn`.
#[derive(Clone, Copy)]
struct Finalizer {
    obj: usize,
    run: unsafe fn(&Mutator, usize, *const ()),
    /// The user's `fn`, type-erased as a pointer (not an integer: it keeps its provenance).
    f: *const (),
    /// The object's type name (for the fatal error of a panicking finalizer).
    type_name: fn() -> &'static str,
}

struct FinState {
    /// Armed finalizers by object address: at most one per object.
    table: BTreeMap<usize, Finalizer>,
    /// Finalizers of unreachable objects, waiting to run (their objects are roots).
    ready: Vec<Finalizer>,
    /// Objects whose finalizers were taken off `ready` and have not returned yet: still
    /// roots (design §7), whichever thread runs them.
    running: Vec<usize>,
}

// SAFETY: `f` is a function pointer (immutable code), `obj` an address: nothing is shared
// mutably through them.
unsafe impl Send for Finalizer {}

static FIN: Mutex<FinState> = Mutex::new(FinState {
    table: BTreeMap::new(),
    ready: Vec::new(),
    running: Vec::new(),
});
static FIN_CV: Condvar = Condvar::new();

/// Address and size of the weak table's and the finalizer state's statics (for the misuse
/// checker).
pub(crate) fn table_ranges() -> ((usize, usize), (usize, usize)) {
    (
        (&WEAKS as *const _ as usize, std::mem::size_of_val(&WEAKS)),
        (&FIN as *const _ as usize, std::mem::size_of_val(&FIN)),
    )
}
static FIN_THREAD: Once = Once::new();

/// # Safety
/// `obj` is `Gc::addr` of a `Gc<T>` whose object is alive (rooted by the `running` list
/// for the call), and `f` a `fn(&Mutator, Gc<T>)` cast to `*const ()`.
unsafe fn trampoline<T: Trace + 'static>(m: &Mutator, obj: usize, f: *const ()) {
    // SAFETY: `f` was cast from a `fn(&Mutator, Gc<T>)`, exactly this type (# Safety).
    let f: fn(&Mutator, Gc<T>) =
        unsafe { std::mem::transmute::<*const (), fn(&Mutator, Gc<T>)>(f) };
    // SAFETY: `obj` is the value address of a `Gc<T>` whose object the `running` list keeps
    // alive for the call (# Safety), which is what `Gc::from_ptr` requires.
    f(m, unsafe { Gc::from_ptr(obj as *const T) })
}

/// Arms a finalizer for `obj`, like Go's `runtime.SetFinalizer`: when the collector finds
/// `obj` unreachable it revives it for one more cycle and runs `f(m, obj)` once, on the
/// finalizer thread, after the world restarts.
///
/// `f` is a plain `fn`, so it cannot capture GC pointers the collector would not see.
/// Resurrection is safe (design §7): `obj` and everything it references were kept by the
/// cycle that queued it, and stay rooted by the queue until `f` returns; if `f` stores `obj`
/// somewhere reachable it simply lives on (with no finalizer; arm it again to re-arm).
///
/// An object has at most one finalizer: arming one that is armed already replaces its
/// finalizer, which then runs once. [`clear_finalizer`] disarms it (Go's
/// `SetFinalizer(obj, nil)`).
pub fn set_finalizer<T: Trace + Send + Sync + 'static>(
    m: &Mutator,
    obj: Gc<T>,
    f: fn(&Mutator, Gc<T>),
) {
    let _ = m;
    FIN.lock().unwrap().table.insert(
        obj.addr(),
        Finalizer {
            obj: obj.addr(),
            run: trampoline::<T>,
            f: f as *const (),
            type_name: std::any::type_name::<T>,
        },
    );
    FIN_THREAD.call_once(|| {
        std::thread::Builder::new()
            .name("gc-finalizer".into())
            .spawn(finalizer_thread)
            .expect("spawn finalizer thread");
    });
}

/// Roots of the finalizer machinery: queued objects and those whose finalizer is running
/// are marked; armed objects have their children marked, not themselves.
pub(crate) fn mark_finalizer_roots(t: &mut Tracer) {
    let f = FIN.lock().unwrap();
    for e in f.ready.iter() {
        t.mark_addr(e.obj);
    }
    for &obj in f.running.iter() {
        t.mark_addr(obj);
    }
    for &obj in f.table.keys() {
        t.trace_children(obj);
    }
}

/// Revives unmarked objects with finalizers and queues their finalizers.
pub(crate) fn queue_dead_finalizers(t: &mut Tracer) {
    let mut guard = FIN.lock().unwrap();
    let f = &mut *guard;
    let FinState { table, ready, .. } = f;
    table.retain(|&obj, e| {
        let Some(o) = gcapi::find_object(obj) else {
            // Not an object any more: cannot happen for an armed object (it is kept until
            // its finalizer is queued); drop the entry defensively.
            return false;
        };
        // SAFETY: marking is done; the world is stopped.
        if unsafe { gcapi::is_marked(o) } {
            return true;
        }
        t.mark_object(o);
        ready.push(*e);
        false
    });
}

pub(crate) fn wake_finalizer_thread() {
    let f = FIN.lock().unwrap();
    if !f.ready.is_empty() {
        FIN_CV.notify_all();
    }
}

fn finalizer_thread() {
    let mut m = attach();
    loop {
        m.blocking(|| {
            let mut f = FIN.lock().unwrap();
            while f.ready.is_empty() {
                f = FIN_CV.wait(f).unwrap();
            }
        });
        run_one(&m);
    }
}

/// Pops one queued finalizer and runs it. False if none was queued.
///
/// The object moves from `ready` to `running` in one critical section and leaves `running`
/// only after the finalizer returned, so it is a root all along: a finalizer may allocate
/// or collect before it uses its object, in both modes (the precise mode never scans this
/// thread's stack).
fn run_one(m: &Mutator) -> bool {
    let e = {
        let mut f = FIN.lock().unwrap();
        let Some(e) = f.ready.pop() else {
            return false;
        };
        f.running.push(e.obj);
        e
    };
    // A panicking finalizer is a fatal error (crate docs): unwinding would leave its object
    // on the running list, and `run_finalizers` would wait for it forever.
    let guard = FatalOnUnwind {
        what: "the finalizer",
        type_name: e.type_name,
    };
    // SAFETY: `e.obj` is a live object of the type `e.run` was built for (it was marked in
    // the cycle that queued it and has been a root since); the `running` list keeps it
    // rooted until the call returns.
    unsafe { (e.run)(m, e.obj, e.f) };
    std::mem::forget(guard);
    COUNTERS.finalizers_run.fetch_add(1, Ordering::Relaxed);
    let mut f = FIN.lock().unwrap();
    let i = f
        .running
        .iter()
        .rposition(|&o| o == e.obj)
        .expect("a running finalizer's object left the running list");
    f.running.swap_remove(i);
    drop(f);
    FIN_CV.notify_all();
    true
}

/// Runs queued finalizers on the calling mutator until none is queued or running.
pub(crate) fn run_pending(m: &mut Mutator) {
    while run_one(m) {}
    m.blocking(|| {
        let mut f = FIN.lock().unwrap();
        while !f.ready.is_empty() || !f.running.is_empty() {
            f = FIN_CV.wait(f).unwrap();
        }
    });
}

/// Disarms `obj`'s finalizer, like Go's `runtime.SetFinalizer(obj, nil)`. Returns true if
/// one was armed. A finalizer already queued (its object found unreachable) still runs.
pub fn clear_finalizer<T: Trace + 'static>(m: &Mutator, obj: Gc<T>) -> bool {
    let _ = m;
    FIN.lock().unwrap().table.remove(&obj.addr()).is_some()
}

/// Finalizers armed and not yet queued (for tests).
pub fn armed_finalizers() -> usize {
    FIN.lock().unwrap().table.len()
}
