//! `Gc<[T]>`, `Gc<str>` and `GcVec<T>`: built in place, traced, collected, dropped once;
//! interior pointers and large slices; `GcVec` growth across collections, in the
//! incremental mode (the barrier) and from several threads.
//!
//! Tests run one at a time: the incremental cycle needs a single attached thread, and the
//! drop counts need no other test's garbage in flight.
// These tests keep `Gc`s in locals: they need the conservative stack scan (the precise
// mode's slice tests are in `precise.rs`).
#![cfg(not(feature = "precise"))]

mod common;

#[path = "common/serial.rs"]
mod serial;

use common::{Link, list_sum};
use gc::debug::IncrementalCycle;
use gc::{Gc, GcVec, Lock, Root, Trace};
use serial::{alone, serial};
use std::sync::atomic::{AtomicUsize, Ordering};

fn collect_clean() {
    gc::debug::clear_stack(64 << 10);
    gc::collect();
}

fn link(m: &gc::Mutator, value: u64, next: Option<Gc<Link>>) -> Gc<Link> {
    Gc::new(
        m,
        Link {
            value,
            next: Lock::new(next),
        },
    )
}

#[test]
fn a_slice_of_gc_pointers_keeps_its_elements_across_collections() {
    let _s = serial();
    let m = gc::attach();
    const N: usize = 5_000;
    // The closure allocates (each element is a new list) and collects halfway: the
    // elements made so far are traced through the half-built slice.
    let s: Gc<[Gc<Link>]> = Gc::from_fn(&m, N, |i| {
        if i == N / 2 {
            collect_clean();
        }
        let tail = link(&m, 1, None);
        link(&m, i as u64, Some(tail))
    });
    for _ in 0..3 {
        collect_clean();
        // Garbage in between, so that freed slots would be reused.
        for i in 0..10_000 {
            link(&m, i, None);
        }
    }
    assert_eq!(s.len(), N);
    for (i, l) in s.iter().enumerate() {
        assert_eq!(list_sum(Some(*l)), (2, i as u64 + 1));
    }
    let total: u64 = s.iter().map(|l| l.value).sum();
    assert_eq!(total, (N as u64 - 1) * N as u64 / 2);
    gc::debug::check_heap(&m);
}

