//! The off-heap misuse checker (`GOMALLOC_GCCHECKROOTS=1`, design §9): a `Gc` kept where
//! the collector does not look (a `std` `Vec`, a static) is reported, with the object's
//! type and the holding block, when the cycle that would free the object ends, before the
//! program can use the freed object; a program that keeps the rooting rule runs through
//! with the checker on. Each case runs in a child process (this binary re-executed with
//! `CHECKROOTS_CHILD` naming the case), because a report ends the process.
//!
//! gomalloc is this binary's global allocator, so `std` collections live in the `malloc`
//! heap the checker scans.
// The cases keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

use gc::{Gc, GcVec, Lock, RefLock, Root, Trace, Weak};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

/// Runs test `test` of this binary alone in a child with `CHECKROOTS_CHILD=1` and the
/// given value of `GOMALLOC_GCCHECKROOTS`.
fn child(test: &str, checkroots: &str) -> Output {
    child_with(test, checkroots, &[])
}

/// [`child`] with more environment variables.
fn child_with(test: &str, checkroots: &str, env: &[(&str, &str)]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CHECKROOTS_CHILD", "1")
        .env("GOMALLOC_GCCHECKROOTS", checkroots)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn is_child() -> bool {
    std::env::var_os("CHECKROOTS_CHILD").is_some()
}

fn show(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[inline(never)]
fn collect_clean() {
    gc::debug::clear_stack(64 << 10);
    gc::collect();
}

#[derive(Trace)]
struct Payload {
    value: u64,
    next: Lock<Option<Gc<Payload>>>,
}

fn payload(m: &gc::Mutator, value: u64) -> Gc<Payload> {
    Gc::new(
        m,
        Payload {
            value,
            next: Lock::new(None),
        },
    )
}

/// A `std` `Vec` of `Gc`s, made in a frame of its own (which `collect_clean` wipes): the
/// objects are reachable only through the `Vec`'s `malloc` buffer.
#[inline(never)]
fn vec_of_gcs(m: &gc::Mutator) -> Vec<Gc<Payload>> {
    (0..100).map(|i| payload(m, i)).collect()
}

#[test]
fn a_gc_kept_in_a_std_vec_is_reported_before_it_is_used() {
    if is_child() {
        let m = gc::attach();
        let v = vec_of_gcs(&m);
        collect_clean();
        // Without the checker the objects are freed by now: this would be a use after free.
        println!("collect returned");
        let sum: u64 = v.iter().map(|p| p.value).sum();
        println!("sum {sum}");
        return;
    }
    let o = child("a_gc_kept_in_a_std_vec_is_reported_before_it_is_used", "1");
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    assert!(
        !out.contains("collect returned"),
        "the program ran on: {}",
        show(&o)
    );
    for part in [
        "gc: fatal error: GOMALLOC_GCCHECKROOTS",
        "checkroots::Payload",
        "a malloc block at 0x",
        "Where the block was allocated: not known",
    ] {
        assert!(err.contains(part), "no {part:?} in: {}", show(&o));
    }
}

/// With gomalloc's heap profile sampling every block, the report says where the block that
/// holds the pointer was allocated.
#[test]
fn the_report_names_where_the_holding_block_was_allocated_when_profiled() {
    if is_child() {
        gomalloc::profile::set_rate(1);
        let m = gc::attach();
        let v = vec_of_gcs(&m);
        collect_clean();
        println!("collect returned");
        std::hint::black_box(&v);
        return;
    }
    let o = child_with(
        "the_report_names_where_the_holding_block_was_allocated_when_profiled",
        "1",
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    for part in [
        "gc: fatal error: GOMALLOC_GCCHECKROOTS",
        "a malloc block at 0x",
        "The block was allocated at:",
    ] {
        assert!(err.contains(part), "no {part:?} in: {}", show(&o));
    }
}

/// `Gc`s' addresses in a static (as `usize`s, the way a `static` `AtomicPtr` or a global
/// table would hold them).
static HIDDEN: [AtomicUsize; 100] = [const { AtomicUsize::new(0) }; 100];

#[inline(never)]
fn hide_in_a_static(m: &gc::Mutator) {
    for (i, h) in HIDDEN.iter().enumerate() {
        h.store(Gc::as_ptr(payload(m, i as u64)) as usize, Ordering::SeqCst);
    }
}

#[test]
fn a_gc_kept_in_a_static_is_reported() {
    if is_child() {
        let m = gc::attach();
        hide_in_a_static(&m);
        collect_clean();
        println!("collect returned");
        // The program reads the static after the collection (were it never read, the
        // optimiser could drop the static and its stores).
        std::hint::black_box(&HIDDEN);
        return;
    }
    let o = child("a_gc_kept_in_a_static_is_reported", "1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    for part in [
        "checkroots::Payload",
        "a static at 0x",
        "(in the executable)",
    ] {
        assert!(err.contains(part), "no {part:?} in: {}", show(&o));
    }
}

#[derive(Trace)]
struct Bag {
    items: RefLock<Vec<Gc<Payload>>>,
    vec: GcVec<Gc<Payload>>,
    names: Vec<String>,
    weak: Lock<Option<Gc<Weak<Payload>>>>,
}

static ROOTS: Mutex<Vec<Root<Payload>>> = Mutex::new(Vec::new());

fn finalize(_: &gc::Mutator, _: Gc<Payload>) {}

/// Everything the rooting rule allows, with the garbage it leaves: `Vec`s of `Gc`s inside
/// GC objects (live and dead, with stale words past their length after `pop`), `Root`s in a
/// `std` collection in a static, handles, weak references, finalizers, slices, `GcVec`s,
/// and a `std` `Vec` of `Gc`s used between two safepoints and freed.
#[inline(never)]
fn keep_the_rule(m: &gc::Mutator, round: u64) -> u64 {
    let bag = Root::new(Gc::new(
        m,
        Bag {
            items: RefLock::new(Vec::new()),
            vec: GcVec::new(),
            names: vec!["a".repeat(100); 4],
            weak: Lock::new(None),
        },
    ));
    for i in 0..1_000 {
        let p = payload(m, i);
        bag.items.borrow_mut(m).push(p);
        bag.vec.push(m, p);
        if i % 10 == 0 {
            gc::set_finalizer(m, p, finalize);
        }
    }
    // Stale words past the length: objects only they point to die.
    for _ in 0..500 {
        bag.items.borrow_mut(m).pop();
        bag.vec.pop(m);
    }
    let w = Gc::new(m, Weak::new(m, payload(m, 7)));
    bag.weak.set(m, Some(w));
    ROOTS.lock().unwrap().push(Root::new(payload(m, round)));
    // A dead bag: its `Vec`'s buffer, pointing at dead objects, dies with it.
    Gc::new(
        m,
        Bag {
            items: RefLock::new((0..100).map(|i| payload(m, i)).collect()),
            vec: GcVec::new(),
            names: Vec::new(),
            weak: Lock::new(None),
        },
    );
    let s = Gc::from_fn(m, 1_000, |i| payload(m, i as u64));
    let text = Gc::from_str(m, "kept");
    // Between two safepoints a `std` `Vec` of `Gc`s needs nothing; freed before the next.
    let sum = {
        let tmp: Vec<Gc<Payload>> = s.iter().copied().collect();
        tmp.iter().map(|p| p.value).sum::<u64>()
    };
    m.scope(|sc| {
        let h = sc.handle(payload(m, 1));
        collect_clean();
        assert_eq!(h.value, 1);
    });
    assert_eq!(&*text, "kept");
    let items = bag.items.borrow().len() as u64;
    sum + items + bag.vec.len() as u64
}

#[test]
fn a_program_that_keeps_the_rooting_rule_runs_with_the_checker() {
    if is_child() {
        let mut m = gc::attach();
        for round in 0..5 {
            assert_eq!(keep_the_rule(&m, round), 499_500 + 1_000);
            collect_clean();
            m.run_finalizers();
        }
        // Collections from the pacer too.
        for i in 0..200_000 {
            payload(&m, i);
        }
        collect_clean();
        assert!(gc::stats().cycles >= 10);
        let roots = ROOTS.lock().unwrap();
        assert_eq!(roots.iter().map(|r| r.value).sum::<u64>(), 10);
        println!("done");
        return;
    }
    let o = child(
        "a_program_that_keeps_the_rooting_rule_runs_with_the_checker",
        "1",
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("done"),
        "{}",
        show(&o)
    );
}

/// With the `checkroots` feature the checker is on unless the variable says `0`; a value
/// that is neither is named, and the default kept.
#[test]
fn a_bad_setting_is_named() {
    if is_child() {
        let m = gc::attach();
        payload(&m, 1);
        gc::collect();
        println!("done");
        return;
    }
    let o = child("a_bad_setting_is_named", "yes");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        err.contains("GOMALLOC_GCCHECKROOTS=\"yes\" is not `0` or `1`; using 1"),
        "{}",
        show(&o)
    );
}
