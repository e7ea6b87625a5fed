//! loom models of the concurrent mark's handshake with the mutators (design §8, step 7):
//! the barrier buffer, the flush rounds and the termination check; of the parallel
//! markers' termination (`src/workshare.rs`); and of the span-queued mark's grey bits
//! (`src/greentea.rs`, at the end of this file). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gomalloc-gc --test loom --release`.
//!
//! The protocol's accesses are the real code: `src/handshake.rs`, compiled here against
//! loom's atomics and mutex (the rest of the crate is not built under `cfg(loom)`). What
//! the models write themselves mirrors the real functions, with the same orderings:
//! * [`Mutator::shade`]: `src/cell.rs` `shade` (`Mutator::buffer_grey`, then
//!   `Mutator::flush_barrier` once the buffer holds `cell::BARRIER_BUF` addresses), with a
//!   buffer of [`BUF`] entries;
//! * [`Mutator::safepoint`]: `src/mutator.rs` `Mutator::safepoint` and
//!   `Mutator::safepoint_slow`;
//! * [`Mutator::park`]: `src/mutator.rs` `Mutator::park` (the world's mutex, condition
//!   variable and epoch);
//! * [`Mutator::detach`]: `src/mutator.rs` `impl Drop for Mutator` (a thread that reaches
//!   no more safepoints, as one entering `Mutator::blocking` does);
//! * [`flush_round`]: `src/collector.rs` `flush_round`, waiting without its 2 ms deadline
//!   until every thread is settled (a real thread that misses the deadline is flushed by
//!   the stop instead, which the models check as well);
//! * [`stop_the_world`], [`start_the_world`]: the `src/collector.rs` functions of those
//!   names (`ThreadRec::resume` for a parked thread);
//! * [`mark`]: the loop of `src/collector.rs` `run_concurrent_cycle` between its two
//!   stops (take `SHADE`, flush rounds, the termination stop and its restarts) and the
//!   drain of `collector::terminate`, with smaller bounds on rounds and restarts.
//!
//! In the models of properties (a) to (c) each mutator runs the same program
//! ([`Mutator::run`]): shade `a`, safepoint, shade `b`, safepoint, detach. So `b` is
//! shaded after any acknowledgement the first safepoint made, and a full buffer (two
//! entries) is handed off by `shade` itself. Faults they catch: (a) and the first
//! model of (c) fail if `Mutator::park` skips its hand-off, (a) fails if `acknowledge`
//! stores the acknowledgement before the hand-off, and (d) fails without the fence in
//! `acknowledge`.
#![cfg(loom)]

#[path = "../src/greentea.rs"]
mod greentea;
#[allow(dead_code)]
#[path = "../src/handshake.rs"]
mod handshake;
#[path = "../src/workshare.rs"]
mod workshare;

use handshake::{
    BLOCKING, FLUSH, PARKED, RUNNING, STOP, acknowledge, begin_flush_round, end_flush_round,
    hand_off, publish_stopped, requests, running, settled, shade_empty, take_shaded,
};
use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
use loom::thread;

/// The model's `cell::BARRIER_BUF`.
const BUF: usize = 2;
/// Mutator threads in every model (with the collector, the model's main thread).
const MUTATORS: usize = 2;

/// `mutator::World`: the fields the handshake uses, and whether the stop in progress or
/// last released was the one that declared marking done.
struct World {
    stw: bool,
    epoch: u64,
    ended: bool,
}

/// `mutator::ThreadRec`: the thread's state and its last acknowledged round.
struct Rec {
    state: AtomicU8,
    flushed: AtomicU64,
}

/// The collector's statics: `GC_FLAGS`, `FLUSH_ROUND`, `SHADE`, `WORLD`, `WORLD_CV`, and
/// the thread list.
struct Shared {
    flags: AtomicU8,
    round: AtomicU64,
    shade: Mutex<Vec<usize>>,
    recs: Vec<Rec>,
    world: Mutex<World>,
    world_cv: Condvar,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            flags: AtomicU8::new(0),
            round: AtomicU64::new(0),
            shade: Mutex::new(Vec::new()),
            recs: (0..MUTATORS)
                .map(|_| Rec {
                    state: AtomicU8::new(RUNNING),
                    flushed: AtomicU64::new(0),
                })
                .collect(),
            world: Mutex::new(World {
                stw: false,
                epoch: 0,
                ended: false,
            }),
            world_cv: Condvar::new(),
        })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }
}

