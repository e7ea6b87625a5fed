//! Fuzz target `heap_actions`: sequences of alloc / alloc_zeroed / realloc / free on three
//! threads' caches (the fuzzer thread and two helpers, replaced every 500 inputs), sizes
//! from 0 to 8 MiB, alignments up to 1 MiB, checked against the model in `src/lib.rs`:
//! alignment, usable size, no overlap, contents preserved (and zero after alloc_zeroed).
//! Each input ends by freeing everything and checking the whole heap.
//!
//!     cargo +nightly fuzz run heap_actions -- -max_total_time=60
#![no_main]

use arbitrary::Arbitrary;
use gomalloc_fuzz::{count_actions, fill, verify, verify_prefix, Block, Helpers, Model};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Tiny(u8),
    Small(u16),
    Medium(u32),
    Large(u32),
}

impl Size {
    fn bytes(self) -> usize {
        match self {
            Size::Tiny(n) => n as usize,
            Size::Small(n) => n as usize % (32 << 10 | 1),
            Size::Medium(n) => n as usize % (1 << 18),
            // Up to 8 MiB one time in 64, up to 1 MiB one in 8, else up to 64 KiB: big
            // blocks cost up to milliseconds each (page faults, poisoning the whole block
            // on free, guard-page mprotects).
            Size::Large(n) if n % 64 == 0 => (n >> 6) as usize % (8 << 20),
            Size::Large(n) if n % 8 == 0 => (n >> 3) as usize % (1 << 20),
            Size::Large(n) => (n >> 3) as usize % (64 << 10),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Action {
    Alloc {
        size: Size,
        align_log: u8,
        zeroed: bool,
        thread: u8,
    },
    Free {
        idx: u16,
        thread: u8,
    },
    Realloc {
        idx: u16,
        size: Size,
        thread: u8,
    },
    Check {
        idx: u16,
    },
}

/// The thread an action runs on: the fuzzer thread 3 times in 4, each helper 1 in 8
/// (a helper call is a round trip through two channels: the slowest part of an action).
fn thread_of(t: u8) -> usize {
    match t % 8 {
        1 => 1,
        2 => 2,
        _ => 0,
    }
}

/// Live bytes above which allocations are skipped (keeps RSS bounded).
const MAX_LIVE: usize = 256 << 20;
/// Live blocks above which allocations are skipped.
const MAX_BLOCKS: usize = 512;

static STATE: Mutex<Option<(Helpers, u64)>> = Mutex::new(None);

fuzz_target!(|actions: Vec<Action>| {
    let mut guard = STATE.lock().unwrap();
    let (helpers, inputs) = guard.get_or_insert_with(|| (Helpers::new(2), 0));
    *inputs += 1;
    if inputs.is_multiple_of(500) {
        // Threads come and go: the old helpers' caches are flushed as they exit (their
        // spans may still hold remote frees not yet collected), and new caches start.
        let old = std::mem::replace(helpers, Helpers::new(2));
        old.join();
    }
    let helpers = &*helpers;
    let mut m = Model::default();
    let mut seed = 0u8;
    for a in &actions {
        seed = seed.wrapping_add(1);
        match *a {
            Action::Alloc {
                size,
                align_log,
                zeroed,
                thread,
            } => {
                let (size, align) = (size.bytes(), 1usize << (align_log % 21));
                if m.live_bytes + size > MAX_LIVE || m.blocks.len() >= MAX_BLOCKS {
                    continue;
                }
                let addr = helpers.run(thread_of(thread), move || {
                    if zeroed {
                        gomalloc::alloc_zeroed(size, align) as usize
                    } else {
                        gomalloc::alloc(size, align) as usize
                    }
                });
                assert_ne!(addr, 0, "out of memory at {size} bytes, align {align}");
                if zeroed {
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { verify(addr, size, None, "alloc_zeroed") };
                }
                // SAFETY: `addr` is a fresh block of `size` bytes, ours until freed.
                unsafe { fill(addr, size, seed) };
                m.add(Block {
                    addr,
                    size,
                    align,
                    seed,
                });
            }
            Action::Free { idx, thread } => {
                let Some(b) = m.take(idx as usize) else {
                    continue;
                };
                // SAFETY: a live block.
                unsafe { verify(b.addr, b.size, Some(b.seed), "before free") };
                helpers.run(thread_of(thread), move || {
                    // SAFETY: the block is live and freed once.
                    unsafe { gomalloc::free(b.addr as *mut u8) };
                    0
                });
            }
            Action::Realloc { idx, size, thread } => {
                let size = size.bytes();
                if m.live_bytes + size > MAX_LIVE {
                    continue;
                }
                let Some(b) = m.take(idx as usize) else {
                    continue;
                };
                let addr = helpers.run(thread_of(thread), move || {
                    // SAFETY: the block is live, allocated with `b.align`.
                    unsafe { gomalloc::realloc(b.addr as *mut u8, size, b.align) as usize }
                });
                assert_ne!(addr, 0, "realloc to {size} failed");
                // SAFETY: the new block holds `size` bytes, the first `min` of them kept.
                unsafe {
                    verify_prefix(addr, b.size, size, Some(b.seed), "after realloc");
                    fill(addr, size, seed);
                }
                m.add(Block {
                    addr,
                    size,
                    seed,
                    ..b
                });
            }
            Action::Check { idx } => {
                if let Some(&b) = m.blocks.get(idx as usize % m.blocks.len().max(1)) {
                    // SAFETY: a live block.
                    unsafe { verify(b.addr, b.size, Some(b.seed), "check") };
                }
            }
        }
    }
    for (i, b) in m.blocks.iter().enumerate() {
        // SAFETY: live blocks, each freed once.
        unsafe { verify(b.addr, b.size, Some(b.seed), "at the end") };
        let addr = b.addr;
        helpers.run(i % 3, move || {
            // SAFETY: `addr` is a live block of `m`, freed once (each block goes to one
            // helper).
            unsafe { gomalloc::free(addr as *mut u8) };
            0
        });
    }
    gomalloc::check_heap();
    count_actions("heap_actions", actions.len() as u64);
});
