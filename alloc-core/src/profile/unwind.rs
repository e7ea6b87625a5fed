//! Stacks inside `malloc`: a walk of the frame-pointer chain, bounded by the thread's
//! stack.
//!
//! Chosen over libgcc's `_Unwind_Backtrace`, which finds unwind tables through
//! `dl_iterate_phdr` (the loader's lock: a `malloc` called by the loader with it held, or
//! a child forked while another thread held it, would wait forever) and may allocate on
//! its first use. The walk takes no lock, calls nothing and allocates nothing; it only
//! reads the stack.
//!
//! What it needs from the program: frame pointers (`-C force-frame-pointers=yes` for Rust,
//! `-fno-omit-frame-pointer` for C). A function built without them leaves the chain: the
//! walk then stops at the first frame pointer that does not point higher up the same
//! stack, so the stack comes out short, never wrong in memory safety. Its cost is one load
//! pair per frame (README, "Heap profiles", for the measured cost per sample).
//!
//! Memory safety: every address read lies in `[sp, top)`, the part of the calling
//! thread's stack above its stack pointer, which is mapped. `top` is the thread pointer
//! for a thread glibc started (glibc puts the thread's descriptor, which `pthread_self`
//! returns, at the top of the thread's stack block, user-supplied stacks included), and
//! `__libc_stack_end` for the main thread. A stack pointer that is in neither (a signal
//! handler on an alternate stack, a coroutine's stack) gets the innermost frame alone.
//! Code that switches stacks within the bounds of another (a coroutine stack carved from
//! a thread's own stack) is the one case the bounds do not cover.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use super::bucket::MAX_STACK;

unsafe extern "C" {
    /// The top of the main thread's stack, set by the dynamic loader (glibc).
    static __libc_stack_end: *const core::ffi::c_void;
}

/// The most a thread's stack is believed to span from its stack pointer to its top: 1 GiB
/// (the main thread's stack under `ulimit -s` in the gigabytes; glibc's thread stacks are
/// 8 MiB by default).
const MAX_STACK_SPAN: usize = 1 << 30;

/// Writes the return addresses of the calling stack into `out`, innermost first (the
/// first are the allocator's own frames), and returns how many.
#[inline(never)]
pub fn capture(out: &mut [usize; MAX_STACK]) -> usize {
    let (fp, sp): (usize, usize);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads two registers; no memory, no flags.
    unsafe {
        core::arch::asm!("mov {0}, rbp", "mov {1}, rsp", out(reg) fp, out(reg) sp,
            options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads two registers; no memory, no flags.
    unsafe {
        core::arch::asm!("mov {0}, x29", "mov {1}, sp", out(reg) fp, out(reg) sp,
            options(nomem, nostack, preserves_flags));
    }
    let top = stack_top(sp);
    let mut fp = fp;
    let mut n = 0;
    while n < MAX_STACK {
        // A frame record is two words: the caller's frame pointer, then the return
        // address. Both must lie in [sp, top).
        if fp < sp || fp % 8 != 0 || fp >= top.saturating_sub(16) {
            break;
        }
        // SAFETY: `sp <= fp` and `fp + 16 <= top`: both words lie in the mapped part of
        // the calling thread's stack (see the module header for `top`).
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

/// Whether the code of this build keeps frame pointers, which the walk needs: a probe
/// function reads its own frame record, which holds a return address into its caller
/// when it has one (built with `-C force-frame-pointers=yes`); without frame pointers the
/// frame-pointer register holds whatever the code left in it, and the word read (in the
/// stack, bounded as the walk's) is no address in the caller.
#[inline(never)]
pub fn frame_pointers() -> bool {
    let ret = core::hint::black_box(probe as fn() -> usize)();
    let caller = frame_pointers as fn() -> bool as usize;
    // The call to `probe` lies in the first bytes of this short function.
    ret > caller && ret - caller < 256
}

/// The return address in the calling frame's record, or 0 if the frame pointer is not a
/// stack address above the stack pointer.
#[inline(never)]
fn probe() -> usize {
    let (fp, sp): (usize, usize);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads two registers; no memory, no flags.
    unsafe {
        core::arch::asm!("mov {0}, rbp", "mov {1}, rsp", out(reg) fp, out(reg) sp,
            options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads two registers; no memory, no flags.
    unsafe {
        core::arch::asm!("mov {0}, x29", "mov {1}, sp", out(reg) fp, out(reg) sp,
            options(nomem, nostack, preserves_flags));
    }
    if fp < sp || fp % 8 != 0 || fp >= stack_top(sp).saturating_sub(16) {
        return 0;
    }
    // SAFETY: `sp <= fp` and `fp + 16 <= top`: the word lies in the mapped part of the
    // calling thread's stack (the module header).
    unsafe { *((fp + 8) as *const usize) }
}

/// The top of the calling thread's stack, or `sp` (no walk) if it is not known.
fn stack_top(sp: usize) -> usize {
    // SAFETY: `pthread_self` reads the thread pointer; no lock, no allocation.
    let tp = unsafe { libc::pthread_self() } as usize;
    if tp > sp && tp - sp < MAX_STACK_SPAN {
        return tp;
    }
    // SAFETY: a word the loader set before any code of the program ran.
    let end = unsafe { __libc_stack_end } as usize;
    if end > sp && end - sp < MAX_STACK_SPAN {
        return end;
    }
    sp
}