/// The address mutator `id` shades `k`-th.
fn ptr(id: usize, k: usize) -> usize {
    1 + 2 * id + k
}

/// One attached thread: its barrier buffer, and what it shaded (the models' ground truth,
/// kept outside the protocol).
struct Mutator {
    s: Arc<Shared>,
    id: usize,
    buf: Vec<usize>,
    shaded: Vec<usize>,
    /// How many of `shaded` were shaded before the thread stopped for the stop that
    /// declared marking done.
    before_end: Option<usize>,
}

impl Mutator {
    fn new(s: Arc<Shared>, id: usize) -> Self {
        Mutator {
            s,
            id,
            buf: Vec::with_capacity(BUF),
            shaded: Vec::new(),
            before_end: None,
        }
    }

    fn rec(&self) -> &Rec {
        &self.s.recs[self.id]
    }

    /// `cell::shade`: the object goes to the buffer, the buffer to `SHADE` when full.
    fn shade(&mut self, p: usize) {
        self.shaded.push(p);
        self.buf.push(p);
        if self.buf.len() >= BUF {
            hand_off(&mut self.buf, &self.s.shade);
        }
    }

    /// `Mutator::safepoint` and `safepoint_slow` (no open borrow).
    fn safepoint(&mut self) {
        let flags = requests(&self.s.flags);
        if flags & (STOP | FLUSH) != 0 {
            if flags & FLUSH != 0 {
                let s = self.s.clone();
                acknowledge(&s.round, &s.recs[self.id].flushed, &mut self.buf, &s.shade);
            }
            if flags & STOP != 0 {
                self.park();
            }
        }
    }

    /// `Mutator::park`.
    fn park(&mut self) {
        hand_off(&mut self.buf, &self.s.shade);
        let s = self.s.clone();
        let mut w = s.world();
        if !w.stw {
            return;
        }
        let epoch = w.epoch;
        publish_stopped(&self.rec().state, PARKED);
        s.world_cv.notify_all();
        while w.epoch == epoch {
            w = s.world_cv.wait(w).unwrap();
        }
        if w.ended && self.before_end.is_none() {
            self.before_end = Some(self.shaded.len());
        }
    }

    /// The drop of a `Mutator`; returns what the thread shaded before marking was
    /// declared done.
    fn detach(mut self) -> Vec<usize> {
        hand_off(&mut self.buf, &self.s.shade);
        let s = self.s.clone();
        let mut w = s.world();
        publish_stopped(&self.rec().state, BLOCKING);
        s.world_cv.notify_all();
        if !w.ended {
            // Stopped from now on (the state is published under the world's lock): a
            // declaration that marking is done comes after this.
            self.before_end = Some(self.shaded.len());
        }
        while w.stw {
            w = s.world_cv.wait(w).unwrap();
        }
        let n = self
            .before_end
            .expect("marking was declared done while this thread was running");
        self.shaded.truncate(n);
        self.shaded
    }

    /// The program every model runs on each mutator.
    fn run(mut self) -> Vec<usize> {
        self.shade(ptr(self.id, 0));
        self.safepoint();
        self.shade(ptr(self.id, 1));
        self.safepoint();
        self.detach()
    }
}

fn spawn_mutators(s: &Arc<Shared>) -> Vec<thread::JoinHandle<Vec<usize>>> {
    (0..MUTATORS)
        .map(|id| {
            let s = s.clone();
            thread::spawn(move || Mutator::new(s, id).run())
        })
        .collect()
}

/// `collector::flush_round` (no collecting mutator): true if `SHADE` holds objects.
fn flush_round(s: &Shared) -> bool {
    let round = begin_flush_round(&s.round, &s.flags);
    while s.recs.iter().any(|t| !settled(&t.state, &t.flushed, round)) {
        thread::yield_now();
    }
    end_flush_round(&s.flags);
    !shade_empty(&s.shade)
}

/// `collector::stop_the_world`, whose yields without the world lock are bounded here by
/// a count ([`STOP_YIELDS`]) where the real ones are bounded by `collector::STOP_SPIN`.
fn stop_the_world(s: &Shared) {
    let others_running = || s.recs.iter().any(|t| running(&t.state));
    let mut w = s.world();
    w.stw = true;
    s.flags.fetch_or(STOP, Ordering::SeqCst);
    if others_running() {
        drop(w);
        for _ in 0..STOP_YIELDS {
            if !others_running() {
                break;
            }
            thread::yield_now();
        }
        w = s.world();
    }
    while others_running() {
        w = s.world_cv.wait(w).unwrap();
    }
}

