//! Fuzz target `c_api`: sequences of C allocation calls (malloc, calloc, realloc,
//! reallocarray, free, posix_memalign, memalign, aligned_alloc, valloc, pvalloc,
//! malloc_usable_size) checked against glibc 2.36's documented and measured semantics
//! (`shim-c/README.md`, "The symbols and their semantics"): malloc(0) is a unique non-NULL block;
//! realloc(p, 0) frees and returns NULL; realloc(NULL, n) is malloc(n); failures return
//! NULL with errno ENOMEM and leave the old block intact; posix_memalign returns EINVAL for
//! an alignment that is not a power of two times sizeof(void *), leaving errno alone;
//! memalign rounds the alignment up; free(NULL) does nothing; free preserves errno;
//! malloc results are aligned to 16 (8 below 16 bytes); usable size covers the request;
//! memalign/aligned_alloc fail with EINVAL above SIZE_MAX/2+1; mallinfo2's fields add up.
//! The calls are the shim's real entry points (`shim-c/src`, through
//! `gomalloc_fuzz::c_layer`), each by its plain name or one of glibc's second names
//! (`__libc_malloc`, `cfree`, `__posix_memalign`, ...) and the C23 sized frees.
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

/// An alignment argument: small values (any, most not powers of two), powers of two up to
/// 16 MiB, and huge ones that no request can meet.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Align {
    Any(u16),
    Pow(u8),
    Huge(u8),
}

/// Alignments no request can meet (memalign: EINVAL above `SIZE_MAX / 2 + 1`, else ENOMEM).
/// (A satisfiable 1 GiB alignment was tried: each such block grows the committed heap by
/// 1 GiB, and the fuzzer ran at a third of its speed.)
const HUGE_ALIGN: [usize; 6] = [
    usize::MAX,
    (1 << 63) + 1,
    1 << 63,
    1 << 62,
    1 << 48,
    1 << 40,
];

impl Align {
    fn bytes(self) -> usize {
        match self {
            Align::Any(a) => a as usize,
            Align::Pow(k) => 1 << (k % 25),
            Align::Huge(i) => HUGE_ALIGN[i as usize % HUGE_ALIGN.len()],
        }
    }
}

/// Which name of a function is called: the plain one or glibc's second name (`__libc_*`,
/// `__posix_memalign`); for `free` also `cfree` and the C23 sized frees.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    Plain,
    Second,
    Third,
    Fourth,
}

#[derive(Arbitrary, Debug)]
enum Call {
    Malloc(Name, Size),
    Calloc(Name, u16, Size),
    Realloc(Name, Target, Size),
    ReallocArray(Target, u16, Size),
    Free(Name, Target),
    PosixMemalign(Name, Align, Size),
    Memalign(Name, Align, Size),
    AlignedAlloc(Align, Size),
    Valloc(Name, Size),
    Pvalloc(Name, Size),
    UsableSize(Target),
    Mallinfo,
    /// `malloc_trim(0)` when the byte is below 16: giving every free page back makes the
    /// next allocations fault their pages in again, too slow for one call in thirteen.
    Trim(u8),
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
/// Sizes or alignments from which a request may fail for want of address space.
const MAY_FAIL: usize = 1 << 40;

struct Run {
    m: Model,
    seed: u8,
}

impl Run {
    /// Checks a call that allocates `size` bytes at alignment `align`; `p` its result.
    /// `errno_on_failure` is what errno must read if it failed (`None`: not checked).
    fn allocated(&mut self, p: *mut c_void, size: usize, align: usize, zeroed: bool) {
        self.allocated_errno(p, size, align, zeroed, Some(libc::ENOMEM))
    }

