//! Raw Linux system calls, and the one thread the allocator starts.
//!
//! The background thread ([`crate::scavenge`]) is started with `clone(2)` directly, as Go's
//! runtime starts its threads (`newosproc`), not with `pthread_create`:
//!
//! * **glibc does not count it.** glibc ends a process when its thread count reaches zero
//!   (the last `pthread_exit`, or the last thread returning, calls `exit(0)`); a thread made
//!   by `pthread_create` would keep a program whose last thread ends that way alive for
//!   ever, a zombie leader with one thread that blocks every signal. A thread glibc does
//!   not know about is ended with the rest of the process by `exit_group`.
//! * **It can be started anywhere.** `clone` takes no lock and allocates nothing, so a free
//!   may start the thread, even one that glibc makes under its stack-cache lock, or one in
//!   a signal handler, which `pthread_create` (it allocates the thread's TLS and takes
//!   `dl_stack_cache_lock`) could not.
//!
//! The price is that the thread has no glibc thread descriptor: no `errno`, no stack
//! protector canary, no TLS, and glibc's functions may not be called on it. So everything it
//! runs uses the system calls of this module, made with `asm!` (they return `-errno` and
//! never touch `errno`, which `free` must preserve anyway), and touches no thread-local
//! variable. Its thread pointer points into the guard region below its stack, so a TLS access
//! faults at once rather than reading another thread's variables. Other differences a
//! program can observe, each harmless for a thread that only sleeps, reads clocks and calls
//! `madvise`: `setuid` and friends, which glibc applies to every thread it knows with a
//! signal, leave this thread's credentials as they were when it started; debuggers that use
//! `libthread_db` list it as a bare LWP.
//!
//! Supported targets: Linux on x86-64 and AArch64 (the `asm!` below); Miri builds none of
//! it (the scavenger does not run there).
//!
//! Layer: the OS (the crate root's module map, `lib.rs`).

#![cfg_attr(loom, allow(dead_code))]

// Words the kernel reads and writes (futexes, `CLONE_CHILD_CLEARTID`): core's atomics
// under loom too, which does not model the kernel.
use core::sync::atomic::AtomicU32;

#[cfg(not(miri))]
mod raw {
    //! `syscall` / `svc 0` with up to six arguments: the kernel's return value, `-errno` on
    //! failure.

    /// # Safety
    /// The arguments are valid for system call `n`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub unsafe fn syscall(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the arguments are valid for system call `n` (# Safety); `syscall` clobbers
        // rcx and r11 only.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack, preserves_flags)
            );
        }
        ret
    }

    /// # Safety
    /// The arguments are valid for system call `n`.
    #[cfg(target_arch = "aarch64")]
    #[inline]
    pub unsafe fn syscall(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the arguments are valid for system call `n` (# Safety); `svc 0` preserves
        // every register but x0.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n as usize,
                inlateout("x0") a[0] => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
                options(nostack)
            );
        }
        ret
    }

    /// `clone` for a thread running `entry` on the stack that ends at `stack_top`. Returns
    /// the new thread's id, or `-errno`. The argument order is the architecture's
    /// (x86-64: flags, stack, parent tid, child tid, tls; AArch64: flags, stack, parent
    /// tid, tls, child tid).
    ///
    /// # Safety
    /// `flags` include `CLONE_VM`, `CLONE_THREAD` and `CLONE_SETTLS`; `stack_top` is the
    /// 16-byte aligned end of a writable stack that nothing else uses while the thread
    /// lives; `tid` is valid for the thread's whole life; `entry` never returns.
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(any(gomalloc_pthread_scavenger, fuzzing), allow(dead_code))]
    pub unsafe fn clone_thread(
        flags: usize,
        stack_top: usize,
        tid: *mut u32,
        tls: usize,
        entry: extern "C" fn() -> !,
    ) -> isize {
        let ret: isize;
        // SAFETY: the flags make a thread of this process, on an aligned stack of its own,
        // with a `tid` that outlives it (# Safety). In the child every register but rax
        // holds the parent's value and rsp is `stack_top`: it calls `entry` (r12, preserved
        // by `syscall`) on the new stack, aligned as the ABI requires, and never comes
        // back. The parent jumps over that.
        unsafe {
            core::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "call r12",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone as isize => ret,
                in("rdi") flags, in("rsi") stack_top, in("rdx") tid, in("r10") tid,
                in("r8") tls, in("r12") entry,
                lateout("rcx") _, lateout("r11") _,
            );
        }
        ret
    }

    /// # Safety
    /// As for the x86-64 version.
    #[cfg(target_arch = "aarch64")]
    #[cfg_attr(any(gomalloc_pthread_scavenger, fuzzing), allow(dead_code))]
    pub unsafe fn clone_thread(
        flags: usize,
        stack_top: usize,
        tid: *mut u32,
        tls: usize,
        entry: extern "C" fn() -> !,
    ) -> isize {
        let ret: isize;
        // SAFETY: the flags make a thread of this process, on an aligned stack of its own,
        // with a `tid` that outlives it (# Safety). In the child every register but x0
        // holds the parent's value and sp is `stack_top`: it calls `entry` (x9) with a zero
        // frame pointer and link register and never comes back. The parent branches over
        // that.
        unsafe {
            core::arch::asm!(
                "svc 0",
                "cbnz x0, 2f",
                "mov x29, xzr",
                "mov x30, xzr",
                "blr x9",
                "brk #1",
                "2:",
                in("x8") libc::SYS_clone as usize,
                inlateout("x0") flags => ret,
                in("x1") stack_top, in("x2") tid, in("x3") tls, in("x4") tid,
                in("x9") entry,
                lateout("x30") _,
            );
        }
        ret
    }
}

