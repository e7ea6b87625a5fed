//! Situations that used to hang the collector or leave it waiting forever, and the fatal
//! errors that replace the hangs where no sane continuation exists (crate docs, "Fatal
//! errors"). Each case runs in a child process (this binary re-executed with
//! `NO_HANG_CHILD` naming the case) under a timeout, so that a regression fails the test
//! instead of hanging the suite.
// The cases keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

use gc::{Gc, Trace};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a child may take: every case finishes in well under a second when it works.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a child did: its exit status (`None`: killed after [`TIMEOUT`]), stdout, stderr.
struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            None => write!(f, "child hung (killed after {TIMEOUT:?})")?,
            Some(s) => write!(f, "child exited: {s}")?,
        }
        write!(
            f,
            "\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs test `test` of this binary alone in a child with `NO_HANG_CHILD=case`.
fn child(test: &str, case: &str) -> Outcome {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("NO_HANG_CHILD", case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(c.stdout.take().unwrap()));
    let err = pipe(Box::new(c.stderr.take().unwrap()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The case this process runs, if it is a child.
fn case() -> Option<String> {
    std::env::var("NO_HANG_CHILD").ok()
}

/// Asserts that the child finished normally and printed `done`.
fn assert_done(o: &Outcome) {
    assert!(
        o.status.is_some_and(|s| s.success()) && o.stdout.contains("done"),
        "{o}"
    );
}

/// Asserts that the child was ended by `abort()` (`SIGABRT`) after printing `message`.
fn assert_fatal(o: &Outcome, message: &str) {
    assert!(
        o.status.and_then(|s| s.signal()) == Some(libc::SIGABRT),
        "not aborted: {o}"
    );
    assert!(o.stderr.contains(message), "no {message:?} in: {o}");
}

/// Collects after wiping stale stack words, so that the objects an `#[inline(never)]` call
/// made and dropped are unreachable.
#[inline(never)]
fn collect_clean() {
    gc::debug::clear_stack(64 << 10);
    gc::collect();
}

/// Allocates 100 objects `make(0..100)` and drops them, in a frame of its own (which
/// `collect_clean` then wipes): garbage for the next collection.
#[inline(never)]
fn garbage<T: Trace + Send + 'static>(m: &gc::Mutator, make: fn(u64) -> T) {
    for i in 0..100 {
        Gc::new(m, make(i));
    }
}

/// A pointer-free value whose destructor panics.
struct PanicsOnDrop(#[allow(dead_code)] u64);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a destructor that panics");
    }
}

// SAFETY: holds no GC pointer; its destructor touches none.
unsafe impl Trace for PanicsOnDrop {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut gc::Tracer) {}
}

/// A pointer-free value whose destructor calls `gc::collect()`.
struct CollectsOnDrop(#[allow(dead_code)] u64);

impl Drop for CollectsOnDrop {
    fn drop(&mut self) {
        gc::collect();
    }
}

// SAFETY: holds no GC pointer; its destructor touches none.
unsafe impl Trace for CollectsOnDrop {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut gc::Tracer) {}
}

#[derive(Trace)]
struct Finalized {
    value: u64,
}

fn panicking_finalizer(_: &gc::Mutator, f: Gc<Finalized>) {
    panic!("a finalizer that panics (object {})", f.value);
}

/// A destructor that panics while the sweep runs it ends the process with a fatal error. It
/// used to unwind out of the sweep, which stayed counted as in progress: the next cycle
/// waited for it forever.
#[test]
fn a_destructor_that_panics_while_swept_is_a_fatal_error() {
    if case().is_some() {
        let m = gc::attach();
        garbage(&m, PanicsOnDrop);
        let first = std::panic::catch_unwind(collect_clean);
        println!("the first collect returned (panicked: {})", first.is_err());
        collect_clean();
        println!("done");
        return;
    }
    let o = child(
        "a_destructor_that_panics_while_swept_is_a_fatal_error",
        "destructor",
    );
    assert_fatal(
        &o,
        "gc: fatal error: the destructor of `no_hang::PanicsOnDrop` panicked",
    );
}

/// A finalizer that panics ends the process with a fatal error, as in Go. It used to kill
/// the finalizer thread and leave its object on the running list: `run_finalizers` waited
/// for it forever.
#[test]
fn a_finalizer_that_panics_is_a_fatal_error() {
    if case().is_some() {
        let mut m = gc::attach();
        #[inline(never)]
        fn arm(m: &gc::Mutator) {
            let f = Gc::new(m, Finalized { value: 7 });
            gc::set_finalizer(m, f, panicking_finalizer);
        }
        arm(&m);
        collect_clean();
        m.run_finalizers();
        println!("done");
        return;
    }
    let o = child("a_finalizer_that_panics_is_a_fatal_error", "finalizer");
    assert_fatal(
        &o,
        "gc: fatal error: the finalizer of `no_hang::Finalized` panicked",
    );
}

/// `gc::collect()` from a destructor that the sweep runs ends the process with a fatal
/// error: the cycle would begin by waiting for that very sweep (it used to deadlock).
#[test]
fn collect_from_a_destructor_is_a_fatal_error() {
    if case().is_some() {
        let m = gc::attach();
        garbage(&m, CollectsOnDrop);
        collect_clean();
        println!("done");
        return;
    }
    let o = child("collect_from_a_destructor_is_a_fatal_error", "collect");
    assert_fatal(
        &o,
        "gc: fatal error: gc::collect() called from a destructor that the collector's sweep runs",
    );
}

/// `gc::collect()` from inside a blocking region, while another thread's cycle waits for a
/// third thread to stop: the blocking thread waits for that cycle, runs its own, and is
/// still in its blocking region afterwards, so a later cycle does not wait for it.
#[test]
fn collect_inside_blocking_while_another_cycle_runs() {
    if case().is_some() {
        static HOLD: AtomicBool = AtomicBool::new(true);
        static C_ATTACHED: AtomicBool = AtomicBool::new(false);
        static A_BLOCKING: AtomicBool = AtomicBool::new(false);
        static B_COLLECTING: AtomicBool = AtomicBool::new(false);
        static A_COLLECTING: AtomicBool = AtomicBool::new(false);
        static A_COLLECTED: AtomicBool = AtomicBool::new(false);
        static FINISH: AtomicBool = AtomicBool::new(false);
        let wait_for = |flag: &AtomicBool| {
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // C: attached and running without a safepoint until released: holds up B's cycle.
        let c = std::thread::spawn(move || {
            let m = gc::attach();
            C_ATTACHED.store(true, Ordering::SeqCst);
            while HOLD.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            m.safepoint();
        });
        // A: collects from inside a blocking region while B's cycle is stopping the world,
        // then stays in the region until told to leave.
        let a = std::thread::spawn(move || {
            let mut m = gc::attach();
            m.blocking(|| {
                A_BLOCKING.store(true, Ordering::SeqCst);
                wait_for(&B_COLLECTING);
                // B is inside `collect()` by now, waiting for C.
                std::thread::sleep(Duration::from_millis(100));
                A_COLLECTING.store(true, Ordering::SeqCst);
                gc::collect();
                A_COLLECTED.store(true, Ordering::SeqCst);
                wait_for(&FINISH);
            });
        });
        // B: this (unattached) thread.
        let releaser = std::thread::spawn(move || {
            wait_for(&A_COLLECTING);
            // A is waiting for B's cycle by now.
            std::thread::sleep(Duration::from_millis(100));
            HOLD.store(false, Ordering::SeqCst);
        });
        wait_for(&C_ATTACHED);
        wait_for(&A_BLOCKING);
        B_COLLECTING.store(true, Ordering::SeqCst);
        gc::collect();
        wait_for(&A_COLLECTED);
        // A is still in its blocking region: this cycle must not wait for it.
        gc::collect();
        FINISH.store(true, Ordering::SeqCst);
        for t in [a, c, releaser] {
            t.join().unwrap();
        }
        println!("done");
        return;
    }
    let o = child(
        "collect_inside_blocking_while_another_cycle_runs",
        "blocking",
    );
    assert_done(&o);
}
