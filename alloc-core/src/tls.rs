//! The thread's slot: its cache pointer and life-cycle state, in thread-local storage.
//!
//! Every `malloc` and every `free` reads the calling thread's cache pointer (see
//! [`crate::mcache`] for the life cycle), so the cost of one TLS read is paid twice per
//! allocation. How much that is depends on the TLS *access model* the code is compiled with:
//!
//! * **global-dynamic**, what stable Rust emits for every `thread_local!` in a `cdylib`: a
//!   call to `__tls_get_addr` through the PLT (about 11 instructions, and a function in
//!   `ld.so` that may itself call `malloc`: glibc 2.39 and later do so in more TLS cases,
//!   which recurses in a malloc replacement);
//! * **initial-exec**, what mimalloc asks for with `__attribute__((tls_model("initial-exec")))`:
//!   the variable lives in the static TLS block allocated with the thread, at an offset from
//!   the thread pointer that the dynamic linker writes into the GOT at load time. A read is
//!   two instructions and never enters `ld.so`:
//!
//!   ```text
//!   movq  __gomalloc_thread@GOTTPOFF(%rip), %rax   # offset of the slot from %fs:0
//!   movq  %fs:(%rax), %rax                         # the slot itself
//!   ```
//!
//! Stable Rust has no way to choose the model per variable (`#[thread_local]` and
//! `-Ztls-model` are nightly), so with the `initial-exec-tls` feature on x86-64 Linux this
//! module defines the slot itself: a 16-byte object in a `.tdata` section written with
//! `global_asm!` (the cache pointer, initialised to
//! [`mcache::EMPTY_CACHE_PTR`](crate::mcache::EMPTY_CACHE_PTR) through an ordinary
//! relocation of the TLS template, exactly what rustc emits for a const `thread_local!`, and
//! the state byte, initialised to 0 = new), read and written by `asm!` with the sequence
//! above. The symbol is `.hidden`: a program that links gomalloc as its global allocator
//! *and* runs with `libgomalloc.so` preloaded has two slots that never bind to each other.
//! Everywhere else (other targets, Miri, loom, the feature off) the slot is a const
//! `thread_local!` without `Drop`, as before: a plain TLS word in global-dynamic form.
//!
//! # The traps, and why they do not apply
//!
//! * *dlopen*: a shared object that uses initial-exec TLS is marked `DF_STATIC_TLS`; when it
//!   is `dlopen`ed instead of preloaded, `ld.so` must find room for its whole TLS segment in
//!   the surplus it reserved in every thread's static TLS block, and fails with "cannot
//!   allocate memory in static TLS block" when it cannot (seen with 16 KiB). Our segment is
//!   this 16-byte slot plus std's few words (under 128 bytes in all: `readelf -lW
//!   libgomalloc.so | grep TLS`), well inside glibc's surplus (at least 512 bytes of
//!   `rtld.optional_static_tls`), so a `dlopen`ed `libgomalloc.so` still loads. A library
//!   that must be `dlopen`ed late next to many other initial-exec users should be built
//!   without the feature.
//! * *Recursion through ld.so*: initial-exec accesses never call `__tls_get_addr`, so
//!   `ld.so` growing a thread's DTV with `malloc` (glibc 2.39+) cannot re-enter itself
//!   through our TLS access; this is the reason `shim-c/build-initial-exec.sh` existed.
//! * *Destructors*: the slot has none (no `__cxa_thread_atexit_impl`, which callocs); the
//!   thread-exit flush is a pthread key destructor (`runtime.rs`).
//! * *Before constructors*: the slot's initial value comes from the TLS template, which
//!   `ld.so` copies when it creates the thread (the main thread's after relocation), so the
//!   first `malloc` of any thread reads
//!   [`mcache::EMPTY_CACHE_PTR`](crate::mcache::EMPTY_CACHE_PTR) and state 0.
//!
//! Layer: thread caches (the crate root's module map, `lib.rs`).

use crate::mcache::MCache;
#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(miri),
    not(loom)
)))]
use crate::mcache::EMPTY_CACHE_PTR;

#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(miri),
    not(loom)
))]
mod imp {
    use super::MCache;
    use core::arch::{asm, global_asm};

