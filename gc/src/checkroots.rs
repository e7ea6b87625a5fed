//! The off-heap misuse checker (`GOMALLOC_GCCHECKROOTS=1`, design §9).
//!
//! The rooting rule (a `Gc` kept in a `std` collection, a `Box`, a channel or a static is
//! not a root) is the one contract of the crate that types do not enforce, and breaking it
//! is a use-after-free. gomalloc owns the `malloc` heap too (when it is the process's
//! allocator: `#[global_allocator]` or `LD_PRELOAD=libgomalloc.so`), so at every cycle's
//! mark termination, with the world stopped and before anything unmarked is freed, this
//! module looks through off-heap memory for words pointing into an object the sweep is
//! about to free, and ends the process with a report if it finds one.
//!
//! What is scanned, once per cycle:
//! 1. every allocated `malloc` block ([`gcapi::for_each_malloc_block`]) except those the
//!    collected heap owns (below);
//! 2. the writable segments (`.data`, `.bss`) of the executable and every loaded library
//!    (`dl_iterate_phdr`).
//!
//! A block is *owned by the collected heap*, and skipped, when a word of a GC object with
//! a header (any object that may own `malloc` memory through a `Vec`, `Box` or `String`
//! field), or of the collector's own tables (roots, handle stacks, weak and finalizer
//! tables, grey lists), points into it, directly or through other such blocks. Those hold
//! `Gc`s the collector traces (or its own bookkeeping, whose spare capacity keeps stale
//! words), and the `Vec` of a dead object dies with it; a live object's `Vec` may keep
//! stale words past its length after a `pop`. So the checker reports `Gc`s in memory
//! that no GC object reaches: the misuse the rule is about.
//!
//! Not covered: thread stacks of threads that never attached, thread-local variables,
//! memory from `mmap` or another allocator. A word that merely looks like a pointer into
//! a dead object (stale data in a live block, such as a `std` `Vec` that held `Gc`s between
//! two safepoints and was truncated, not freed) is reported too: clear such buffers.
//! Blocks of threads that run during the check (threads that never attached) are read as
//! a conservative scanner reads memory it does not own: racing their writes, possibly
//! stale.

use crate::mark::{HEAP_BELOW, HEAP_MAX};
use crate::ptr::VTable;
use gomalloc::gcapi::{self, ObjectKind};
use std::collections::HashSet;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// `GOMALLOC_GCCHECKROOTS=1`: check at every cycle.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the checker on or off (from `GOMALLOC_GCCHECKROOTS` at start-up).
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// True if every cycle runs the check.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The words of `[lo, hi)` (8-byte aligned part), read with volatile loads (see the module
/// header: some of this memory may be written by threads that run).
///
/// # Safety
/// `[lo, hi)` is mapped and readable.
unsafe fn for_each_word(lo: usize, hi: usize, mut f: impl FnMut(usize, usize)) {
    let mut p = lo.next_multiple_of(8);
    while p + 8 <= hi {
        // SAFETY: `p` is 8-aligned and `p + 8 <= hi`, so the word lies inside `[lo, hi)`,
        // which the caller guarantees is mapped and readable (# Safety).
        f(p, unsafe { std::ptr::read_volatile(p as *const usize) });
        p += 8;
    }
}

/// Bytes of the object at `o` (a slot, or a large object's pages).
fn object_size(o: &gcapi::ObjectRef) -> usize {
    o.span().object_size()
}

/// The address ranges of the collector's own tables (statics whose `malloc` blocks hold
/// object addresses, current and stale).
fn collector_tables() -> [(usize, usize); 6] {
    let [shade, work] = crate::collector::grey_ranges();
    [
        crate::root::table_range(),
        crate::weak::table_ranges().0,
        crate::weak::table_ranges().1,
        shade,
        work,
        crate::mutator::world_range(),
    ]
}

