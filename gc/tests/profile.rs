//! The heap profile of the collected heap: objects of two allocation sites of known sizes
//! are sampled like malloc's, and after `gc::collect()` the records of the site whose
//! objects died show them freed (the sweep counted them, as Go's `mProf_Free`), while the
//! rooted site's stay in use. Runs in a child process (this binary re-executed) that sets
//! the rate first, so no other test's allocations are sampled with it. Run:
//! `cargo test -p gomalloc-gc --test profile`, and with `--features profile` (gomalloc's
//! countdown on the fast paths).
#![cfg(not(feature = "precise"))]

use gc::{Gc, Root, Trace};
use gomalloc::profile::{Record, pprof::scale_sampled};

#[path = "common/child.rs"]
mod child;

/// Mean bytes between samples.
const RATE: usize = 8 << 10;
const N: usize = 4000;

/// Site A's objects: kept (rooted) through the collection.
#[derive(Trace)]
struct Kept {
    words: [u64; 48],
}

/// Site B's objects: garbage at the collection.
#[derive(Trace)]
struct Dropped {
    words: [u64; 20],
}

/// The requested size of each site's objects, as the collector asks for it: the size of
/// the one record whose site is the given function's (found by size: the two differ).
fn sizes(recs: &[Record]) -> Vec<usize> {
    let mut v: Vec<usize> = recs.iter().map(|r| r.size).collect();
    v.sort();
    v.dedup();
    v
}

/// Scaled (allocated, in use) bytes of the records of objects of `size`.
fn bytes_of(recs: &[Record], size: usize) -> (f64, f64) {
    recs.iter()
        .filter(|r| r.size == size)
        .fold((0.0, 0.0), |(a, u), r| {
            (
                a + scale_sampled(r.allocs, r.size, r.charged, RATE).1,
                u + scale_sampled(r.allocs - r.frees, r.size, r.charged, RATE).1,
            )
        })
}

/// Relative standard deviation of the estimated bytes of `n` objects of `size` (see
/// `alloc-core/tests/profile.rs`).
fn rel_sd(n: usize, size: usize) -> f64 {
    let p = 1.0 - (-(size as f64) / RATE as f64).exp();
    ((1.0 - p) / (n as f64 * p)).sqrt()
}

#[inline(never)]
fn site_kept(m: &gc::Mutator) -> Vec<Root<Kept>> {
    (0..N)
        .map(|i| {
            Root::new(Gc::new(
                m,
                Kept {
                    words: [i as u64; 48],
                },
            ))
        })
        .collect()
}

#[inline(never)]
fn site_dropped(m: &gc::Mutator) {
    for i in 0..N {
        std::hint::black_box(Gc::new(
            m,
            Dropped {
                words: [i as u64; 20],
            },
        ));
    }
}

fn child() {
    let m = gc::attach();
    let kept = site_kept(&m);
    site_dropped(&m);
    // Stale words that the calls above left below this frame would keep a dropped object
    // alive through the conservative stack scan.
    gc::debug::clear_stack(64 << 10);
    gc::collect();
    let recs = gomalloc::profile::records();
    // The two object sizes: Kept's is the larger.
    let big = std::mem::size_of::<Kept>();
    let small = std::mem::size_of::<Dropped>();
    let s = sizes(&recs);
    let kept_size = *s
        .iter()
        .find(|&&z| z >= big && z < big + 64)
        .unwrap_or_else(|| panic!("{s:?}"));
    let dropped_size = *s
        .iter()
        .find(|&&z| z >= small && z < small + 64)
        .unwrap_or_else(|| panic!("{s:?}"));
    let (ka, ku) = bytes_of(&recs, kept_size);
    let (da, du) = bytes_of(&recs, dropped_size);
    let want_k = (N * kept_size) as f64;
    let want_d = (N * dropped_size) as f64;
    let (sk, sd) = (rel_sd(N, kept_size), rel_sd(N, dropped_size));
    for (what, got, want, sd) in [
        ("kept allocated", ka, want_k, sk),
        ("kept in use after the collection", ku, want_k, sk),
        ("dropped allocated", da, want_d, sd),
    ] {
        let err = (got - want).abs() / want;
        assert!(
            err <= 5.0 * sd,
            "{what}: {got:.0} bytes, expected {want:.0} (+-{:.0}%)",
            500.0 * sd
        );
    }
    assert_eq!(
        du, 0.0,
        "dropped objects still in use after the collection (sweep did not count them)"
    );
    drop(kept);
}

/// A pointer-free object of the tiny blocks' class (16 bytes), which counts down one
/// object at a time while sampling.
#[derive(Trace)]
struct Pair {
    a: u64,
    b: u64,
}

/// An object with a pointer (scanned), of a class whose window is limited near a sample.
#[derive(Trace)]
struct Linked {
    next: Option<Gc<Linked>>,
    tag: [u64; 5],
}

/// Sampling with the collector's windows limited (`heap::Sampling`) hands out every slot
/// once: objects of every path (tiny, the tiny blocks' class, scanned, large) keep what
/// was written into them through allocation, collections, and the rate going off and on,
/// and the heap check finds the spans' counts right.
fn held_back() {
    let m = gc::attach();
    let mut tiny: Vec<Root<u32>> = Vec::new();
    let mut pairs: Vec<Root<Pair>> = Vec::new();
    let mut linked: Vec<Root<Linked>> = Vec::new();
    let mut big: Vec<Root<[u64; 128]>> = Vec::new();
    for round in 0..3u64 {
        // A small rate: samples every few hundred objects, windows often limited.
        gomalloc::profile::set_rate(if round == 1 { 0 } else { 1 << 10 });
        for i in 0..20_000u64 {
            let t = Gc::new(&m, (i ^ round) as u32);
            let p = Gc::new(&m, Pair { a: i, b: round });
            let l = Gc::new(
                &m,
                Linked {
                    next: None,
                    tag: [i; 5],
                },
            );
            if i % 7 == 0 {
                tiny.push(Root::new(t));
                pairs.push(Root::new(p));
                linked.push(Root::new(l));
            }
            if i % 50 == 0 {
                big.push(Root::new(Gc::new(&m, [i * 3; 128])));
            }
        }
        gc::collect();
        for (n, ((t, p), l)) in tiny.iter().zip(&pairs).zip(&linked).enumerate() {
            let (r, i) = (n as u64 / 2858, n as u64 % 2858 * 7);
            assert_eq!(**t, (i ^ r) as u32, "tiny object {n}");
            assert_eq!((p.a, p.b), (i, r), "pair {n}");
            assert_eq!(l.tag, [i; 5], "linked object {n}");
        }
        for (n, b) in big.iter().enumerate() {
            assert_eq!(b[127], (n as u64 % 400) * 50 * 3, "large object {n}");
        }
    }
    gc::debug::check_heap(&m);
}

/// The child's entry point; in the parent it does nothing.
#[test]
fn profile_child() {
    match std::env::var("GC_PROFILE_CHILD").as_deref() {
        Ok("held") => held_back(),
        Ok(_) => {
            gomalloc::profile::set_rate(RATE);
            child();
        }
        Err(_) => {}
    }
}

#[test]
fn sampling_hands_out_every_slot_once() {
    child::child_passes("profile_child", &[("GC_PROFILE_CHILD", "held")]);
}

#[test]
fn collected_objects_are_sampled_and_their_frees_counted() {
    child::child_passes("profile_child", &[("GC_PROFILE_CHILD", "1")]);
}
