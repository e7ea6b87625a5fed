//! Fuzz target `c_api`: sequences of C allocation calls (malloc, calloc, realloc,
//! reallocarray, free, posix_memalign, memalign, aligned_alloc, valloc, pvalloc,
//! malloc_usable_size) checked against glibc 2.36's documented and measured semantics
//! (`shared/ALLOCATOR-NOTES.md`, "The C ABI"): malloc(0) is a unique non-NULL block;
//! realloc(p, 0) frees and returns NULL; realloc(NULL, n) is malloc(n); failures return
//! NULL with errno ENOMEM and leave the old block intact; posix_memalign returns EINVAL for
//! an alignment that is not a power of two times sizeof(void *), leaving errno alone;
//! memalign rounds the alignment up; free(NULL) does nothing; free preserves errno;
//! malloc results are aligned to 16 (8 below 16 bytes); usable size covers the request.
//! The calls go through `gomalloc_fuzz::c_layer` (see its TODO about the shim).
//!
//!     cargo +nightly fuzz run c_api -- -max_total_time=60
#![no_main]

use arbitrary::Arbitrary;
use core::ffi::c_void;
use gomalloc_fuzz::c_layer as c;
use gomalloc_fuzz::{count_actions, fill, verify, verify_prefix, Block, Model};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Tiny(u8),
    Small(u16),
    Large(u32),
    Huge(u8),
}

const HUGE: [usize; 6] = [
    isize::MAX as usize + 1,
    usize::MAX,
    usize::MAX - 4095,
    isize::MAX as usize - 4096,
    1 << 48,
    1 << 47,
];