/// Yields of [`stop_the_world`] before it waits on the condition variable.
const STOP_YIELDS: usize = 1;

/// `collector::start_the_world`; `ended` says the stop declared marking done.
fn start_the_world(s: &Shared, ended: bool) {
    let mut w = s.world();
    s.flags.fetch_and(!STOP, Ordering::SeqCst);
    w.stw = false;
    w.epoch += 1;
    w.ended = ended;
    for t in &s.recs {
        if t.state.load(Ordering::Relaxed) == PARKED {
            t.state.store(RUNNING, Ordering::Release);
        }
    }
    drop(w);
    s.world_cv.notify_all();
}

/// `collector::run_concurrent_cycle` from the restart after mark start to mark
/// termination's drain, with at most `max_rounds` flush rounds per concurrent phase and
/// `max_restarts` restarts of the termination stop. Returns with the world stopped and
/// every object it took from `SHADE` (what the real marker traces).
fn mark(s: &Shared, max_rounds: u32, max_restarts: u32) -> Vec<usize> {
    let mut marked = Vec::new();
    let mut restarts = 0;
    loop {
        let mut rounds = 0;
        loop {
            let shaded = take_shaded(&s.shade);
            if !shaded.is_empty() {
                marked.extend(shaded);
                continue;
            }
            if rounds == max_rounds || !flush_round(s) {
                break;
            }
            rounds += 1;
        }
        stop_the_world(s);
        let shaded = take_shaded(&s.shade);
        if shaded.is_empty() || restarts == max_restarts {
            marked.extend(shaded);
            break;
        }
        marked.extend(shaded);
        restarts += 1;
        start_the_world(s, false);
    }
    // `terminate`: with the world stopped, what `SHADE` still holds.
    marked.extend(take_shaded(&s.shade));
    marked
}

/// Ends a model: releases the world (marking declared done), joins the mutators, and
/// checks that `marked` holds everything they shaded before the declaration.
fn finish(s: &Shared, mutators: Vec<thread::JoinHandle<Vec<usize>>>, marked: &[usize]) {
    start_the_world(s, true);
    for m in mutators {
        for p in m.join().unwrap() {
            assert!(
                marked.contains(&p),
                "object {p} shaded before marking was declared done is lost \
                 (marked: {marked:?})"
            );
        }
    }
}

/// Runs `f` under loom with at most 2 preemptions per execution, or
/// `LOOM_MAX_PREEMPTIONS` when set. 2 keeps each model to a few seconds; 3 passes too,
/// in about 100 s for the five models on one thread.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// (a) Once the collector saw every thread settled for a round, `SHADE` holds every object
/// a thread shaded before it acknowledged the round (or stopped): none is left in a
/// buffer. Each mutator shaded `a` before its first safepoint, so `a` is there.
#[test]
fn acked_round_finds_every_earlier_shade() {
    check(|| {
        let s = Shared::new();
        let mutators = spawn_mutators(&s);
        flush_round(&s);
        let taken = take_shaded(&s.shade);
        for id in 0..MUTATORS {
            assert!(
                taken.contains(&ptr(id, 0)),
                "mutator {id} acknowledged the round with object {} in its buffer \
                 (taken: {taken:?})",
                ptr(id, 0)
            );
        }
        stop_the_world(&s);
        let mut marked = taken;
        marked.extend(take_shaded(&s.shade));
        finish(&s, mutators, &marked);
    });
}

/// A mutator whose safepoint saw a round's `FLUSH` acknowledges that round (or a later
/// one), so the collector does not wait out its deadline for a thread that flushed. The
/// request flags are read relaxed: without the fence in `acknowledge` the round read
/// could be the one before (collector: round 0 -> 1, raise `FLUSH`; mutator: sees
/// `FLUSH`, reads round 0, acknowledges 0).
#[test]
fn ack_names_the_round_whose_flag_it_saw() {
    check(|| {
        let s = Shared::new();
        let s2 = s.clone();
        let m = thread::spawn(move || {
            let mut m = Mutator::new(s2, 0);
            m.shade(ptr(0, 0));
            let saw_flush = requests(&m.s.flags) & FLUSH != 0;
            m.safepoint();
            if saw_flush {
                let acked = m.rec().flushed.load(Ordering::Relaxed);
                assert!(
                    acked >= 1,
                    "saw round 1's FLUSH, acknowledged round {acked}"
                );
            }
        });
        begin_flush_round(&s.round, &s.flags);
        m.join().unwrap();
    });
}

