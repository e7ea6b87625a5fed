//! Sampled heap profiles: which stacks hold the memory, in pprof's format, as Go's heap
//! profile (`runtime/mprof.go`, `runtime.MemProfileRate`).
//!
//! 1. **Sampling** ([`sample`]): a per-thread countdown of bytes, drawn from an
//!    exponential distribution of mean [`rate`] (`GOMALLOC_PROFILE_RATE`, off by
//!    default). The fast path is the same as without profiles: a thread that samples
//!    runs it on proxy spans that hold as many slots as its countdown has room for, and
//!    the slow path counts them when they run out (`lend`; with the feature `profile`,
//!    the fast path carries the countdown instead).
//! 2. **The sampled block** ([`alloc_sampled`]) is served from a span of its own (as
//!    tcmalloc does), whose record names the block's bucket (`Span::prof_bucket`). Its
//!    free therefore always takes the large-object path, where the bucket is found, and
//!    the small-object free paths need no "is it sampled?" test. It costs a page per
//!    sampled block (at the default-suggested rate of 512 KiB, under 2% of the sampled
//!    bytes' worth of memory).
//! 3. **The stack** ([`unwind`]): this object's frames by their call-frame information,
//!    then the program's by frame pointers, bounded by the thread's stack; no lock, no
//!    allocation.
//! 4. **The records** ([`bucket`]): objects and bytes allocated and freed per (stack,
//!    charged size: a size class or a page count), in a fixed table mapped from the OS,
//!    under one lock, last in the lock order.
//! 5. **Output** ([`pprof`]): [`write()`] (Rust), `GOMALLOC_PROFILE=path` at exit,
//!    `GOMALLOC_PROFILE=leaks` (the blocks still live at exit, on stderr), `gomalloc run
//!    --heap-profile FILE -- PROGRAM`.
//!
//! ```no_run
//! gomalloc::profile::set_rate(512 * 1024);
//! let v = vec![0u8; 1 << 20];
//! gomalloc::profile::write("heap.pb.gz").unwrap();
//! # drop(v);
//! ```
//!
//! Layer: support (the crate root's module map, `lib.rs`).

pub mod bucket;
#[cfg(not(feature = "profile"))]
pub(crate) mod lend;
pub mod pprof;
pub mod sample;
pub mod unwind;

pub use sample::{ThreadState, rate, set_rate};

use crate::span::Span;
use bucket::{Bucket, MAX_STACK, TABLE};

/// Allocates the sampled block of `size` bytes at `align` from a span of its own and
/// records it under the calling stack. Null when out of memory.
#[cold]
#[inline(never)]
pub fn alloc_sampled(size: usize, align: usize) -> *mut u8 {
    let p = crate::malloc::alloc_large_for_sample(size, align);
    if !p.is_null() {
        // SAFETY: `p` was just allocated as the one block of its span.
        unsafe { record_sampled_charged(p, size, charge_of(size, align)) };
    }
    p
}

/// The bytes the countdown charges for an allocation of `size` at `align`, as Go's
/// `mallocgc` charges the rounded size: the size class's size for a small block in the
/// default build, where the fast path's slots are counted by their class (`lend`); whole
/// pages for a large block (Go: the span's `elemsize`); and `size` for a small block
/// with the feature `profile`, whose fast path counts the size asked for. It is also the
/// size the records are kept by ([`bucket`]).
#[inline]
pub(crate) fn charge_of(size: usize, align: usize) -> usize {
    if let Some(class) = crate::malloc::small_class(size, align) {
        #[cfg(not(feature = "profile"))]
        return class.size();
        #[cfg(feature = "profile")]
        {
            let _ = class;
            return size;
        }
    }
    size.checked_next_multiple_of(crate::sizeclass::PAGE_SIZE)
        .unwrap_or(size)
}

