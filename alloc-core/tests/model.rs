//! Property test: random alloc / alloc_zeroed / realloc / free sequences with random sizes
//! and alignments, checked against a model of the live blocks: blocks never overlap,
//! contents survive (also across realloc), alignment is honoured, zeroed memory is zero.
//!
//! The test binary keeps the system allocator for proptest and the model; the blocks under
//! test come from gomalloc's API.

use proptest::prelude::*;
use std::collections::BTreeMap;

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
        1 => 32769usize..=(4 << 20),
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

fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(31))
}

fn write(p: usize, b: &Block) {
    for i in 0..b.size {
        // SAFETY: the block is live and `size` bytes long.
        unsafe { *((p + i) as *mut u8) = pattern(b.seed, i) };
    }
}

fn verify(p: usize, b: &Block, upto: usize) -> bool {
    // SAFETY: the block is live and at least `upto` bytes long.
    (0..upto.min(b.size)).all(|i| unsafe { *((p + i) as *const u8) } == pattern(b.seed, i))
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
                    // SAFETY: live block of `size` bytes.
                    let zero = (0..size).all(|i| unsafe { *((p + i) as *const u8) } == 0);
                    prop_assert!(zero, "alloc_zeroed gave dirty memory");
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
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..300)) {
        run(ops)?;
    }
}
