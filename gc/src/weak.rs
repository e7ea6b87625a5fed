//! Weak references and finalizers (design §7; Go's `mfinal.go` and `mgcmark.go`
//! `markrootSpans`).
//!
//! Order: (1) objects reachable *from* objects with finalizers were marked with the roots;
//! then, once the mark has terminated, (2) weak references whose target is unmarked are
//! cleared; (3) each unmarked object with a finalizer is marked (revived for this cycle) and
//! its finalizer queued; (4) the finalizer thread runs the queue, each finalizer once.
//!
//! Steps 2 and 3 walk the weak and finalizer tables, so they run after the world restarts,
//! not inside mark termination's stop ([`settle`]): the stop only records how far the
//! tables reached ([`defer_settle`]). Until they have run, the cycle's mark bits must
//! stay as the mark left them, and no `Weak` may hand out a target the mark did not reach:
//! so the sweep of any span ([`crate::heap::sweep_span`]) and every `Weak` read settle
//! first, whichever thread gets there first doing the work while the others wait for it.
//! Weak cells and finalizers registered after the stop belong to objects the mark never
//! saw (unmarked, though alive): they are left for the next cycle.
//!
//! Queued objects are roots until their finalizer has returned: taking an entry off the
//! queue moves its object to the `running` list in the same critical section, and the
//! roots include that list (in both modes: the precise mode does not scan the stack of the
//! thread running the finalizer).

use crate::collector::FatalOnUnwind;
use crate::mark::Tracer;
use crate::mutator::{GC_FLAGS, MARKING, Mutator, attach};
use crate::stats::COUNTERS;
use crate::{Gc, Trace};
use gomalloc::gcapi;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
        settle();
        let p = self.cell.target.load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        // SAFETY: a non-zero target is alive: the cycle that finds it unreachable clears it
        // before any span is swept and before any `Weak` is read (`settle` above).
        let g = unsafe { Gc::from_ptr(p as *const T) };
        if GC_FLAGS.load(Ordering::Relaxed) & MARKING != 0 {
            crate::cell::shade(m, &g);
        }
        Some(g)
    }

    /// True once the target was collected.
    pub fn is_cleared(&self) -> bool {
        settle();
        self.cell.target.load(Ordering::Acquire) == 0
    }
}

// SAFETY: traces the weak cell (kept alive by the `Weak`), not the target.
unsafe impl<T> Trace for Weak<T> {
    fn trace(&self, t: &mut Tracer) {
        self.cell.trace(t)
    }
}

/// Clears weak references to unmarked objects and forgets dead weak cells, among the
/// first `n` cells of [`WEAKS`] (those registered before mark termination). Marking done,
/// no span swept since (see [`settle`]). Returns how many were cleared.
fn clear_dead_weaks(n: usize) -> usize {
    let mut cleared = 0;
    let mut w = WEAKS.lock().unwrap();
    let mut i = 0;
    w.retain(|&cell| {
        i += 1;
        if i > n {
            // Registered after the stop: its cell and target were not marked by this cycle.
            return true;
        }
        let alive = |a: usize| {
            // SAFETY: marking is done and no span was swept since (`settle`): the mark
            // bits are the cycle's.
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

// ---- after mark termination ----

/// Set by mark termination (world stopped) when the cycle's weak references and
/// finalizers are left for [`settle`]; cleared (release) once they are processed.
static UNSETTLED: AtomicBool = AtomicBool::new(false);
/// What [`settle`] has to process: the number of weak cells registered before mark
/// termination; `None` once processed.
static TO_SETTLE: Mutex<Option<usize>> = Mutex::new(None);
/// Mark terminations so far. A finalizer records the count when armed: one armed since
/// the last termination is for an object that termination's mark did not see.
static FIN_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Weak references the last [`settle`] cleared (for the cycle's report).
static LAST_CLEARED: AtomicUsize = AtomicUsize::new(0);

/// Leaves the cycle's weak references and finalizers to [`settle`]: O(1), for mark
/// termination's stop (world stopped, marking done, before the new sweep generation).
pub(crate) fn defer_settle() {
    let n = WEAKS.lock().unwrap().len();
    *TO_SETTLE.lock().unwrap() = Some(n);
    FIN_EPOCH.fetch_add(1, Ordering::Relaxed);
    UNSETTLED.store(true, Ordering::Release);
}

/// Processes what the last mark termination left (weak references to unmarked objects
/// cleared, unmarked objects with finalizers revived and queued), if that is not done yet.
/// Called by the collector as soon as the world restarts, and before every sweep of a span
/// and every read of a `Weak`, which must not see the cycle's results half done. Threads
/// arriving meanwhile wait for the one doing it.
#[inline]
pub(crate) fn settle() {
    if UNSETTLED.load(Ordering::Acquire) {
        settle_slow();
    }
}

#[cold]
#[inline(never)]
fn settle_slow() {
    let mut to_settle = TO_SETTLE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(weaks) = to_settle.take() else {
        // Another thread settled while this one waited for the lock.
        return;
    };
    let cleared = clear_dead_weaks(weaks);
    let mut t = Tracer::new();
    queue_dead_finalizers(&mut t, FIN_EPOCH.load(Ordering::Relaxed));
    // The revived objects' children were marked with the roots: this traces their fields.
    t.drain_some(usize::MAX);
    if t.marked_bytes != 0 {
        // Revived for one more cycle: live, and marked by this one.
        crate::heap::HEAP_LIVE.fetch_add(t.marked_bytes, Ordering::Relaxed);
        crate::pacer::HEAP_MARKED.fetch_add(t.marked_bytes, Ordering::Relaxed);
        crate::pacer::update_goal();
    }
    LAST_CLEARED.store(cleared, Ordering::Relaxed);
    UNSETTLED.store(false, Ordering::Release);
}

/// [`settle`], then the number of weak references the last settling cleared.
pub(crate) fn settle_and_count() -> usize {
    settle();
    LAST_CLEARED.load(Ordering::Relaxed)
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
    /// [`FIN_EPOCH`] when armed: the mark terminations before it saw the object.
    epoch: u64,
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
            epoch: FIN_EPOCH.load(Ordering::Relaxed),
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

/// Revives unmarked objects with finalizers and queues their finalizers, except those
/// armed since mark termination `epoch` (their objects were not seen by its mark).
fn queue_dead_finalizers(t: &mut Tracer, epoch: u64) {
    let mut guard = FIN.lock().unwrap();
    let f = &mut *guard;
    let FinState { table, ready, .. } = f;
    table.retain(|&obj, e| {
        if e.epoch == epoch {
            return true;
        }
        let Some(o) = gcapi::find_object(obj) else {
            // Not an object any more: cannot happen for an armed object (it is kept until
            // its finalizer is queued); drop the entry defensively.
            return false;
        };
        // SAFETY: marking is done and no span was swept since (`settle`): the mark bits
        // are the cycle's.
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
    settle();
    FIN.lock().unwrap().table.len()
}