#[cfg(not(any(
    miri,
    all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )
)))]
compile_error!("gomalloc supports Linux on x86-64 and AArch64");

#[cfg(not(miri))]
use raw::syscall;

/// `madvise(addr, len, advice)`; `-errno` on failure.
///
/// # Safety
/// As for `madvise`: with `MADV_DONTNEED` or `MADV_FREE`, the range holds nothing anyone
/// will read again (it reads zero, or stale bytes, afterwards).
#[cfg(not(miri))]
pub unsafe fn madvise(addr: *mut u8, len: usize, advice: libc::c_int) -> isize {
    // SAFETY: with `MADV_DONTNEED` or `MADV_FREE`, nobody reads the range again
    // (# Safety); the kernel only reads the three arguments.
    unsafe {
        syscall(
            libc::SYS_madvise,
            [addr as usize, len, advice as usize, 0, 0, 0],
        )
    }
}

/// `sched_yield()`.
#[cfg(not(miri))]
pub fn sched_yield() {
    // SAFETY: no arguments, no preconditions.
    unsafe { syscall(libc::SYS_sched_yield, [0; 6]) };
}

/// `write(fd, bytes)`: bytes written, or `-errno`.
#[cfg(not(miri))]
pub fn write(fd: i32, bytes: &[u8]) -> isize {
    // SAFETY: `bytes` is readable for its length.
    unsafe {
        syscall(
            libc::SYS_write,
            [fd as usize, bytes.as_ptr() as usize, bytes.len(), 0, 0, 0],
        )
    }
}

/// The clock `clock` (`CLOCK_MONOTONIC`, `CLOCK_THREAD_CPUTIME_ID`, ...) in nanoseconds,
/// read with the system call, not the vDSO (whose set-up glibc owns).
#[cfg(not(miri))]
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe {
        syscall(
            libc::SYS_clock_gettime,
            [clock as usize, (&raw mut ts) as usize, 0, 0, 0, 0],
        )
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// [`write`] under Miri, which emulates libc's, not system calls.
#[cfg(miri)]
pub fn write(fd: i32, bytes: &[u8]) -> isize {
    // SAFETY: `bytes` is readable for its length.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
}

/// [`clock_ns`] under Miri, through libc's `clock_gettime`, which Miri emulates.
#[cfg(miri)]
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps for `ns` nanoseconds (less if interrupted).
#[cfg(not(miri))]
pub fn sleep_ns(ns: u64) {
    let ts = timespec(ns);
    // SAFETY: `ts` is valid; the remaining time is not asked for.
    unsafe {
        syscall(
            libc::SYS_nanosleep,
            [(&raw const ts) as usize, 0, 0, 0, 0, 0],
        )
    };
}

#[cfg(not(miri))]
fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Waits, for at most `ns` nanoseconds, while `word` holds `val` (`FUTEX_WAIT`, shared:
/// the kernel's wake at a thread's exit, `CLONE_CHILD_CLEARTID`, is a shared one).
#[cfg(not(miri))]
pub fn futex_wait(word: &AtomicU32, val: u32, ns: u64) {
    let ts = timespec(ns);
    // SAFETY: `word` is a valid aligned u32; `ts` is valid.
    unsafe {
        syscall(
            libc::SYS_futex,
            [
                word.as_ptr() as usize,
                libc::FUTEX_WAIT as usize,
                val as usize,
                (&raw const ts) as usize,
                0,
                0,
            ],
        )
    };
}

/// Starts a thread that runs `entry` on the stack `[stack_lo, stack_top)`, with every
/// signal blocked (the process's signals go to the program's threads), its thread pointer
/// at `tls`, and its id in `tid` until it exits, when the kernel writes 0 there and wakes
/// [`futex_wait`]ers. Returns false if the system refused.
///
/// # Safety
/// The stack is writable and used by nothing else until `tid` reads 0 after the thread
/// ends; `tid` reads 0 now; `entry` never returns (it ends with [`exit_thread`]), makes no
/// libc call and touches no thread-local variable.
#[cfg(not(miri))]
#[cfg_attr(any(gomalloc_pthread_scavenger, fuzzing), allow(dead_code))]
pub unsafe fn spawn(
    entry: extern "C" fn() -> !,
    stack_top: usize,
    tls: usize,
    tid: &AtomicU32,
) -> bool {
    // SAFETY: the masks are valid 8-byte kernel sigsets; the clone arguments meet
    // `clone_thread`'s contract by ours.
    unsafe {
        const SIGSET: usize = 8;
        let all: u64 = !0;
        let mut old: u64 = 0;
        syscall(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                (&raw const all) as usize,
                (&raw mut old) as usize,
                SIGSET,
                0,
                0,
            ],
        );
        let flags = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID;
        let r = raw::clone_thread(flags as usize, stack_top, tid.as_ptr(), tls, entry);
        syscall(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                (&raw const old) as usize,
                0,
                SIGSET,
                0,
                0,
            ],
        );
        r > 0
    }
}

