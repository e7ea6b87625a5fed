//! The heap profile of a collected heap: `kept` allocates objects that stay reachable,
//! `dropped` objects that are garbage at once; after `gc::collect()` the profile written by
//! `gomalloc::profile::write` (the first argument) shows the live objects by site
//! (`inuse_space`: `kept` alone) and what each site allocated (`alloc_space`: `dropped`
//! first, as it allocates more). Checked by `shim-c/tests/run-profile.sh`:
//!
//! ```text
//! cargo build --release -p gomalloc-gc --example profile_gc
//! GOMALLOC_PROFILE_RATE=32KiB target/release/examples/profile_gc gc.pb.gz
//! go tool pprof -top -sample_index=inuse_space gc.pb.gz
//! ```

use gc::{Gc, Root, Trace};

/// `KEPT_N` objects of 512 bytes stay reachable.
#[derive(Trace)]
struct Kept {
    words: [u64; 64],
}

/// `DROPPED_N` objects of 256 bytes die at once.
#[derive(Trace)]
struct Dropped {
    words: [u64; 32],
}

const KEPT_N: usize = 16_000;
const DROPPED_N: usize = 64_000;

#[inline(never)]
fn kept(m: &gc::Mutator) -> Vec<Root<Kept>> {
    (0..KEPT_N)
        .map(|i| {
            Root::new(Gc::new(
                m,
                Kept {
                    words: [i as u64; 64],
                },
            ))
        })
        .collect()
}

#[inline(never)]
fn dropped(m: &gc::Mutator) {
    for i in 0..DROPPED_N {
        std::hint::black_box(Gc::new(
            m,
            Dropped {
                words: [i as u64; 32],
            },
        ));
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: profile_gc PROFILE");
    let m = gc::attach();
    let live = kept(&m);
    dropped(&m);
    gc::collect();
    gomalloc::profile::write(&path).expect("writing the profile");
    std::hint::black_box(&live);
}