/// For an allocator built on this heap (the collector, `gomalloc-gc`): counts `size`
/// bytes on the calling thread's countdown and returns true if this allocation is to be
/// sampled. The caller then allocates it as the one object of a span of its own and calls
/// [`record_sampled`]; [`crate::gcapi::free_span`] counts its free.
pub fn sample_due(size: usize) -> bool {
    let mut c = crate::mcache::current();
    // With the feature `profile`, the countdown of the allocation fast paths.
    #[cfg(feature = "profile")]
    // SAFETY: `current()` is the calling thread's cache or the static empty one.
    if let Some(left) = unsafe { sample::countdown(c, size) } {
        if c != crate::mcache::EMPTY_CACHE_PTR {
            // SAFETY: the calling thread's own cache.
            unsafe { (*c).next_sample.set(left) };
        }
        // The empty cache's countdown is 0: it gets here only with size 0.
        return false;
    }
    if c == crate::mcache::EMPTY_CACHE_PTR {
        // A thread that never used malloc (a collector-only thread of a program whose
        // global allocator is not `GoMalloc`) gets a cache here, for its countdown; the
        // process's settings are read then too.
        match crate::mcache::current_or_init() {
            Some(cache) => c = cache,
            None => return false,
        }
    }
    // SAFETY: `c` is the calling thread's own cache.
    unsafe { sample::tick(c, size) }
}

/// For an allocator built on this heap that counts down on its own (the collector's
/// windows): a countdown drawn for the calling thread, exponential of mean [`rate`]
/// bytes (under the current [`rate_epoch`]). Poisson processes of one rate over
/// disjoint sets of bytes make one over their union, so a countdown per size class
/// samples as one per thread does (`lend`).
pub fn draw_countdown() -> usize {
    let mut c = crate::mcache::current();
    if c == crate::mcache::EMPTY_CACHE_PTR {
        match crate::mcache::current_or_init() {
            Some(cache) => c = cache,
            None => return usize::MAX,
        }
    }
    // SAFETY: `c` is the calling thread's own cache.
    sample::draw(unsafe { &*c })
}

/// Changes each time [`set_rate`] is called: a countdown drawn in another epoch was drawn
/// for another rate.
pub fn rate_epoch() -> u32 {
    sample::epoch()
}

/// Records the sampled block `p` of `size` requested bytes under the calling stack (the
/// caller's caller's frames first: the walk's own frame is dropped by the writers).
///
/// # Safety
/// `p` was just allocated as the one block of a large span, of this heap or of the
/// collector's, that no other thread knows of yet.
#[inline(never)]
pub unsafe fn record_sampled(p: *mut u8, size: usize) {
    // SAFETY: as for this function (# Safety).
    unsafe { record_sampled_charged(p, size, size) }
}

/// [`record_sampled`] for a block whose countdown charged `charged` bytes, not `size`
/// (the size class's size, for an allocator that counts whole slots).
///
/// # Safety
/// As for [`record_sampled`].
#[inline(never)]
pub unsafe fn record_sampled_charged(p: *mut u8, size: usize, charged: usize) {
    let mut stk = [0usize; MAX_STACK];
    let n = unwind::capture(&mut stk);
    let id = TABLE.lock().record_alloc(&stk[..n], size, charged);
    let s = crate::arena::span_of(p as usize);
    // SAFETY: `p` was just allocated as the one block of `s` (# Safety), so `s` is its live
    // span record and no other thread writes it.
    unsafe {
        (*s).prof_size.set(size);
        (*s).prof_bucket.set(id);
    }
}

/// Counts the free of the sampled block of span `s` (Go's `mProf_Free`). Called by the
/// large-object free and by [`crate::gcapi::free_span`] (the collector's spans) before the
/// span goes back to the page heap.
#[cold]
#[inline(never)]
pub(crate) fn freed(s: &Span) {
    let id = s.prof_bucket.replace(0);
    TABLE.lock().record_free(id, s.prof_size.get());
}

/// One allocation site of the profile: what [`records`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Return addresses, innermost first (the allocator's own frames included).
    pub stack: Vec<usize>,
    /// Requested bytes of each sampled object: their mean, `alloc_bytes / allocs` (a
    /// record holds the objects of one site and one charged size, whatever sizes they
    /// asked for, as Go's records are by rounded size).
    pub size: usize,
    /// Bytes the sampling countdown charged for each (its size class's size for a small
    /// block, whole pages for a large one): what the chance of sampling depends on, for
    /// [`pprof::scale_sampled`].
    pub charged: usize,
    /// Sampled objects allocated here.
    pub allocs: u64,
    /// Sampled objects freed.
    pub frees: u64,
    /// Requested bytes of the sampled objects allocated here.
    pub alloc_bytes: u64,
    /// Requested bytes of the sampled objects freed.
    pub free_bytes: u64,
}