    // The slot: offset 0 the cache pointer (8 bytes), offset 8 the state byte, 7 bytes of
    // padding. `.tdata` ("T": thread-local template) because the pointer's initial value is
    // not zero; the relocation of `.quad` is applied to the template before any thread's
    // block is copied from it.
    global_asm!(
        ".pushsection .tdata.__gomalloc_thread,\"awT\",@progbits",
        ".p2align 4",
        ".globl __gomalloc_thread",
        ".hidden __gomalloc_thread",
        ".type __gomalloc_thread,@object",
        ".size __gomalloc_thread,16",
        "__gomalloc_thread:",
        ".quad {empty}",
        ".quad 0",
        ".popsection",
        empty = sym crate::mcache::EMPTY_CACHE,
        options(att_syntax)
    );

    /// The calling thread's cache pointer.
    #[inline(always)]
    pub fn cache() -> *mut MCache {
        let p: *mut MCache;
        // SAFETY: the initial-exec sequence: the GOT entry holds the slot's offset from the
        // thread pointer (written by ld.so at load time, `R_X86_64_TPOFF64`), and `%fs:`
        // addresses the calling thread's static TLS block, where ld.so placed a copy of the
        // 16-byte template above; reading its first 8 bytes is in bounds and aligned.
        // No stack, no flags; memory is only read (a plain load, so `pure` is right: two
        // reads with no write in between see the same value on the same thread).
        unsafe {
            asm!(
                "movq __gomalloc_thread@GOTTPOFF(%rip), {p}",
                "movq %fs:({p}), {p}",
                p = out(reg) p,
                options(att_syntax, nostack, preserves_flags, pure, readonly)
            );
        }
        p
    }

    /// Sets the calling thread's cache pointer.
    #[inline(always)]
    pub fn set_cache(c: *mut MCache) {
        // SAFETY: the GOT entry holds the slot's offset from `%fs`, the calling thread's
        // static TLS block (see `cache`); the 8 bytes at offset 0 of this thread's own copy
        // of the slot belong to this module and nothing else references them.
        unsafe {
            asm!(
                "movq __gomalloc_thread@GOTTPOFF(%rip), {off}",
                "movq {c}, %fs:({off})",
                off = out(reg) _,
                c = in(reg) c,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }

    /// The calling thread's state byte.
    #[inline(always)]
    pub fn state() -> u8 {
        let s: u8;
        // SAFETY: the GOT entry holds the slot's offset from `%fs`, the calling thread's
        // static TLS block (see `cache`); the byte at offset 8 of the 16-byte slot is in
        // bounds; a plain load.
        unsafe {
            asm!(
                "movq __gomalloc_thread@GOTTPOFF(%rip), {off}",
                "movb %fs:8({off}), {s}",
                off = out(reg) _,
                s = lateout(reg_byte) s,
                options(att_syntax, nostack, preserves_flags, pure, readonly)
            );
        }
        s
    }

    /// Sets the calling thread's state byte.
    #[inline(always)]
    pub fn set_state(s: u8) {
        // SAFETY: the GOT entry holds the slot's offset from `%fs`, the calling thread's
        // static TLS block (see `cache`); the byte at offset 8 of this thread's own copy of
        // the slot belongs to this module and nothing else references it.
        unsafe {
            asm!(
                "movq __gomalloc_thread@GOTTPOFF(%rip), {off}",
                "movb {s}, %fs:8({off})",
                off = out(reg) _,
                s = in(reg_byte) s,
                options(att_syntax, nostack, preserves_flags)
            );
        }
    }
}

#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux",
    not(miri),
    not(loom)
)))]
mod imp {
    use super::{MCache, EMPTY_CACHE_PTR};
    use core::cell::Cell;

    struct ThreadLocal {
        cache: Cell<*mut MCache>,
        state: Cell<u8>,
    }

    // Const-initialised and without `Drop`: a plain TLS slot, usable before any constructor
    // ran, with no destructor registration (which would calloc inside calloc).
    thread_local! {
        static TL: ThreadLocal = const {
            ThreadLocal { cache: Cell::new(EMPTY_CACHE_PTR), state: Cell::new(0) }
        };
    }

    /// The calling thread's cache pointer.
    #[inline(always)]
    pub fn cache() -> *mut MCache {
        TL.with(|t| t.cache.get())
    }

    /// Sets the calling thread's cache pointer.
    #[inline(always)]
    pub fn set_cache(c: *mut MCache) {
        TL.with(|t| t.cache.set(c))
    }

    /// The calling thread's state byte.
    #[inline(always)]
    pub fn state() -> u8 {
        TL.with(|t| t.state.get())
    }

    /// Sets the calling thread's state byte.
    #[inline(always)]
    pub fn set_state(s: u8) {
        TL.with(|t| t.state.set(s))
    }
}

pub use imp::{cache, set_cache, set_state, state};