impl Size {
    fn bytes(self) -> usize {
        match self {
            Size::Tiny(n) => n as usize,
            Size::Small(n) => n as usize % (40 << 10),
            // Up to 4 MiB one time in 8, else up to 64 KiB (big blocks are slow to poison).
            Size::Large(n) if n % 8 == 0 => (n >> 3) as usize % (4 << 20),
            Size::Large(n) => (n >> 3) as usize % (64 << 10),
            Size::Huge(i) => HUGE[i as usize % HUGE.len()],
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    Null,
    Block(u16),
}

#[derive(Arbitrary, Debug)]
enum Call {
    Malloc(Size),
    Calloc(u16, Size),
    Realloc(Target, Size),
    ReallocArray(Target, u16, Size),
    Free(Target),
    PosixMemalign(u32, Size),
    Memalign(u32, Size),
    AlignedAlloc(u8, Size),
    Valloc(Size),
    Pvalloc(Size),
    UsableSize(Target),
}

/// The alignment glibc's malloc guarantees for `size` bytes.
fn malloc_align(size: usize) -> usize {
    if size >= c::MAX_ALIGN {
        c::MAX_ALIGN
    } else {
        8
    }
}

/// Live bytes above which allocating calls are skipped.
const MAX_LIVE: usize = 128 << 20;
const SENTINEL: i32 = 4242;

struct Run {
    m: Model,
    seed: u8,
}

impl Run {
    /// Checks a call that allocates `size` bytes at alignment `align`; `p` its result,
    /// `fits` whether the model says it may succeed.
    fn allocated(&mut self, p: *mut c_void, size: usize, align: usize, zeroed: bool) {
        if size > c::MAX_SIZE || size.checked_next_multiple_of(align).is_none() {
            assert!(p.is_null(), "{size} bytes cannot succeed");
            assert_eq!(c::errno(), libc::ENOMEM, "failure sets ENOMEM");
            return;
        }
        if p.is_null() {
            // Huge but representable: the system may refuse; then errno says why.
            assert!(size >= 1 << 40, "{size} bytes (align {align}) failed");
            assert_eq!(c::errno(), libc::ENOMEM);
            return;
        }
        let addr = p as usize;
        if zeroed {
            // SAFETY: a fresh block of `size` bytes.
            unsafe { verify(addr, size, None, "calloc") };
        }
        self.seed = self.seed.wrapping_add(1);
        // SAFETY: as above.
        unsafe { fill(addr, size, self.seed) };
        self.m.add(Block {
            addr,
            size,
            align,
            seed: self.seed,
        });
    }

    fn target(&mut self, t: Target) -> Option<Block> {
        match t {
            Target::Null => None,
            Target::Block(i) => self.m.take(i as usize),
        }
    }

    fn realloc(&mut self, t: Target, n: Option<usize>) {
        let old = self.target(t);
        let p = old.map_or(core::ptr::null_mut(), |b| b.addr as *mut c_void);
        c::put_errno(SENTINEL);
        let q = match n {
            // SAFETY: `p` is null or live.
            Some(n) => unsafe { c::realloc(p, n) },
            None => unsafe { c::reallocarray(p, 2, usize::MAX / 2 + 1) },
        };
        let Some(b) = old else {
            // realloc(NULL, n) is malloc(n).
            let n = n.unwrap_or(usize::MAX);
            self.allocated(q, n, malloc_align(n), false);
            return;
        };
        match n {
            Some(0) => {
                assert!(q.is_null(), "realloc(p, 0) frees and returns NULL");
                assert_eq!(c::errno(), SENTINEL, "realloc(p, 0) leaves errno alone");
            }
            Some(n) if !q.is_null() => {
                // SAFETY: the new block holds `n` bytes, the first `min` kept.
                unsafe { verify_prefix(q as usize, b.size, n, Some(b.seed), "realloc") };
                self.allocated(q, n, malloc_align(n), false);
            }
            _ => {
                // Failed: NULL, ENOMEM, and the old block is intact and still ours.
                assert!(q.is_null());
                assert_eq!(c::errno(), libc::ENOMEM);
                // SAFETY: the old block is still live.
                unsafe { verify(b.addr, b.size, Some(b.seed), "after failed realloc") };
                self.m.add(b);
            }
        }
    }
}

fuzz_target!(|calls: Vec<Call>| {
    let mut r = Run {
        m: Model::default(),
        seed: 0,
    };
    for call in &calls {
        let room = r.m.live_bytes < MAX_LIVE;
        match *call {
            Call::Malloc(s) if room => {
                let n = s.bytes();
                let p = c::malloc(n);
                r.allocated(p, n, malloc_align(n), false);
            }
            Call::Calloc(k, s) if room => {
                let (k, n) = (k as usize % 64, s.bytes());
                let p = c::calloc(k, n);
                match k.checked_mul(n) {
                    Some(t) => r.allocated(p, t, malloc_align(t), true),
                    None => {
                        assert!(p.is_null(), "calloc overflow");
                        assert_eq!(c::errno(), libc::ENOMEM);
                    }
                }
            }
            Call::Realloc(t, s) if room => r.realloc(t, Some(s.bytes())),
            Call::ReallocArray(t, k, s) if room => {
                let (k, n) = (k as usize % 64, s.bytes());
                match k.checked_mul(n) {
                    Some(total) => r.realloc(t, Some(total)),
                    None => r.realloc(t, None),
                }
            }
            Call::Free(t) => {
                let b = r.target(t);
                if let Some(b) = b {
                    // SAFETY: a live block.
                    unsafe { verify(b.addr, b.size, Some(b.seed), "before free") };
                }
                c::put_errno(SENTINEL);
                // SAFETY: null or a live block, freed once.
                unsafe { c::free(b.map_or(core::ptr::null_mut(), |b| b.addr as *mut c_void)) };
                assert_eq!(c::errno(), SENTINEL, "free preserves errno");
            }
            Call::PosixMemalign(a, s) if room => {
                let (align, n) = (a as usize % (2 << 20), s.bytes());
                let mut out = 7usize as *mut c_void;
                c::put_errno(SENTINEL);
                // SAFETY: `out` is writable.
                let rc = unsafe { c::posix_memalign(&mut out, align, n) };
                assert_eq!(c::errno(), SENTINEL, "posix_memalign leaves errno alone");
                if align < 8 || !align.is_power_of_two() {
                    assert_eq!(rc, libc::EINVAL, "alignment {align}");
                    assert_eq!(out as usize, 7, "out untouched on failure");
                } else if rc == 0 {
                    r.allocated(out, n, align.max(malloc_align(n)), false);
                } else {
                    assert_eq!(rc, libc::ENOMEM);
                    assert!(n >= 1 << 40, "{n} bytes at {align} failed");
                }
            }
            Call::Memalign(a, s) if room => {
                let (align, n) = (a as usize % (2 << 20), s.bytes());
                let p = c::memalign(align, n);
                let want = align.next_power_of_two().max(malloc_align(n));
                r.allocated(p, n, want, false);
            }
            Call::AlignedAlloc(l, s) if room => {
                // glibc 2.36's aligned_alloc is memalign.
                let (align, n) = (1usize << (l % 21), s.bytes());
                let p = c::memalign(align, n);
                r.allocated(p, n, align.max(malloc_align(n)), false);
            }
            Call::Valloc(s) if room => {
                let n = s.bytes();
                let p = c::valloc(n);
                r.allocated(p, n, 4096, false);
            }
            Call::Pvalloc(s) if room => {
                let n = s.bytes();
                let p = c::pvalloc(n);
                match n.checked_next_multiple_of(4096) {
                    Some(rounded) if !p.is_null() => {
                        // SAFETY: a live block.
                        let usable = unsafe { c::malloc_usable_size(p) };
                        assert!(usable >= rounded.max(4096), "pvalloc rounds up to pages");
                        r.allocated(p, n, 4096, false);
                    }
                    _ => r.allocated(p, n, 4096, false),
                }
            }
            Call::UsableSize(t) => match t {
                // SAFETY: NULL is allowed.
                Target::Null => {
                    assert_eq!(unsafe { c::malloc_usable_size(core::ptr::null_mut()) }, 0)
                }
                Target::Block(i) => {
                    if let Some(&b) = r.m.blocks.get(i as usize % r.m.blocks.len().max(1)) {
                        // SAFETY: a live block.
                        let u = unsafe { c::malloc_usable_size(b.addr as *mut c_void) };
                        assert!(u >= b.size);
                    }
                }
            },
            _ => {} // an allocating call while the live set is full
        }
    }
    for b in r.m.blocks.drain(..) {
        // SAFETY: live blocks, each freed once.
        unsafe {
            verify(b.addr, b.size, Some(b.seed), "at the end");
            c::free(b.addr as *mut c_void);
        }
    }
    // The whole-heap check costs about as much as a short input: every 8th input.
    static INPUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if INPUTS
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(8)
    {
        gomalloc::check_heap();
    }
    count_actions("c_api", calls.len() as u64);
});