    fn allocated_errno(
        &mut self,
        p: *mut c_void,
        size: usize,
        align: usize,
        zeroed: bool,
        errno_on_failure: Option<i32>,
    ) {
        if size > c::MAX_SIZE || size.checked_next_multiple_of(align).is_none() {
            assert!(p.is_null(), "{size} bytes at {align} cannot succeed");
            if let Some(e) = errno_on_failure {
                assert_eq!(c::errno(), e, "failure sets ENOMEM");
            }
            return;
        }
        if p.is_null() {
            // Huge but representable: the system may refuse; then errno says why.
            assert!(
                size >= MAY_FAIL || align >= MAY_FAIL,
                "{size} bytes (align {align}) failed"
            );
            if let Some(e) = errno_on_failure {
                assert_eq!(c::errno(), e);
            }
            return;
        }
        let addr = p as usize;
        if zeroed {
            // SAFETY: a fresh block of `size` bytes.
            unsafe { verify(addr, size, None, "calloc") };
        }
        self.seed = self.seed.wrapping_add(1);
        // SAFETY: `addr` is a fresh block of `size` bytes, ours until freed.
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

    fn realloc(&mut self, name: Name, t: Target, n: Option<usize>) {
        let old = self.target(t);
        let p = old.map_or(core::ptr::null_mut(), |b| b.addr as *mut c_void);
        c::put_errno(SENTINEL);
        // SAFETY: `p` is null or live; a successful call frees it, a failed one keeps it.
        let q = unsafe {
            match (n, name) {
                (Some(n), Name::Plain | Name::Third) => c::realloc(p, n),
                (Some(n), _) => c::__libc_realloc(p, n),
                (None, _) => c::reallocarray(p, 2, usize::MAX / 2 + 1),
            }
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
                assert_eq!(
                    c::errno(),
                    SENTINEL,
                    "a successful realloc leaves errno alone"
                );
                // SAFETY: the new block holds `n` bytes, the first `min` kept.
                unsafe { verify_prefix(q as usize, b.size, n, Some(b.seed), "realloc") };
                self.allocated(q, n, malloc_align(n), false);
            }
            _ => {
                // Failed: NULL, ENOMEM, and the old block is intact and still ours.
                assert!(q.is_null());
                assert_eq!(c::errno(), libc::ENOMEM);
                if let Some(n) = n {
                    assert!(n >= MAY_FAIL, "realloc to {n} bytes failed");
                }
                // SAFETY: the old block is still live.
                unsafe { verify(b.addr, b.size, Some(b.seed), "after failed realloc") };
                self.m.add(b);
            }
        }
    }

