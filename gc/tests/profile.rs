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

/// The child's entry point; in the parent it does nothing.
#[test]
fn profile_child() {
    if std::env::var_os("GC_PROFILE_CHILD").is_some() {
        gomalloc::profile::set_rate(RATE);
        child();
    }
}

#[test]
fn collected_objects_are_sampled_and_their_frees_counted() {
    let out = child::child("profile_child", &[("GC_PROFILE_CHILD", "1")]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
