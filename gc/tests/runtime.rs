//! Process-wide behaviour: the pacer's goal formula and its environment variables, the
//! finalizer thread, the tiny allocator's block freeing and debug poisoning. The tests
//! that collect run one at a time (exact heap numbers need no other test's garbage in
//! flight); the start-up and abort cases run in child processes (re-executions of this
//! binary with an environment variable naming the case).
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

mod common;
use common::{Link, list_sum};

use gc::{Gc, Lock, Root};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "common/child.rs"]
mod child;
#[path = "common/serial.rs"]
mod serial;
use child::child;
use serial::{alone, serial};

fn list(m: &gc::Mutator, n: u64) -> Root<Link> {
    let mut head = Gc::new(
        m,
        Link {
            value: 0,
            next: Lock::new(None),
        },
    );
    let root = Root::new(head);
    for i in 1..n {
        let next = Gc::new(
            m,
            Link {
                value: i,
                next: Lock::new(None),
            },
        );
        head.next.set(m, Some(next));
        head = next;
    }
    root
}

/// The design's goal, `max(marked * (1 + GOGC/100), 4 MiB * GOGC/100)`, in the integers
/// the pacer uses (`marked + marked * GOGC / 100`, rounded down).
fn want_goal(marked: usize, pct: usize) -> usize {
    (marked + marked * pct / 100).max(gc::MIN_HEAP * pct / 100)
}

/// With about 6 MiB live (250,000 nodes in 24-byte slots, above the 4 MiB minimum): the
/// goal after a cycle, and after changing GOGC, is `marked * (1 + GOGC/100)`.
#[inline(never)]
fn goal_with_a_big_live_heap(m: &gc::Mutator) {
    let big = list(m, 250_000);
    for pct in [100, 50, 300] {
        gc::set_gc_percent(pct as i64);
        gc::collect();
        let st = gc::stats();
        assert!(st.heap_marked >= 250_000 * 24, "{st:?}");
        assert_eq!(
            st.heap_goal,
            want_goal(st.heap_marked, pct),
            "GOGC={pct}: {st:?}"
        );
        assert!(st.heap_goal > gc::MIN_HEAP * pct / 100, "{st:?}");
        // Changing GOGC recomputes the goal from the same marked bytes.
        gc::set_gc_percent(200);
        assert_eq!(gc::stats().heap_goal, want_goal(st.heap_marked, 200));
    }
    assert_eq!(list_sum(Some(big.get())).0, 250_000);
}

#[test]
fn heap_goal_follows_live_heap_and_gogc() {
    let _s = serial();
    let m = gc::attach();
    let old_limit = gc::set_memory_limit(u64::MAX);
    let old_pct = gc::set_gc_percent(100);
    goal_with_a_big_live_heap(&m);
    gc::debug::clear_stack(64 << 10);
    // A small live heap: the minimum, 4 MiB * GOGC/100, decides.
    for pct in [100, 50] {
        gc::set_gc_percent(pct as i64);
        gc::collect();
        let st = gc::stats();
        assert!(st.heap_marked < 1 << 20, "{st:?}");
        assert_eq!(st.heap_goal, gc::MIN_HEAP * pct / 100, "GOGC={pct}: {st:?}");
    }
    // GOGC off: no goal.
    gc::set_gc_percent(-1);
    assert_eq!(gc::stats().heap_goal, usize::MAX);
    gc::set_gc_percent(old_pct);
    gc::set_memory_limit(old_limit);
}

