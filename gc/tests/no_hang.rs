//! Situations that used to hang the collector or leave it waiting forever, and the fatal
//! errors that replace the hangs where no sane continuation exists (crate docs, "Fatal
//! errors"). Each case runs in a child process (this binary re-executed with
//! `NO_HANG_CHILD` naming the case) under a timeout, so that a regression fails the test
//! instead of hanging the suite.
// The cases keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

use std::io::Read;
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