/// A pointer-free element with drop glue (a `NOSCAN_DROP` slice).
struct Counted(#[allow(dead_code)] String);
static COUNTED_DROPS: AtomicUsize = AtomicUsize::new(0);
impl Drop for Counted {
    fn drop(&mut self) {
        COUNTED_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
// SAFETY: holds no GC pointer; its destructor touches none.
unsafe impl Trace for Counted {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut gc::Tracer) {}
}

/// An element with GC pointers and drop glue (a `SCAN_DROP` slice).
#[derive(Trace)]
#[gc(unsafe_drop)]
struct Owner {
    link: Gc<Link>,
    #[allow(dead_code)]
    name: String,
}
static OWNER_DROPS: AtomicUsize = AtomicUsize::new(0);
impl Drop for Owner {
    fn drop(&mut self) {
        // Touches no GC pointer (Trace rule 5).
        OWNER_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// A zero-sized element with drop glue.
struct Zst;
static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
impl Drop for Zst {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
// SAFETY: holds nothing.
unsafe impl Trace for Zst {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut gc::Tracer) {}
}

#[test]
fn dead_slices_drop_each_element_once() {
    let _s = serial();
    let m = gc::attach();
    const SLICES: usize = 20;
    const LEN: usize = 100;
    #[inline(never)]
    fn make(m: &gc::Mutator) {
        for k in 0..SLICES {
            let c = Gc::from_fn(m, LEN, |i| Counted(format!("{k}/{i}")));
            assert_eq!(c.len(), LEN);
            let o = Gc::from_fn(m, LEN, |i| Owner {
                link: link(m, i as u64, None),
                name: format!("{k}/{i}"),
            });
            assert_eq!(o[LEN - 1].link.value, LEN as u64 - 1);
            let z = Gc::from_fn(m, LEN, |_| Zst);
            assert_eq!(z.len(), LEN);
        }
    }
    let (c0, o0, z0) = (
        COUNTED_DROPS.load(Ordering::SeqCst),
        OWNER_DROPS.load(Ordering::SeqCst),
        ZST_DROPS.load(Ordering::SeqCst),
    );
    make(&m);
    collect_clean();
    collect_clean();
    // The conservative scan may keep a slice or two through a stale stack word, never
    // more than that, and never drop an element twice.
    let all = SLICES * LEN;
    for (what, d) in [
        ("Counted", COUNTED_DROPS.load(Ordering::SeqCst) - c0),
        ("Owner", OWNER_DROPS.load(Ordering::SeqCst) - o0),
        ("Zst", ZST_DROPS.load(Ordering::SeqCst) - z0),
    ] {
        assert!(d <= all, "{what}: {d} drops of {all} elements");
        assert!(
            d >= all - 2 * LEN,
            "{what}: only {d} of {all} elements dropped"
        );
        assert_eq!(d % LEN, 0, "{what}: a slice dropped in part ({d})");
    }
}

#[test]
fn a_panicking_element_closure_leaves_the_made_elements_to_the_sweep() {
    alone(|| {
        let m = gc::attach();
        let c0 = COUNTED_DROPS.load(Ordering::SeqCst);
        #[inline(never)]
        fn make(m: &gc::Mutator) -> bool {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Gc::from_fn(m, 100, |i| {
                    assert!(i < 7, "element {i} fails");
                    Counted(i.to_string())
                })
            }))
            .is_err()
        }
        assert!(make(&m));
        collect_clean();
        // Seven elements were made; the other 93 were never initialised and are not dropped.
        assert_eq!(COUNTED_DROPS.load(Ordering::SeqCst) - c0, 7);
        // An iterator shorter than it said panics the same way.
        struct Liar(usize);
        impl Iterator for Liar {
            type Item = Counted;
            fn next(&mut self) -> Option<Counted> {
                self.0 += 1;
                (self.0 <= 3).then(|| Counted(String::new()))
            }
        }
        impl ExactSizeIterator for Liar {
            fn len(&self) -> usize {
                10
            }
        }
        let c1 = COUNTED_DROPS.load(Ordering::SeqCst);
        #[inline(never)]
        fn make_short(m: &gc::Mutator, it: Liar) -> bool {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Gc::from_iter(m, it))).is_err()
        }
        assert!(make_short(&m, Liar(0)));
        collect_clean();
        assert_eq!(COUNTED_DROPS.load(Ordering::SeqCst) - c1, 3);
    })
}

#[test]
fn a_4_mib_slice_is_built_in_place() {
    let _s = serial();
    let m = gc::attach();
    // 4 MiB, twice the default stack of a test thread: a debug build that made the array
    // on the stack first would overflow it.
    const N: usize = (4 << 20) / 8;
    let words: Gc<[u64]> = Gc::from_fn(&m, N, |i| i as u64 * 3);
    // And 4 MiB of barriered GC pointers, in a scan object.
    let cells: Gc<[Lock<Option<Gc<Link>>>]> = Gc::from_fn(&m, N, |_| Lock::new(None));
    for i in (0..N).step_by(4096) {
        cells[i].set(&m, Some(link(&m, i as u64, None)));
    }
    collect_clean();
    for i in 0..10_000 {
        link(&m, i, None);
    }
    collect_clean();
    assert!(words.iter().enumerate().all(|(i, &w)| w == i as u64 * 3));
    for i in (0..N).step_by(4096) {
        assert_eq!(cells[i].get().expect("set above").value, i as u64);
    }
    let from_iter = Gc::from_iter(&m, (0..N).map(|i| i as u64 + 1));
    let from_slice = Gc::from_slice(&m, &from_iter[..1000]);
    collect_clean();
    assert_eq!(from_iter[N - 1], N as u64);
    assert_eq!(from_slice.iter().sum::<u64>(), 500_500);
    gc::debug::check_heap(&m);
}