    /// memalign / aligned_alloc (the same in glibc 2.36): the alignment is rounded up to a
    /// power of two; one that cannot be rounded is EINVAL.
    fn memalign(&mut self, p: *mut c_void, align: usize, n: usize) {
        match align.checked_next_power_of_two() {
            None => {
                assert!(p.is_null(), "memalign({align:#x}) cannot succeed");
                assert_eq!(c::errno(), libc::EINVAL, "memalign({align:#x})");
            }
            Some(a) => self.allocated(p, n, a.max(malloc_align(n)), false),
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
            Call::Malloc(name, s) if room => {
                let n = s.bytes();
                c::put_errno(SENTINEL);
                let p = match name {
                    Name::Plain | Name::Third => c::malloc(n),
                    _ => c::__libc_malloc(n),
                };
                if !p.is_null() {
                    assert_eq!(
                        c::errno(),
                        SENTINEL,
                        "a successful malloc leaves errno alone"
                    );
                }
                r.allocated(p, n, malloc_align(n), false);
            }
            Call::Calloc(name, k, s) if room => {
                let (k, n) = (k as usize % 64, s.bytes());
                let p = match name {
                    Name::Plain | Name::Third => c::calloc(k, n),
                    _ => c::__libc_calloc(k, n),
                };
                match k.checked_mul(n) {
                    Some(t) => r.allocated(p, t, malloc_align(t), true),
                    None => {
                        assert!(p.is_null(), "calloc overflow");
                        assert_eq!(c::errno(), libc::ENOMEM);
                    }
                }
            }
            Call::Realloc(name, t, s) if room => r.realloc(name, t, Some(s.bytes())),
            Call::ReallocArray(t, k, s) if room => {
                let (k, n) = (k as usize % 64, s.bytes());
                match k.checked_mul(n) {
                    Some(total) => r.realloc(Name::Plain, t, Some(total)),
                    None => r.realloc(Name::Plain, t, None),
                }
            }
            Call::Free(name, t) => {
                let b = r.target(t);
                if let Some(b) = b {
                    // SAFETY: a live block.
                    unsafe { verify(b.addr, b.size, Some(b.seed), "before free") };
                }
                let p = b.map_or(core::ptr::null_mut(), |b| b.addr as *mut c_void);
                let (size, align) = b.map_or((0, 0), |b| (b.size, b.align));
                c::put_errno(SENTINEL);
                // SAFETY: null or a live block, freed once (the sized frees get its size
                // and alignment, as C23 requires).
                unsafe {
                    match name {
                        Name::Plain => c::free(p),
                        Name::Second => c::__libc_free(p),
                        Name::Third => c::cfree(p),
                        Name::Fourth if size % 2 == 0 => c::free_sized(p, size),
                        Name::Fourth => c::free_aligned_sized(p, align, size),
                    }
                }
                assert_eq!(c::errno(), SENTINEL, "free preserves errno");
            }
            Call::PosixMemalign(name, a, s) if room => {
                let (align, n) = (a.bytes(), s.bytes());
                let mut out = 7usize as *mut c_void;
                c::put_errno(SENTINEL);
                // SAFETY: `out` is writable.
                let rc = unsafe {
                    match name {
                        Name::Plain | Name::Third => c::posix_memalign(&mut out, align, n),
                        _ => c::__posix_memalign(&mut out, align, n),
                    }
                };
                if align < 8 || !align.is_power_of_two() {
                    assert_eq!(rc, libc::EINVAL, "alignment {align}");
                    assert_eq!(out as usize, 7, "out untouched on failure");
                    assert_eq!(c::errno(), SENTINEL, "EINVAL is returned, errno untouched");
                } else if rc == 0 {
                    assert_eq!(c::errno(), SENTINEL, "success leaves errno alone");
                    r.allocated(out, n, align.max(malloc_align(n)), false);
                } else {
                    // glibc's errno reads ENOMEM after this failure too; only the return
                    // value is specified.
                    assert_eq!(rc, libc::ENOMEM);
                    assert_eq!(out as usize, 7, "out untouched on failure");
                    r.allocated_errno(
                        core::ptr::null_mut(),
                        n,
                        align.max(malloc_align(n)),
                        false,
                        None,
                    );
                }
            }
            Call::Memalign(name, a, s) if room => {
                let (align, n) = (a.bytes(), s.bytes());
                let p = match name {
                    Name::Plain | Name::Third => c::memalign(align, n),
                    _ => c::__libc_memalign(align, n),
                };
                r.memalign(p, align, n);
            }
            Call::AlignedAlloc(a, s) if room => {
                let (align, n) = (a.bytes(), s.bytes());
                let p = c::aligned_alloc(align, n);
                r.memalign(p, align, n);
            }
            Call::Valloc(name, s) if room => {
                let n = s.bytes();
                let p = match name {
                    Name::Plain | Name::Third => c::valloc(n),
                    _ => c::__libc_valloc(n),
                };
                r.allocated(p, n, 4096, false);
            }
            Call::Pvalloc(name, s) if room => {
                let n = s.bytes();
                let p = match name {
                    Name::Plain | Name::Third => c::pvalloc(n),
                    _ => c::__libc_pvalloc(n),
                };
                match n.checked_next_multiple_of(4096) {
                    Some(rounded) if !p.is_null() => {
                        // SAFETY: a live block.
                        let usable = unsafe { c::malloc_usable_size(p) };
                        assert!(usable >= rounded.max(4096), "pvalloc rounds up to pages");
                        r.allocated(p, n, 4096, false);
                    }
                    // Rounding overflows: ENOMEM, as for any impossible size.
                    None => r.allocated(p, usize::MAX, 4096, false),
                    _ => r.allocated(p, n, 4096, false),
                }
            }
            Call::UsableSize(t) => match t {
                Target::Null => {
                    // SAFETY: NULL is allowed.
                    assert_eq!(unsafe { c::malloc_usable_size(core::ptr::null_mut()) }, 0)
                }
                Target::Block(i) => {
                    if let Some(&b) = r.m.blocks.get(i as usize % r.m.blocks.len().max(1)) {
                        // SAFETY: a live block.
                        let u = unsafe { c::malloc_usable_size(b.addr as *mut c_void) };
                        assert!(u >= b.size, "malloc_usable_size {u} < {}", b.size);
                    }
                }
            },
            Call::Mallinfo => {
                let m = c::mallinfo2();
                assert!(m.uordblks <= m.arena, "{m:?}");
                assert_eq!(m.fordblks, m.arena - m.uordblks, "{m:?}");
                assert!(
                    m.uordblks >= r.m.live_bytes,
                    "in use {} < the model's live bytes {}",
                    m.uordblks,
                    r.m.live_bytes
                );
                let old = c::mallinfo();
                let sat = |v: usize| v.min(i32::MAX as usize) as i32;
                assert_eq!(old.arena, sat(m.arena), "mallinfo is mallinfo2 saturated");
                assert_eq!(c::mallopt(libc::M_ARENA_MAX, 1), 1, "mallopt accepts");
            }
            Call::Trim(x) if x < 16 => {
                let rc = c::malloc_trim(0);
                // The live blocks' contents are checked when they are freed or at the end.
                assert!(rc == 0 || rc == 1, "malloc_trim returned {rc}");
            }
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
