//! Property test: random alloc / alloc_zeroed / realloc / free sequences with random sizes
//! and alignments, checked against a model of the live blocks: blocks never overlap,
//! contents survive (also across realloc), alignment is honoured, zeroed memory is zero.
//!
//! The test binary keeps the system allocator for proptest and the model; the blocks under
//! test come from gomalloc's API.
//!
//! Under Miri: fewer and shorter sequences, and blocks of at most 256 KiB (instead of 4 MiB).

use proptest::prelude::*;
use std::collections::BTreeMap;

/// Sequences tried.
const CASES: u32 = if cfg!(miri) { 4 } else { 96 };
/// Actions per sequence, at most.
const MAX_OPS: usize = if cfg!(miri) { 60 } else { 300 };
/// The largest block drawn: still a large object of many pages under Miri.
const MAX_SIZE: usize = if cfg!(miri) { 256 << 10 } else { 4 << 20 };

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
        zeroed: bool,
    },
    Realloc {
        pick: usize,
        size: usize,
    },
    Free {
        pick: usize,
    },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 257usize..=4096,
        2 => 4097usize..=32768,
        1 => 32769usize..=MAX_SIZE,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size(), prop_oneof![6 => 0u32..=4, 1 => 5u32..=20], any::<bool>())
            .prop_map(|(size, align_shift, zeroed)| Op::Alloc { size, align_shift, zeroed }),
        2 => (any::<usize>(), size()).prop_map(|(pick, size)| Op::Realloc { pick, size }),
        4 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

struct Block {
    size: usize,
    align: usize,
    seed: u8,
}

const fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(31))
}

/// `31 * j` (mod 256) for `j < 512`. 31 is odd, so it has an inverse mod 256, 223, and
/// `pattern(seed, i) = 31 * (223 * seed + i)`: the first 256 bytes of the pattern of
/// `seed` (which repeats every 256 bytes) are the 256 from `MUL31[223 * seed % 256]` on.
static MUL31: [u8; 512] = {
    let mut t = [0; 512];
    let mut j = 0;
    while j < t.len() {
        t[j] = (j as u8).wrapping_mul(31);
        j += 1;
    }
    t
};

const _: () = {
    let mut seed = 0;
    while seed < 256 {
        let mut i = 0;
        while i < 256 {
            assert!(MUL31[seed * 223 % 256 + i] == pattern(seed as u8, i));
            i += 1;
        }
        seed += 1;
    }
};

/// The first 256 bytes of the pattern of `seed`, which repeats every 256 bytes.
fn pattern_block(seed: u8) -> &'static [u8] {
    &MUL31[seed as usize * 223 % 256..][..256]
}

/// Writes the block's pattern over its `size` bytes, 256 at a time (one `memcpy` each:
/// Miri takes minutes per MiB written byte by byte).
fn write(p: usize, b: &Block) {
    let pat = pattern_block(b.seed);
    for off in (0..b.size).step_by(pat.len()) {
        // SAFETY: the block is live and `size` bytes long; the chunk lies inside it and
        // does not overlap `pat`, a static.
        unsafe {
            std::ptr::copy_nonoverlapping(
                pat.as_ptr(),
                (p + off) as *mut u8,
                (b.size - off).min(pat.len()),
            )
        };
    }
}

/// Whether the first `upto` bytes of the block (at most its `size`) hold its pattern.
fn verify(p: usize, b: &Block, upto: usize) -> bool {
    let pat = pattern_block(b.seed);
    // SAFETY: the block is live, at least `upto.min(b.size)` bytes long and initialised
    // that far (by `write`); nothing writes it while the slice lives.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, upto.min(b.size)) };
    bytes.chunks(pat.len()).all(|c| c == &pat[..c.len()])
}

/// Whether the `size` bytes at `p` are all zero, compared 4 KiB at a time.
fn is_zero(p: usize, size: usize) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    // SAFETY: the caller owns `size` initialised bytes at `p`, a non-null block, which
    // nobody writes while the slice lives.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
    bytes.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}

fn no_overlap(live: &BTreeMap<usize, Block>, p: usize, size: usize) -> bool {
    let end = p + size.max(1);
    if let Some((&q, b)) = live.range(..=p).next_back() {
        if q + b.size.max(1) > p {
            return false;
        }
    }
    live.range(p..end).next().is_none()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live: BTreeMap<usize, Block> = BTreeMap::new();
    let mut seed = 0u8;
    for op in ops {
        seed = seed.wrapping_add(1);
        match op {
            Op::Alloc {
                size,
                align_shift,
                zeroed,
            } => {
                let align = 1usize << align_shift;
                let p = if zeroed {
                    gomalloc::alloc_zeroed(size, align)
                } else {
                    gomalloc::alloc(size, align)
                } as usize;
                prop_assert!(p != 0, "out of memory for {} at {}", size, align);
                prop_assert_eq!(p % align, 0);
                // SAFETY: live block.
                let usable = unsafe { gomalloc::usable_size(p as *const u8) };
                prop_assert!(usable >= size);
                prop_assert!(no_overlap(&live, p, size), "overlap at {:#x}", p);
                if zeroed {
                    prop_assert!(is_zero(p, size), "alloc_zeroed gave dirty memory");
                }
                let b = Block { size, align, seed };
                write(p, &b);
                live.insert(p, b);
            }
            Op::Realloc { pick, size } => {
                if live.is_empty() {
                    continue;
                }
                let p = *live.keys().nth(pick % live.len()).unwrap();
                let old = live.remove(&p).unwrap();
                prop_assert!(verify(p, &old, old.size));
                // SAFETY: `p` is live with alignment `old.align`.
                let q = unsafe { gomalloc::realloc(p as *mut u8, size, old.align) } as usize;
                prop_assert!(q != 0);
                prop_assert_eq!(q % old.align, 0);
                prop_assert!(no_overlap(&live, q, size));
                prop_assert!(verify(q, &old, size), "realloc lost data");
                let b = Block {
                    size,
                    align: old.align,
                    seed,
                };
                write(q, &b);
                live.insert(q, b);
            }
            Op::Free { pick } => {
                if live.is_empty() {
                    continue;
                }
                let p = *live.keys().nth(pick % live.len()).unwrap();
                let b = live.remove(&p).unwrap();
                prop_assert!(verify(p, &b, b.size), "block {:#x} corrupted", p);
                // SAFETY: live block, freed once.
                unsafe { gomalloc::free(p as *mut u8) };
            }
        }
    }
    for (&p, b) in &live {
        prop_assert!(verify(p, b, b.size));
        // SAFETY: live block, freed once.
        unsafe { gomalloc::free(p as *mut u8) };
    }
    gomalloc::check_heap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..MAX_OPS)) {
        run(ops)?;
    }
}