/// Returns a pointer to the last element of a large slice; the `Gc` itself is gone once
/// this returns.
#[inline(never)]
fn last_element_of_a_large_slice(m: &gc::Mutator) -> *const Lock<Option<Gc<Link>>> {
    let s: Gc<[Lock<Option<Gc<Link>>>]> = Gc::from_fn(m, 100_000, |_| Lock::new(None));
    let last = &s[99_999];
    last.set(m, Some(link(m, 42, None)));
    last
}

#[test]
fn an_interior_pointer_keeps_a_large_slice_and_what_it_holds() {
    let _s = serial();
    let m = gc::attach();
    // The only reference to the 2.4 MiB slice: a pointer to its last element, 2.4 MiB
    // past the object's start.
    let last = std::hint::black_box(last_element_of_a_large_slice(&m));
    for _ in 0..3 {
        collect_clean();
        for i in 0..20_000 {
            link(&m, i, None);
        }
        let _ = Gc::from_fn(&m, 100_000, |i| i as u64);
    }
    // SAFETY: what the test checks: the interior pointer, on this thread's stack, keeps
    // the slice allocated. Freed, the slot would be poisoned (debug) or reused, and would
    // not hold the link to 42.
    let l = unsafe { (*last).get() }.expect("the slot keeps its value");
    assert_eq!(l.value, 42);
    std::hint::black_box(last);
}

#[test]
fn strings_and_zero_sized_and_empty_slices() {
    let _s = serial();
    let m = gc::attach();
    let short = Gc::from_str(&m, "hi"); // the tiny allocator
    let long = Gc::from_str(&m, &"gomalloc ".repeat(10_000)); // a large object
    let empty = Gc::from_str(&m, "");
    let units: Gc<[()]> = Gc::from_fn(&m, 1_000, |_| ());
    let none: Gc<[Gc<Link>]> = Gc::from_fn(&m, 0, |_| unreachable!());
    // Slices and strings rooted from a `std` collection.
    let rooted: Vec<Root<str>> = (0..100)
        .map(|i| Root::new(Gc::from_str(&m, &format!("string {i}"))))
        .collect();
    let rooted_slice: Root<[u64]> = Root::new(Gc::from_fn(&m, 1000, |i| i as u64));
    collect_clean();
    for i in 0..10_000 {
        Gc::from_str(&m, &i.to_string());
    }
    collect_clean();
    assert_eq!(&*short, "hi");
    assert_eq!(short.to_string(), "hi");
    assert_eq!(long.len(), 90_000);
    assert!(long.starts_with("gomalloc gomalloc"));
    assert_eq!(&*Gc::as_bytes(short), b"hi");
    assert_eq!(&*empty, "");
    assert_eq!(units.len(), 1_000);
    assert!(none.is_empty());
    assert_eq!(
        format!("{:?}", Gc::from_slice(&m, &[1u8, 2, 3])),
        "[1, 2, 3]"
    );
    assert!(
        rooted
            .iter()
            .enumerate()
            .all(|(i, r)| **r == format!("string {i}"))
    );
    assert_eq!(rooted_slice.iter().sum::<u64>(), 499_500);
    assert_eq!(format!("{:?}", rooted[7]), "Root(\"string 7\")");
    gc::debug::check_heap(&m);
}

#[derive(Trace)]
struct Holder {
    items: GcVec<Gc<Link>>,
    numbers: GcVec<u64>,
}

fn holder(m: &gc::Mutator) -> Root<Holder> {
    Root::new(Gc::new(
        m,
        Holder {
            items: GcVec::new(),
            numbers: GcVec::with_capacity(m, 0),
        },
    ))
}