/// The check (see the module header). Runs at mark termination: the world is stopped,
/// every mutator's span cache committed (allocation bits exact), mark bits final
/// (finalizer objects revived), nothing swept yet.
pub(crate) fn check() {
    let (below, max) = (
        HEAP_BELOW.load(Ordering::Relaxed),
        HEAP_MAX.load(Ordering::Relaxed),
    );
    // Blocks owned by the collected heap, found from GC objects and the collector's tables.
    let mut owned: HashSet<usize> = HashSet::new();
    let mut work: Vec<(usize, usize)> = Vec::new();
    let note = |w: usize, owned: &mut HashSet<usize>, work: &mut Vec<(usize, usize)>| {
        if let Some((b, size)) = gcapi::find_malloc_block(w) {
            if owned.insert(b) {
                work.push((b, size));
            }
        }
    };
    gcapi::for_each_gc_span(|s| {
        // SAFETY: a live span record of the collector; its bitmaps are exact and not
        // changing (world stopped, caches committed, nothing swept yet).
        let sr = unsafe { &*s };
        if !matches!(
            sr.kind(),
            Some(ObjectKind::Scan) | Some(ObjectKind::NoscanDrop)
        ) {
            return;
        }
        let size = sr.object_size();
        let scan = |o: usize| {
            // SAFETY: an allocated object of an in-use span: mapped.
            unsafe { for_each_word(o, o + size, |_, w| note(w, &mut owned, &mut work)) };
        };
        // SAFETY: a live collector span whose window is committed and whose bitmaps are
        // not changing (world stopped, caches committed, nothing swept yet).
        unsafe { gcapi::for_each_object(sr, scan) };
    });
    for (lo, len) in collector_tables() {
        // SAFETY: a static of this crate: mapped and readable.
        unsafe { for_each_word(lo, lo + len, |_, w| note(w, &mut owned, &mut work)) };
    }
    while let Some((b, size)) = work.pop() {
        // SAFETY: an allocated `malloc` block: mapped.
        unsafe { for_each_word(b, b + size, |_, w| note(w, &mut owned, &mut work)) };
    }
    // A word in the collected heap's range that names an object the sweep would free.
    let dead = |w: usize| -> Option<gcapi::ObjectRef> {
        if w <= below || w >= max {
            return None;
        }
        let o = gcapi::find_object(w)?;
        // SAFETY: `o` came from `find_object` and nothing is swept before the check ends.
        (!unsafe { gcapi::is_marked(o) }).then_some(o)
    };
    gcapi::for_each_malloc_block(|b, size| {
        if owned.contains(&b) {
            return;
        }
        // SAFETY: an allocated `malloc` block: mapped.
        unsafe {
            for_each_word(b, b + size, |at, w| {
                if let Some(o) = dead(w) {
                    report(
                        o,
                        w,
                        &format!("a malloc block at {b:#x} ({size} bytes), offset {}", at - b),
                        Some(b),
                    );
                }
            })
        };
    });
    for_each_writable_segment(|lo, hi, name| {
        // SAFETY: a loaded object's writable `PT_LOAD` segment: mapped and readable.
        unsafe {
            for_each_word(lo, hi, |at, w| {
                if let Some(o) = dead(w) {
                    report(o, w, &format!("a static at {at:#x} (in {name})"), None);
                }
            })
        };
    });
}

/// Where the malloc block at `b` was allocated, if gomalloc's heap profile sampled it.
fn allocation_site(b: usize) -> Option<String> {
    gomalloc::profile::allocation_site(b)
}

/// Ends the process: `where_` holds word `w`, which points into `o`, about to be freed;
/// `block` is the malloc block that holds it, if it is one.
#[cold]
fn report(o: gcapi::ObjectRef, w: usize, where_: &str, block: Option<usize>) -> ! {
    let site = match block.and_then(allocation_site) {
        Some(frames) => format!("The block was allocated at:\n{frames}"),
        None if block.is_some() => "Where the block was allocated: not known (run with \
             gomalloc's heap profile, GOMALLOC_PROFILE_RATE=1, to record every block's \
             allocation site)."
            .to_string(),
        None => String::new(),
    };
    let type_name = if o.span().kind() == Some(ObjectKind::Noscan) {
        "<a pointer-free object without a header: its type is not recorded>".to_string()
    } else {
        // SAFETY: an allocated object of a kind with a header starts with its vtable.
        let vt: &'static VTable = unsafe { *(o.base() as *const &'static VTable) };
        (vt.name)().to_string()
    };
    crate::collector::fatal(format_args!(
        "GOMALLOC_GCCHECKROOTS: the object of type {type_name} at {:#x} ({} bytes) is \
         unreachable and about to be freed, but {where_} holds a pointer to it ({w:#x}): a \
         Gc kept where the collector does not look (a std collection, a Box, a channel, a \
         static; see the rooting rule, docs/gc-design.md section 2). Hold a gc::Root or \
         a GcVec instead. {site}",
        o.base(),
        object_size(&o)
    ))
}

/// Calls `f(start, end, object name)` for the writable `PT_LOAD` segment of every loaded
/// object (the executable's `.data` and `.bss` among them). The list is collected first,
/// outside `dl_iterate_phdr` (which holds the loader's lock while it calls back).
fn for_each_writable_segment(mut f: impl FnMut(usize, usize, &str)) {
    let mut segs: Vec<(usize, usize, String)> = Vec::new();
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `segs` vector passed below, used by this call only; `info`
        // is valid for the call (dl_iterate_phdr's contract).
        let (segs, info) = unsafe { (&mut *(data as *mut Vec<(usize, usize, String)>), &*info) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated path owned by the loader, valid for the call.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let name = if name.is_empty() {
            "the executable".to_string()
        } else {
            name
        };
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: `dlpi_phdr` has `dlpi_phnum` entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
                segs.push((lo, lo + ph.p_memsz as usize, name.clone()));
            }
        }
        0
    }
    // SAFETY: the callback only reads the loader's records and pushes onto `segs`.
    unsafe {
        libc::dl_iterate_phdr(Some(callback), (&mut segs as *mut Vec<_>).cast());
    }
    for (lo, hi, name) in &segs {
        f(*lo, *hi, name);
    }
}