/// `GOMALLOC_GOGC` and `GOMALLOC_GCMEMLIMIT` are read at start-up (children with the
/// variables set; `ENV_CHILD` says what they must see).
#[test]
fn environment_sets_gogc_and_memory_limit() {
    if let Ok(want) = std::env::var("ENV_CHILD") {
        let (pct, limit) = want.split_once(',').unwrap();
        let st = gc::stats();
        assert_eq!(st.gc_percent, pct.parse::<i64>().unwrap(), "{st:?}");
        assert_eq!(st.memory_limit, limit.parse::<u64>().unwrap(), "{st:?}");
        if st.gc_percent > 0 && st.memory_limit == u64::MAX {
            assert_eq!(st.heap_goal, gc::MIN_HEAP * st.gc_percent as usize / 100);
        }
        println!("ENV_CHILD checked");
        return;
    }
    for (gogc, limit, want) in [
        ("37", "300MiB", format!("37,{}", 300u64 << 20)),
        ("off", "1GiB", format!("-1,{}", 1u64 << 30)),
        ("250", "off", format!("250,{}", u64::MAX)),
    ] {
        let out = child(
            "environment_sets_gogc_and_memory_limit",
            &[
                ("ENV_CHILD", &want),
                ("GOMALLOC_GOGC", gogc),
                ("GOMALLOC_GCMEMLIMIT", limit),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ENV_CHILD checked"),
            "GOGC={gogc} GCMEMLIMIT={limit}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A bad value in one of the collector's variables is reported on stderr, one line naming
/// the variable and the value, and the default is used (the heap's settings behave alike).
#[test]
fn bad_environment_values_are_reported_and_ignored() {
    if std::env::var("BAD_ENV_CHILD").is_ok() {
        let st = gc::stats();
        assert_eq!(st.gc_percent, 100, "{st:?}");
        assert_eq!(st.memory_limit, u64::MAX, "{st:?}");
        println!("BAD_ENV_CHILD checked");
        return;
    }
    let out = child(
        "bad_environment_values_are_reported_and_ignored",
        &[
            ("BAD_ENV_CHILD", "1"),
            ("GOMALLOC_GOGC", "lots"),
            ("GOMALLOC_GCMEMLIMIT", "12 parsecs"),
            ("GOMALLOC_GCPROCS", "0"),
            ("GOMALLOC_GCTRACE", "yes"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("BAD_ENV_CHILD checked"),
        "{stdout}{stderr}"
    );
    for want in [
        "gomalloc-gc: GOMALLOC_GOGC=\"lots\" is not a percentage or `off`; using 100",
        "gomalloc-gc: GOMALLOC_GCMEMLIMIT=\"12 parsecs\" is not a byte count",
        "gomalloc-gc: GOMALLOC_GCPROCS=\"0\" is not a number of threads, at least 1",
        "gomalloc-gc: GOMALLOC_GCTRACE=\"yes\" is not `0` or `1`; using 0",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in: {stderr}");
    }
}

const FINALIZED: usize = 64;
static RUNS: [AtomicUsize; FINALIZED] = [const { AtomicUsize::new(0) }; FINALIZED];
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static THREADS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_finalizer(_: &gc::Mutator, n: Gc<Link>) {
    RUNS[n.value as usize].fetch_add(1, Ordering::SeqCst);
    let name = std::thread::current().name().unwrap_or("").to_string();
    THREADS.lock().unwrap().push(name);
    TOTAL.fetch_add(1, Ordering::SeqCst);
}

#[inline(never)]
fn arm(m: &gc::Mutator) {
    for i in 0..FINALIZED {
        let n = Gc::new(
            m,
            Link {
                value: i as u64,
                next: Lock::new(None),
            },
        );
        gc::set_finalizer(m, n, record_finalizer);
    }
}

/// Finalizers run on the collector's finalizer thread without anyone calling
/// `run_finalizers`, each exactly once.
#[test]
fn finalizer_thread_runs_each_finalizer_once() {
    let _s = serial();
    let mut m = gc::attach();
    arm(&m);
    gc::debug::clear_stack(64 << 10);
    gc::collect();
    // Wait for the finalizer thread (bounded; no timing is asserted). The wait is a
    // blocking region, so that this thread never holds up a collection.
    for _ in 0..20_000 {
        if TOTAL.load(Ordering::SeqCst) >= FINALIZED {
            break;
        }
        m.blocking(|| std::thread::sleep(std::time::Duration::from_millis(1)));
    }
    assert_eq!(
        TOTAL.load(Ordering::SeqCst),
        FINALIZED,
        "the finalizer thread did not run every finalizer"
    );
    // More cycles (and an explicit drain) run nothing again: the objects, revived for
    // one cycle, die without their finalizer.
    gc::collect();
    gc::collect();
    m.run_finalizers();
    for (i, r) in RUNS.iter().enumerate() {
        assert_eq!(r.load(Ordering::SeqCst), 1, "finalizer of object {i}");
    }
    let me = std::thread::current().name().map(str::to_string);
    let threads = THREADS.lock().unwrap();
    assert_eq!(threads.len(), FINALIZED);
    for t in threads.iter() {
        assert_eq!(t, "gc-finalizer", "a finalizer ran on {t:?}");
        assert_ne!(Some(t), me.as_ref());
    }
}

static FIRST: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static SECOND: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

fn first_finalizer(_: &gc::Mutator, n: Gc<Link>) {
    FIRST[n.value as usize].fetch_add(1, Ordering::SeqCst);
}

fn second_finalizer(_: &gc::Mutator, n: Gc<Link>) {
    SECOND[n.value as usize].fetch_add(1, Ordering::SeqCst);
}

/// Object 0 armed with one finalizer and then another, object 1 armed twice with the same
/// one, object 2 armed and disarmed. Returns the number of armed finalizers this added.
#[inline(never)]
fn arm_twice_and_disarm(m: &gc::Mutator) -> usize {
    let before = gc::armed_finalizers();
    let n: Vec<Gc<Link>> = (0..3)
        .map(|i| {
            Gc::new(
                m,
                Link {
                    value: i,
                    next: Lock::new(None),
                },
            )
        })
        .collect();
    gc::set_finalizer(m, n[0], first_finalizer);
    gc::set_finalizer(m, n[0], second_finalizer);
    gc::set_finalizer(m, n[1], first_finalizer);
    gc::set_finalizer(m, n[1], first_finalizer);
    gc::set_finalizer(m, n[2], first_finalizer);
    assert!(gc::clear_finalizer(m, n[2]), "object 2 had a finalizer");
    assert!(
        !gc::clear_finalizer(m, n[2]),
        "object 2 was disarmed already"
    );
    gc::armed_finalizers() - before
}

/// An object has at most one finalizer (arming it again replaces it, and it runs once), and
/// `clear_finalizer` disarms it (Go's `SetFinalizer(obj, nil)`).
#[test]
fn a_finalizer_armed_twice_runs_once_and_a_cleared_one_never() {
    let _s = serial();
    let mut m = gc::attach();
    assert_eq!(
        arm_twice_and_disarm(&m),
        2,
        "one armed finalizer per object"
    );
    gc::debug::clear_stack(64 << 10);
    gc::collect();
    m.run_finalizers();
    gc::collect();
    m.run_finalizers();
    let runs = |a: &[AtomicUsize; 3]| a.each_ref().map(|c| c.load(Ordering::SeqCst));
    assert_eq!(runs(&FIRST), [0, 1, 0], "runs of the first finalizer");
    assert_eq!(runs(&SECOND), [1, 0, 0], "runs of the second finalizer");
}

/// Three tiny objects in one 16-byte block, `a` rooted: after a full cycle and sweep the
/// block is still allocated. Returns the objects' addresses, inverted (invisible to the
/// conservative scan); the root dies with this frame.
#[inline(never)]
fn tiny_block_while_one_lives(m: &gc::Mutator) -> [usize; 3] {
    let a = Gc::new(m, 0xAAAA_AAAAu32);
    let b = Gc::new(m, 0xBBBB_BBBBu32);
    let c = Gc::new(m, 0xCCCC_CCCC_CCCC_CCCCu64);
    let p = [
        Gc::as_ptr(a) as usize,
        Gc::as_ptr(b) as usize,
        Gc::as_ptr(c) as usize,
    ];
    assert_eq!((p[1] - p[0], p[2] - p[0]), (4, 8), "one block");
    assert_eq!(p[0] % 16, 0);
    let hidden = p.map(|x| !x);
    let a = Root::new(a);
    #[inline(never)]
    fn cycles() {
        gc::debug::clear_stack(64 << 10);
        // One cycle: `collect` returns with its sweep done, so the slot is swept (poisoned).
        gc::collect();
    }
    cycles();
    for x in hidden {
        assert!(
            gomalloc::gcapi::find_object(!x).is_some(),
            "the block was freed while `a` lives"
        );
    }
    assert_eq!(*a.get(), 0xAAAA_AAAA);
    hidden
}

/// The block lives while any of its objects does, and is freed when all are dead.
#[test]
fn tiny_block_is_freed_when_all_its_objects_are_dead() {
    alone(|| {
        let m = gc::attach();
        let hidden = tiny_block_while_one_lives(&m);
        gc::debug::clear_stack(64 << 10);
        gc::collect();
        gc::collect();
        for x in hidden {
            assert!(
                gomalloc::gcapi::find_object(!x).is_none(),
                "a tiny block whose objects are all dead is still allocated"
            );
        }
    })
}

/// A `Gc` kept where the collector cannot see it: its object is swept, the slot poisoned
/// (0xdb) and `Gc::deref` refuses it (debug builds). Runs in a child: the check panics.
#[test]
#[cfg(debug_assertions)]
fn use_after_a_missed_root_is_caught_in_debug_builds() {
    #[inline(never)]
    fn hidden_node(m: &gc::Mutator) -> Box<usize> {
        let n = Gc::new(
            m,
            Link {
                value: 42,
                next: Lock::new(None),
            },
        );
        Box::new(!(Gc::as_ptr(n) as usize))
    }
    if std::env::var_os("POISON_CHILD").is_some() {
        let m = gc::attach();
        // A rooted neighbour keeps the span in use, so the freed slot stays readable.
        let _keep = list(&m, 4);
        let hidden = hidden_node(&m);
        gc::debug::clear_stack(64 << 10);
        gc::collect();
        gc::collect();
        let p = !*hidden as *const Link;
        // SAFETY: the slot's span is still in use (a neighbour lives): its memory is
        // mapped; it is read as plain bytes, never as a `Link`.
        let header = unsafe { std::ptr::read_volatile(p.cast::<u8>().sub(8).cast::<[u8; 8]>()) };
        println!("header bytes {header:x?}");
        assert_eq!(header, [0xdb; 8], "the swept slot is not poisoned");
        // SAFETY: deliberately breaks `from_ptr`'s contract (the object is dead): this is
        // what the debug check exists to catch.
        let dead = unsafe { Gc::from_ptr(p) };
        let v = dead.value; // must panic: use after free
        println!("read a dead object: {v}");
        return;
    }
    let out = child(
        "use_after_a_missed_root_is_caught_in_debug_builds",
        &[("POISON_CHILD", "1")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the child read a dead object: {stdout}"
    );
    assert!(
        stdout.contains("header bytes [db, db, db, db, db, db, db, db]"),
        "freed memory not poisoned: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("use after free: Gc<")
            && stderr.contains("points to a swept object (was it rooted?)"),
        "Gc::deref did not catch the dead object: {stdout}{stderr}"
    );
}