#[test]
fn a_gcvec_grows_across_collections() {
    let _s = serial();
    let m = gc::attach();
    let h = holder(&m);
    const N: u64 = 20_000;
    for i in 0..N {
        h.items.push(&m, link(&m, i, Some(link(&m, 1, None))));
        h.numbers.push(&m, i);
        if i % 3_000 == 0 {
            collect_clean();
        }
    }
    collect_clean();
    assert_eq!(h.items.len(), N as usize);
    assert!(h.items.capacity() >= N as usize);
    for (i, l) in h.items.iter().enumerate() {
        assert_eq!(list_sum(Some(l)), (2, i as u64 + 1));
    }
    assert_eq!(h.numbers.iter().sum::<u64>(), (N - 1) * N / 2);
    // Replace every even element, pop the last thousand.
    for i in (0..N as usize).step_by(2) {
        h.items.set(&m, i, link(&m, 7, None));
    }
    for _ in 0..1_000 {
        assert!(h.items.pop(&m).is_some());
    }
    collect_clean();
    assert_eq!(h.items.len(), N as usize - 1_000);
    assert!(h.items.get(N as usize - 1_000).is_none());
    for (i, l) in h.items.iter().enumerate() {
        assert_eq!(l.value, if i % 2 == 0 { 7 } else { i as u64 });
    }
    assert_eq!(h.items.last().map(|l| l.value), Some(N - 1_001));
    h.items.clear(&m);
    assert!(h.items.is_empty());
    assert_eq!(h.items.iter().count(), 0);
    gc::debug::check_heap(&m);
}

/// Hides elements in a way only the barrier of `GcVec`'s writes saves: while a cycle marks,
/// with the holder already black and the source vector's backing slice not yet traced,
/// every element moves from `from` into `to` (whose backing slice grows several times,
/// allocated black) and leaves `from`.
#[inline(never)]
fn move_all(m: &gc::Mutator, from: &GcVec<Gc<Link>>, to: &GcVec<Gc<Link>>) {
    while let Some(l) = from.pop(m) {
        to.push(m, l);
    }
}

#[inline(never)]
fn fill(m: &gc::Mutator, v: &GcVec<Gc<Link>>, n: u64) {
    for i in 0..n {
        v.push(m, link(m, i, Some(link(m, 1000, None))));
    }
}

#[derive(Trace)]
struct Two {
    from: GcVec<Gc<Link>>,
    to: GcVec<Gc<Link>>,
}

#[test]
fn gcvec_writes_keep_the_barrier_in_the_incremental_mode() {
    let _s = serial();
    let m = gc::attach();
    let two = Root::new(Gc::new(
        &m,
        Two {
            from: GcVec::new(),
            to: GcVec::new(),
        },
    ));
    const N: u64 = 3_000;
    fill(&m, &two.from, N);
    gc::debug::clear_stack(64 << 10);
    let mut cycle = IncrementalCycle::start(&m);
    // Blacken the holder only (its backing slices stay grey or white).
    cycle.mark_some(1);
    move_all(&m, &two.from, &two.to);
    gc::debug::clear_stack(64 << 10);
    while !cycle.mark_some(64) {}
    cycle.finish();
    gc::collect();
    // Reuse what was freed: a lost element would now be poisoned or overwritten.
    for i in 0..20_000 {
        link(&m, i, None);
    }
    assert_eq!(two.to.len(), N as usize);
    let mut seen: Vec<u64> = two.to.iter().map(|l| l.value).collect();
    seen.sort_unstable();
    assert!(seen.iter().copied().eq(0..N));
    assert!(two.to.iter().all(|l| list_sum(Some(l)).0 == 2));
    gc::debug::check_heap(&m);
}

#[test]
fn threads_push_into_one_gcvec() {
    let _s = serial();
    let m = gc::attach();
    let h = holder(&m);
    const THREADS: u64 = 4;
    const PER: u64 = 5_000;
    let h2 = h.clone();
    let mut m = m;
    m.blocking(move || {
        std::thread::scope(|sc| {
            for t in 0..THREADS {
                let h = h2.clone();
                sc.spawn(move || {
                    let m = gc::attach();
                    for i in 0..PER {
                        h.items.push(&m, link(&m, t * PER + i, None));
                        if i % 1_000 == 0 {
                            gc::collect();
                        }
                    }
                });
            }
        })
    });
    collect_clean();
    assert_eq!(h.items.len(), (THREADS * PER) as usize);
    let mut seen: Vec<u64> = h.items.iter().map(|l| l.value).collect();
    seen.sort_unstable();
    assert!(seen.iter().copied().eq(0..THREADS * PER));
    gc::debug::check_heap(&m);
}