/// (b) An object shaded after its thread acknowledged a round (`b`, after the first
/// safepoint) is found by the next round or by the stop: two rounds, then the stop, and
/// nothing shaded before the stop is lost.
#[test]
fn shade_after_ack_reaches_a_later_round_or_the_stop() {
    check(|| {
        let s = Shared::new();
        let mutators = spawn_mutators(&s);
        let mut marked = Vec::new();
        for _ in 0..2 {
            flush_round(&s);
            marked.extend(take_shaded(&s.shade));
        }
        stop_the_world(&s);
        marked.extend(take_shaded(&s.shade));
        finish(&s, mutators, &marked);
    });
}

/// (c) The marker's loop: termination is declared (world stopped, `SHADE` empty after the
/// stop or the restarts spent) only when no shaded object is still buffered or being
/// handed off: every thread is stopped, its buffer empty, and everything it shaded was
/// taken. One round per phase and one restart, so both the round and the restart path run.
#[test]
fn termination_never_leaves_a_shade_in_flight() {
    check(|| {
        let s = Shared::new();
        let mutators = spawn_mutators(&s);
        let marked = mark(&s, 1, 1);
        assert!(s.recs.iter().all(|t| !running(&t.state)));
        assert!(shade_empty(&s.shade));
        finish(&s, mutators, &marked);
    });
}

/// (c) with the real code's shape of a phase that may run several rounds before the stop,
/// and no restart: the stop alone must catch what the rounds missed.
#[test]
fn termination_after_rounds_without_restart() {
    check(|| {
        let s = Shared::new();
        let mutators = spawn_mutators(&s);
        let marked = mark(&s, 2, 0);
        assert!(s.recs.iter().all(|t| !running(&t.state)));
        finish(&s, mutators, &marked);
    });
}

// ---- the markers' termination (`src/workshare.rs`) ----
//
// `n` markers trace a small object graph with the real `workshare::run_marker` and
// `WorkList`; each marker's drain mirrors `src/mark.rs` `Tracer::drain_shared` (grey an
// object with a swap of its mark, as `gcapi::mark`'s `fetch_or`; give the bottom half of
// the stack to the list while a marker is idle), with a sharing threshold of 2. The
// property: a marker returns only when every object reachable from the roots has been
// traced, by whichever marker. Faults they catch: counting a marker idle before its
// failed pop (it may then take a chunk while counted) makes the first model fail its
// assertion; leaving a marker counted when it sees work makes both fail (the count then
// passes `n` and the markers spin forever, which loom reports as a model too long).

/// Objects of the graph: 0 and 1 are roots (one per marker's starting stack); 0 points at
/// 2 and 3, 2 at 4 and 5, 1 at 3 (shared with 0's subtree) and 6.
const OBJECTS: usize = 7;

fn children(p: usize) -> &'static [usize] {
    match p {
        0 => &[2, 3],
        1 => &[3, 6],
        2 => &[4, 5],
        _ => &[],
    }
}

/// The mark bits and the count of objects traced (the ground truth).
struct Graph {
    marks: Vec<AtomicBool>,
    traced: AtomicUsize,
}

/// One marker: `roots` on its stack at the start, as the collector's tracer has the roots
/// and a helper has nothing.
fn run_model_marker(
    g: &Graph,
    work: &workshare::WorkList,
    idle: &AtomicUsize,
    n: usize,
    roots: Vec<usize>,
) {
    let mut stack = roots;
    workshare::run_marker(work, idle, n, |chunk| {
        if let Some(c) = chunk {
            stack = c;
        }
        while let Some(p) = stack.pop() {
            g.traced.fetch_add(1, Ordering::Relaxed);
            for &c in children(p) {
                if !g.marks[c].swap(true, Ordering::Relaxed) {
                    stack.push(c);
                }
            }
            if n > 1 && stack.len() >= 2 && idle.load(Ordering::Relaxed) > 0 {
                let top = stack.split_off(stack.len() / 2);
                work.push(std::mem::replace(&mut stack, top));
            }
        }
    });
    // Every marker's tracing happens before the increments that brought `idle` to `n`,
    // and this marker read `n` with acquire: it sees every trace.
    assert_eq!(
        g.traced.load(Ordering::Relaxed),
        OBJECTS,
        "a marker returned with objects left to trace"
    );
}

