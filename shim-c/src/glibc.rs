//! glibc's malloc extras: `malloc_trim`, `mallinfo2`, `mallinfo`, `malloc_stats`,
//! `malloc_info`, `mallopt`, answered from the core's Go-style statistics.
//!
//! How [`heap::Stats`] (named after Go's `runtime.MemStats`) maps onto glibc's
//! `struct mallinfo2`, whose fields describe a dlmalloc heap:
//!
//! | mallinfo2  | glibc meaning                     | gomalloc                        |
//! |------------|-----------------------------------|---------------------------------|
//! | `arena`    | bytes obtained from the OS (sbrk) | `heap_sys`                      |
//! | `ordblks`  | free chunks                       | 0 (no chunks: spans)            |
//! | `smblks`   | fastbin chunks                    | 0                               |
//! | `hblks`    | mmapped chunks                    | 0                               |
//! | `hblkhd`   | bytes in mmapped chunks           | 0 (large objects live in `arena`) |
//! | `usmblks`  | (unused since 2.24)               | 0                               |
//! | `fsmblks`  | bytes in fastbins                 | 0                               |
//! | `uordblks` | bytes in use                      | `heap_alloc` (bytes of live objects) |
//! | `fordblks` | free bytes                        | `heap_sys - heap_alloc`         |
//! | `keepcost` | releasable bytes at the top       | `heap_idle - heap_released`     |

use heap::report::Line;
use libc::{c_int, size_t};

/// `malloc_trim(3)`: returns free memory to the OS now (`pad` is ignored); 1 if any bytes
/// were released, else 0.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn malloc_trim(_pad: size_t) -> c_int {
    (heap::release_memory() > 0) as c_int
}

fn mallinfo2_impl() -> libc::mallinfo2 {
    let s = heap::stats();
    libc::mallinfo2 {
        arena: s.heap_sys,
        ordblks: 0,
        smblks: 0,
        hblks: 0,
        hblkhd: 0,
        usmblks: 0,
        fsmblks: 0,
        uordblks: s.heap_alloc,
        fordblks: s.heap_sys.saturating_sub(s.heap_alloc),
        keepcost: s.heap_idle.saturating_sub(s.heap_released),
    }
}

/// `mallinfo2(3)`: see the module table for what each field holds.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    mallinfo2_impl()
}

fn mallinfo_impl() -> libc::mallinfo {
    let m = mallinfo2_impl();
    // glibc truncates to int; saturating keeps a huge heap from reading negative.
    let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
    libc::mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// `mallinfo(3)` (deprecated): `mallinfo2` with each field saturated at `INT_MAX`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    mallinfo_impl()
}

/// `mallinfo`, glibc's internal name.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_mallinfo() -> libc::mallinfo {
    mallinfo_impl()
}

/// `mallopt(3)`: every parameter is accepted and ignored (the heap has no glibc tunables);
/// returns 1 (success).
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// `mallopt`, glibc's internal name.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn __libc_mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// `malloc_stats(3)`: glibc's lines (so tools that parse them keep working), then the
/// core's summary ([`heap::print_summary`]); on stderr, written with `write(2)` from stack
/// buffers, never allocating.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub extern "C" fn malloc_stats() {
    let s = heap::stats();
    let mut l = Line::new();
    let row = |l: &mut Line, name: &str, v: usize| {
        l.str(name).str(" = ").dec_padded(v, 10).str("\n");
    };
    l.str("Arena 0:\n");
    row(&mut l, "system bytes    ", s.heap_sys);
    row(&mut l, "in use bytes    ", s.heap_alloc);
    l.str("Total (incl. mmap):\n");
    row(&mut l, "system bytes    ", s.sys);
    row(&mut l, "in use bytes    ", s.heap_alloc);
    row(&mut l, "max mmap regions", 0);
    row(&mut l, "max mmap bytes  ", 0);
    l.flush_to(2);
    heap::print_summary(2);
}

/// `malloc_info(3)`: glibc's XML shape with one heap. `options` must be 0; otherwise, as
/// glibc 2.36 does (whatever the manual says), EINVAL is *returned* and errno is untouched.
/// Written with `fputs` to `stream` (this is not a path inside malloc, so stdio may
/// allocate its buffer as usual).
///
/// # Safety
/// `stream` is a valid, open `FILE *`.
#[cfg_attr(not(feature = "rust-api"), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        return libc::EINVAL;
    }
    let m = mallinfo2_impl();
    let sys = heap::stats().sys;
    // One element per line: `<head><number><tail>`, or just `<head>` when there is no number.
    let put = |head: &str, num: Option<usize>, tail: &str| {
        let mut l = Line::new();
        l.str(head);
        if let Some(n) = num {
            l.dec(n);
        }
        l.str(tail);
        l.str("\0");
        // SAFETY: `l` holds a NUL-terminated string; `stream` is valid (caller).
        unsafe { libc::fputs(l.as_bytes().as_ptr().cast(), stream) };
    };
    let totals = |rest: usize| {
        put("<total type=\"fast\" count=\"0\" size=\"0\"/>\n", None, "");
        put(
            "<total type=\"rest\" count=\"0\" size=\"",
            Some(rest),
            "\"/>\n",
        );
    };
    let system = |size: usize| {
        put("<system type=\"current\" size=\"", Some(size), "\"/>\n");
        put("<system type=\"max\" size=\"", Some(size), "\"/>\n");
        put("<aspace type=\"total\" size=\"", Some(size), "\"/>\n");
        put("<aspace type=\"mprotect\" size=\"", Some(size), "\"/>\n");
    };
    put(
        "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n",
        None,
        "",
    );
    totals(m.fordblks);
    system(m.arena);
    put("</heap>\n", None, "");
    totals(m.fordblks);
    put("<total type=\"mmap\" count=\"0\" size=\"0\"/>\n", None, "");
    system(sys);
    put("</malloc>\n", None, "");
    0
}