/// The buckets, copied out: the lock is taken with room reserved beforehand, so nothing
/// allocates under it; the calling thread's own allocations are not sampled meanwhile.
fn snapshot() -> Vec<Bucket> {
    sample::suspended(|| {
        loop {
            let n = TABLE.lock().len();
            let mut v = Vec::with_capacity(n + 64);
            let t = TABLE.lock();
            if t.len() <= v.capacity() {
                t.copy_into(&mut v);
                return v;
            }
        }
    })
}

/// The sampled allocation sites so far, unscaled.
pub fn records() -> Vec<Record> {
    snapshot()
        .iter()
        .map(|b| Record {
            stack: b.stack().to_vec(),
            size: (b.alloc_bytes / b.allocs.max(1)) as usize,
            charged: b.charged,
            allocs: b.allocs,
            frees: b.frees,
            alloc_bytes: b.alloc_bytes,
            free_bytes: b.free_bytes,
        })
        .collect()
}

/// Samples that could not be recorded (the table of [`bucket::MAX_BUCKETS`] sites was
/// full).
pub fn dropped() -> u64 {
    TABLE.lock().dropped
}

/// Writes the heap profile to `path` (pprof's `profile.proto`, gzipped; read it with `go
/// tool pprof -sample_index=inuse_space BINARY path`).
pub fn write(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    write_profile(path.as_ref(), false)
}

/// Writes the leak profile to `path`: only the sampled blocks still live, by stack
/// (`inuse_*` sample types; the `alloc_*` ones are zero).
pub fn write_leaks(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    write_profile(path.as_ref(), true)
}

fn write_profile(path: &std::path::Path, leaks: bool) -> std::io::Result<()> {
    let buckets = snapshot();
    sample::suspended(|| {
        let bytes = pprof::encode(&buckets, rate(), leaks)?;
        std::fs::write(path, bytes)
    })
}

/// Prints the leak report to `fd`: per stack, the sampled blocks still live, scaled as
/// the profile's `inuse_space`, largest first, with each frame's symbol where the
/// dynamic symbol table has one (`dladdr`: exported symbols; link C programs with
/// `-rdynamic`, or read the `leaks:FILE` profile with `go tool pprof` for full names).
pub fn report_leaks(fd: i32) {
    let buckets = snapshot();
    sample::suspended(|| {
        let rate = rate();
        let mut live: Vec<(f64, f64, &Bucket)> = buckets
            .iter()
            .filter(|b| b.live() > 0)
            .map(|b| {
                let (o, by) = pprof::scale_bytes(b.live(), b.live_bytes(), b.charged, rate);
                (by, o, b)
            })
            .collect();
        live.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total = live.iter().fold(0.0, |a, l| a + l.0);
        let mut out = format!(
            "gomalloc: leak report: about {:.0} bytes in {} sampled sites live at exit \
             (sampling rate {} bytes)\n",
            total,
            live.len(),
            rate
        );
        for (bytes, objs, b) in &live {
            out += &format!(
                "gomalloc: leak: about {:.0} bytes in {:.0} objects of {} bytes, allocated at:\n",
                bytes,
                objs,
                b.live_bytes() / b.live()
            );
            out += &frames(b.stack());
        }
        crate::sys::write(fd, out.as_bytes());
    });
}

/// The frames of a recorded stack, one line each (address, symbol, object file), the
/// allocator's own frames left out. The first frame is the walk's return into
/// `alloc_sampled`.
fn frames(stack: &[usize]) -> String {
    let mut out = String::new();
    let mut skipping = true;
    for &ret in stack.get(1..).unwrap_or(&[]) {
        let (name, module) = symbol(ret - 1);
        if skipping && is_allocator_frame(&name, &module) {
            continue;
        }
        skipping = false;
        out += &format!("    {:#x} {} ({})\n", ret, name, module);
    }
    out
}