/// `n` markers, the first starting with `roots[0]` greyed, the others with `roots[i]`.
fn markers(roots: &'static [&'static [usize]]) {
    let n = roots.len();
    let g = Arc::new(Graph {
        marks: (0..OBJECTS).map(|_| AtomicBool::new(false)).collect(),
        traced: AtomicUsize::new(0),
    });
    for r in roots.iter().flat_map(|r| r.iter()) {
        g.marks[*r].store(true, Ordering::Relaxed);
    }
    let work = Arc::new(workshare::WorkList::new());
    let idle = Arc::new(AtomicUsize::new(0));
    let helpers: Vec<_> = roots[1..]
        .iter()
        .map(|r| {
            let (g, work, idle) = (g.clone(), work.clone(), idle.clone());
            thread::spawn(move || run_model_marker(&g, &work, &idle, n, r.to_vec()))
        })
        .collect();
    run_model_marker(&g, &work, &idle, n, roots[0].to_vec());
    for h in helpers {
        h.join().unwrap();
    }
    assert!(work.is_empty());
    assert!(g.marks.iter().all(|m| m.load(Ordering::Relaxed)));
}

/// The real shape: the collector's tracer holds the roots, a helper starts with nothing
/// and lives on what is shared with it.
#[test]
fn markers_return_only_when_every_object_is_traced() {
    check(|| markers(&[&[0, 1], &[]]));
}

/// Both markers start with work, and their subtrees share an object.
#[test]
fn markers_with_roots_each_terminate_once() {
    check(|| markers(&[&[0], &[1]]));
}

// --- The stack handshake ---------------------------------------------------------------
//
// A concurrent mark owes every thread that its first stop stopped a scan of its stack
// (`handshake::owe_scan`). The thread scans itself when it runs again
// (`src/mutator.rs` `Mutator::scan_own_stack`, through `handshake::resume_scan`), or the
// collector scans it while it stays stopped (`src/collector.rs` `scan_stopped_stacks`,
// through `handshake::claim_scan` and `handshake::end_scan`). The model's thread has
// one word of stack, a loom `UnsafeCell`, so that loom reports any read of it by the
// collector that is not ordered with the thread's writes. The property: exactly one scan
// happens, it reads the stack as the thread left it when it stopped, and no scan races
// with the thread's writes once it runs on. Faults it catches: a relaxed `end_scan`, or a
// relaxed success ordering in `resume_scan`, is a data race on the stack word; a
// `resume_scan` that does not wait while the collector scans is one too; a `claim_scan`
// that does not look at the thread's state reads the stack while the thread writes it;
// a `resume_scan` that marks the scan done when it claims it, not at its end, lets the
// collector end the mark while the thread still scans.

/// One thread, stopped as `stopped` (`PARKED` or `BLOCKING`) and then running on, and the
/// collector, scanning the stacks still owed until none is.
fn stack_handshake(stopped: u8) {
    let state = Arc::new(AtomicU8::new(RUNNING));
    let scan = Arc::new(AtomicU8::new(handshake::STACK_OWED));
    let stack = Arc::new(loom::cell::UnsafeCell::new(0usize));
    let scans = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (state, scan, stack, scans) =
            (state.clone(), scan.clone(), stack.clone(), scans.clone());
        thread::spawn(move || {
            // The program ran until the stop; its stack holds 1.
            stack.with_mut(|w| unsafe { *w = 1 });
            publish_stopped(&state, stopped);
            // Running again (`ThreadRec::resume`, under the world lock in the real code).
            state.store(RUNNING, Ordering::Release);
            if handshake::resume_scan(&scan) {
                assert_eq!(stack.with(|w| unsafe { *w }), 1);
                scans.fetch_add(1, Ordering::Relaxed);
                handshake::end_scan(&scan);
            }
            // The program runs on and changes its stack.
            stack.with_mut(|w| unsafe { *w = 2 });
        })
    };
    loop {
        if handshake::claim_scan(&state, &scan).is_some() {
            assert_eq!(
                stack.with(|w| unsafe { *w }),
                1,
                "the collector read a changed stack"
            );
            scans.fetch_add(1, Ordering::Relaxed);
            handshake::end_scan(&scan);
        } else if !handshake::scan_pending(&scan) {
            // Pending until the scan ended, whoever made it: the collector ends the mark
            // only after it.
            assert_eq!(
                scans.load(Ordering::Relaxed),
                1,
                "the mark went on before the scan ended"
            );
            break;
        } else {
            thread::yield_now();
        }
    }
    thread.join().unwrap();
    assert_eq!(
        scans.load(Ordering::Relaxed),
        1,
        "the stack was not scanned exactly once"
    );
}