/// [`spawn`] for instrumented builds: ThreadSanitizer (`--cfg gomalloc_pthread_scavenger`,
/// set by `scripts/sanitizers.sh`) and cargo-fuzz (`--cfg fuzzing`, which it sets) keep
/// per-thread state in TLS (TSan's thread state; SanitizerCoverage's lowest-stack word,
/// written by every instrumented function), and TSan must see every thread start, so
/// there the thread is a detached `pthread_create` thread, which glibc
/// counts (a process whose last thread calls `pthread_exit` then lives until it goes
/// idle). `tid` is set to 1 here and cleared by `entry` when it is done with the stack-less
/// state (the stack arguments are unused).
///
/// # Safety
/// `tid` reads 0 now; `entry` clears it as its last access to shared state. Called with no
/// lock that `pthread_create`'s own allocations could need (Rust test binaries: glibc's
/// allocations do not enter gomalloc).
#[cfg(all(any(gomalloc_pthread_scavenger, fuzzing), not(miri)))]
pub unsafe fn spawn_pthread(
    entry: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    tid: &AtomicU32,
) -> bool {
    tid.store(1, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: plain pthread calls on local, initialised values; every signal is blocked
    // around the call so the thread starts with all of them blocked.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut t: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut t, &attr, entry, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        if rc != 0 {
            tid.store(0, core::sync::atomic::Ordering::Relaxed);
        }
        rc == 0
    }
}

/// Ends the calling thread (not the process).
#[cfg(not(miri))]
#[cfg_attr(any(gomalloc_pthread_scavenger, fuzzing), allow(dead_code))]
pub fn exit_thread() -> ! {
    loop {
        // SAFETY: `exit` ends only the calling thread; nothing runs after it.
        unsafe { syscall(libc::SYS_exit, [0; 6]) };
    }
}

/// `abort()` for a thread without a glibc descriptor: raises `SIGABRT` on the calling
/// thread with the signal unblocked, so the process ends as `abort()` would end it (a
/// handler the program installed runs first, on this thread); if the signal is caught and
/// the handler returns, exits with status 134.
#[cfg(not(miri))]
pub fn abort_thread() -> ! {
    let abrt: u64 = 1 << (libc::SIGABRT - 1);
    // SAFETY: plain system calls on valid arguments.
    unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_UNBLOCK as usize,
                (&raw const abrt) as usize,
                0,
                8,
                0,
                0,
            ],
        );
        let pid = syscall(libc::SYS_getpid, [0; 6]);
        let tid = syscall(libc::SYS_gettid, [0; 6]);
        syscall(
            libc::SYS_tgkill,
            [pid as usize, tid as usize, libc::SIGABRT as usize, 0, 0, 0],
        );
        loop {
            syscall(libc::SYS_exit_group, [134, 0, 0, 0, 0, 0]);
        }
    }
}