/// Where the block holding `addr` was allocated, as [`report_leaks`] prints a stack (a
/// line a frame), if the profile sampled that block; `None` otherwise (profiling off, a
/// block not sampled: raise `GOMALLOC_PROFILE_RATE`, down to `1` for every block).
///
/// Reads the block's span with no lock: the caller makes sure the block is not freed
/// meanwhile (the collector's off-heap checker calls it with the world stopped, on a
/// block it found allocated). Allocates, so not from inside `malloc`.
pub fn allocation_site(addr: usize) -> Option<String> {
    let s = crate::arena::span_containing(addr);
    if s.is_null() {
        return None;
    }
    // SAFETY: arena-map entries point to live span records (arena invariant 1).
    let sr = unsafe { &*s };
    if !sr.is_large() || sr.state() != crate::span::SpanState::InUse {
        return None;
    }
    let mut stk = [0; bucket::MAX_STACK];
    let n = TABLE.lock().stack_of(sr.prof_bucket.get(), &mut stk)?;
    Some(sample::suspended(|| {
        let f = frames(&stk[..n]);
        if f.is_empty() {
            // The walk follows frame pointers (README, "Heap profiles").
            "    (no frames: the code that allocated it has no frame pointers)\n".to_string()
        } else {
            f
        }
    }))
}

/// The symbol and object file of `pc`, through `dladdr` (outside malloc only: it takes
/// the loader's lock).
fn symbol(pc: usize) -> (String, String) {
    // SAFETY: `Dl_info` is plain data; dladdr fills it or returns 0.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr accepts any address.
    if unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) } == 0 {
        return ("?".into(), "?".into());
    }
    let cstr = |p: *const libc::c_char| {
        if p.is_null() {
            "?".to_string()
        } else {
            // SAFETY: dladdr's strings are NUL-terminated and live as long as the object.
            unsafe { core::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    let name = if info.dli_sname.is_null() {
        "?".to_string()
    } else {
        format!(
            "{}+{:#x}",
            cstr(info.dli_sname),
            pc + 1 - info.dli_saddr as usize
        )
    };
    (name, cstr(info.dli_fname))
}

/// A leading frame of the allocator itself, left out of the leak report: a C allocation
/// function, or code of the object file that holds this allocator when that is a shared
/// library (`libgomalloc.so`).
fn is_allocator_frame(name: &str, module: &str) -> bool {
    let base = name.split('+').next().unwrap_or("");
    let c_names = [
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "free",
        "memalign",
        "aligned_alloc",
        "posix_memalign",
        "valloc",
        "pvalloc",
        "__rust_alloc",
        "__rust_alloc_zeroed",
        "__rust_realloc",
    ];
    if c_names.contains(&base) || base.starts_with("__libc_") {
        return true;
    }
    let (_, own) = symbol(alloc_sampled as *const () as usize);
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    module == own && own != exe && base == "?"
}

/// The exit hook (from the core's `.fini_array` entry): `GOMALLOC_PROFILE=path` writes
/// the profile, `leaks` prints the leak report, `leaks:path` writes the leak profile.
/// `%p` in a path is replaced by the process id; a forked child whose path has no `%p`
/// writes nothing, so that it does not overwrite its parent's profile.
pub(crate) fn at_exit() {
    let Some(v) = crate::config::profile_output() else {
        return;
    };
    let Ok(v) = core::str::from_utf8(v) else {
        return;
    };
    let (leaks, path) = match v.strip_prefix("leaks") {
        Some("") => {
            report_leaks(crate::stats::exit_fd());
            return;
        }
        Some(rest) if rest.starts_with(':') => (true, &rest[1..]),
        _ => (false, v),
    };
    let pid = std::process::id();
    if !path.contains("%p") && pid != crate::config::start_pid() {
        return;
    }
    let path = path.replace("%p", &pid.to_string());
    if let Err(e) = write_profile(std::path::Path::new(&path), leaks) {
        let msg = format!("gomalloc: cannot write the heap profile {}: {}\n", path, e);
        crate::sys::write(crate::stats::exit_fd(), msg.as_bytes());
    }
}