/// A thread parked at a safepoint or waiting for a cycle's end.
#[test]
fn a_parked_thread_is_scanned_once_by_itself_or_the_collector() {
    check(|| stack_handshake(PARKED));
}

/// A thread in a blocking region (the collector reads its copy in the real code; the
/// model reads the stack itself, the stricter case).
#[test]
fn a_blocking_thread_is_scanned_once_by_itself_or_the_collector() {
    check(|| stack_handshake(BLOCKING));
}

/// A scan of the span-queued mark (`Tracer::scan_span`): the summary, then each word it
/// names.
fn scan_span(words: &[AtomicU64], queued: &AtomicU64) -> Vec<u64> {
    let summary = greentea::dequeue(queued);
    words
        .iter()
        .enumerate()
        .map(|(w, word)| {
            if summary & (1 << (w % 64)) != 0 {
                greentea::take(word)
            } else {
                0
            }
        })
        .collect()
}

/// The span-queued mark's grey bits (`src/greentea.rs`): one marker greys an object of a
/// span (bit 0 of its second grey word) while another scans the span, which it took from
/// a queue where the grey of an object of the first word put it. Every grey object is
/// scanned exactly once: by the scan in progress, or by the scan of the entry that the
/// second grey queued again. With either of the protocol's acquire-release orderings
/// relaxed (the grey's `fetch_or` of its bit, the scan's swap of a word), the next model
/// finds an object never scanned.
#[test]
fn a_span_queued_grey_is_scanned_exactly_once() {
    check(|| {
        let words = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let queued = Arc::new(AtomicU64::new(0));
        assert!(
            greentea::grey(&words[0], 0, 0, &queued),
            "the first grey queues the span"
        );
        let scanner = {
            let (words, queued) = (words.clone(), queued.clone());
            thread::spawn(move || scan_span(&words[..], &queued))
        };
        let requeued = greentea::grey(&words[1], 1, 0, &queued);
        let scanned = scanner.join().unwrap();
        // The entry the second grey queued, if it queued one, is scanned after.
        let later = if requeued {
            scan_span(&words[..], &queued)
        } else {
            vec![0, 0]
        };
        for w in 0..2 {
            assert_eq!(scanned[w] & later[w], 0, "an object scanned twice");
            assert_eq!(scanned[w] | later[w], 1, "a grey object never scanned");
            assert_eq!(words[w].load(Ordering::Relaxed), 0);
        }
        assert_eq!(queued.load(Ordering::Relaxed), 0, "a span left queued");
    });
}

/// Two markers grey objects of one span (in its two words) while a third thread scans it
/// after the first grey queued it; whoever queues the span again scans it. No grey is
/// lost and none is scanned twice.
#[test]
fn two_markers_and_a_scanner_lose_no_grey() {
    check(|| {
        let words = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let queued = Arc::new(AtomicU64::new(0));
        assert!(greentea::grey(&words[0], 0, 0, &queued));
        let scanner = {
            let (words, queued) = (words.clone(), queued.clone());
            thread::spawn(move || scan_span(&words[..], &queued))
        };
        let marker = {
            let (words, queued) = (words.clone(), queued.clone());
            thread::spawn(move || {
                if greentea::grey(&words[1], 1, 0, &queued) {
                    scan_span(&words[..], &queued)
                } else {
                    vec![0, 0]
                }
            })
        };
        let mine = if greentea::grey(&words[0], 0, 1, &queued) {
            scan_span(&words[..], &queued)
        } else {
            vec![0, 0]
        };
        let (a, b) = (scanner.join().unwrap(), marker.join().unwrap());
        // A span queued after the scans above ran is still owed its scan.
        let rest = if queued.load(Ordering::Relaxed) != 0 {
            scan_span(&words[..], &queued)
        } else {
            vec![0, 0]
        };
        let mut all = [0u64; 2];
        for s in [&a, &b, &mine, &rest] {
            for w in 0..2 {
                assert_eq!(all[w] & s[w], 0, "an object scanned twice");
                all[w] |= s[w];
            }
        }
        assert_eq!(all, [0b11, 0b1], "a grey object never scanned");
    });
}
