//! Stacks inside `malloc`: this object's own frames by their call-frame information, then
//! the program's by the frame-pointer chain, bounded by the thread's stack.
//!
//! 1. **This object's frames** (x86-64): the allocator's own code (`libgomalloc.so`, or
//!    the whole executable when `GoMalloc` is linked in) is built without frame pointers
//!    by default, so the registers are unwound through it by the call-frame information
//!    the compiler emits for every function (`.eh_frame`, found through
//!    `.eh_frame_hdr`'s sorted table), read with gimli's call-frame interpreter, which
//!    keeps its rows on the stack. The object's own tables are found from its ELF
//!    program headers (`__ehdr_start`, set by the linker): no `dl_iterate_phdr`, so no
//!    loader lock. The walk leaves this object at the first return address outside it,
//!    with the frame pointer the caller had.
//! 2. **The program's frames**: a walk of the frame-pointer chain from there.
//!
//! Chosen over libgcc's `_Unwind_Backtrace`, which finds unwind tables through
//! `dl_iterate_phdr` (the loader's lock: a `malloc` called by the loader with it held, or
//! a child forked while another thread held it, would wait forever) and may allocate on
//! its first use. The walk takes no lock and allocates nothing; it only reads the stack
//! and this object's read-only tables.
//!
//! What it needs from the program: frame pointers in the code outside this object
//! (`-fno-omit-frame-pointer` for C and C++; for Rust code, which is inside this object
//! when `GoMalloc` is linked in, nothing). A function built without them leaves the chain:
//! the walk then stops at the first frame pointer that does not point higher up the same
//! stack, so the stack comes out short, never wrong in memory safety. On other
//! architectures the chain is followed from the start, so this object needs frame
//! pointers too ([`frame_pointers`]).
//!
//! Memory safety: every stack address read lies in `[sp, top)`, the part of the calling
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
    let (pc, sp, mut fp) = registers();
    let top = stack_top(sp);
    let mut n = 0;
    // The tables are found anew at each walk (a few program headers): no state that a
    // fork or a signal could leave half-written.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if let Some(t) = cfi::Tables::own() {
        match t.walk(pc, sp, fp, top, out) {
            Some((k, caller_fp)) => {
                n = k;
                fp = caller_fp;
            }
            // A frame of this object the tables do not describe: no stack (the frames
            // found so far are the allocator's, which name no caller).
            None => return 0,
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = pc;
    while n < MAX_STACK {
        let Some((next, ret)) = frame_record(fp, sp, top) else {
            break;
        };
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

/// The calling function's instruction address, stack pointer and frame pointer (inlined
/// into it).
#[inline(always)]
fn registers() -> (usize, usize, usize) {
    let (pc, sp, fp): (usize, usize, usize);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads three registers; no memory, no flags.
    unsafe {
        core::arch::asm!("lea {0}, [rip]", "mov {1}, rsp", "mov {2}, rbp", out(reg) pc,
            out(reg) sp, out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads three registers; no memory, no flags.
    unsafe {
        core::arch::asm!("adr {0}, .", "mov {1}, sp", "mov {2}, x29", out(reg) pc,
            out(reg) sp, out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    (pc, sp, fp)
}

/// The frame record at `fp`: the caller's frame pointer, then the return address; None
/// unless both words lie in `[sp, top)`.
fn frame_record(fp: usize, sp: usize, top: usize) -> Option<(usize, usize)> {
    if fp < sp || fp % 8 != 0 || fp >= top.saturating_sub(16) {
        return None;
    }
    // SAFETY: `sp <= fp` and `fp + 16 <= top`: both words lie in the mapped part of the
    // calling thread's stack (see the module header for `top`).
    Some(unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) })
}

/// Whether stacks can be walked in this build: this object's frames by its call-frame
/// information (x86-64), or every frame by frame pointers ([`frame_pointers`]).
pub fn stacks_walkable() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if cfi::Tables::own().is_some() {
        return true;
    }
    frame_pointers()
}

/// This object's call-frame information (x86-64).
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod cfi {
    use super::MAX_STACK;
    use core::sync::atomic::{AtomicU64, Ordering};
    use gimli::{
        BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, NativeEndian, ParsedEhFrameHdr,
        Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection, X86_64,
    };

    unsafe extern "C" {
        /// This object's ELF header, defined by the linker (GNU ld, lld) in every object
        /// whose first loaded segment holds its headers.
        static __ehdr_start: libc::Elf64_Ehdr;
    }

    type Slice = EndianSlice<'static, NativeEndian>;

    /// Rows of the call-frame interpreter, kept on the stack: 16 register rules (x86-64
    /// code saves at most the 6 callee-saved registers and the return address) and a
    /// `DW_CFA_remember_state` depth of 2.
    struct OnStack;
    impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for OnStack {
        type Rules = [(Register, RegisterRule<T>); 16];
        type Stack = [gimli::UnwindTableRow<T, Self>; 2];
    }

    /// This object's executable range and unwind tables.
    pub(super) struct Tables {
        text: (usize, usize),
        bases: BaseAddresses,
        hdr: ParsedEhFrameHdr<Slice>,
        eh_frame: EhFrame<Slice>,
    }

    impl Tables {
        /// Reads this object's program headers: its executable segment, its
        /// `PT_GNU_EH_FRAME` (`.eh_frame_hdr`) and the segment that holds it, in which
        /// `.eh_frame` lies too. None if it has no such table.
        pub(super) fn own() -> Option<Tables> {
            let eh = &raw const __ehdr_start;
            // SAFETY: the linker placed the ELF header at `__ehdr_start`, in this
            // object's first loaded segment; its program headers follow it at `e_phoff`,
            // in the same segment (as the loader requires to read them).
            let phdrs = unsafe {
                let h = &*eh;
                if h.e_ident[..4] != *b"\x7fELF"
                    || h.e_phentsize as usize != size_of::<libc::Elf64_Phdr>()
                {
                    return None;
                }
                let p = (eh as usize + h.e_phoff as usize) as *const libc::Elf64_Phdr;
                core::slice::from_raw_parts(p, h.e_phnum as usize)
            };
            // The load bias: the header is at the start of the segment at file offset 0.
            let first = phdrs
                .iter()
                .find(|p| p.p_type == libc::PT_LOAD && p.p_offset == 0)?;
            let bias = (eh as usize).wrapping_sub(first.p_vaddr as usize);
            let text = phdrs
                .iter()
                .find(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)?;
            let text = (
                bias + text.p_vaddr as usize,
                bias + (text.p_vaddr + text.p_memsz) as usize,
            );
            let h = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME)?;
            let hdr_at = bias + h.p_vaddr as usize;
            let seg = phdrs.iter().find(|p| {
                p.p_type == libc::PT_LOAD
                    && p.p_vaddr <= h.p_vaddr
                    && h.p_vaddr + h.p_memsz <= p.p_vaddr + p.p_memsz
            })?;
            let seg_end = bias + (seg.p_vaddr + seg.p_memsz) as usize;
            // SAFETY: `.eh_frame_hdr` is mapped, read-only, for the object's life.
            let hdr_bytes =
                unsafe { core::slice::from_raw_parts(hdr_at as *const u8, h.p_memsz as usize) };
            let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_at as u64);
            let hdr = EhFrameHdr::new(hdr_bytes, NativeEndian)
                .parse(&bases, 8)
                .ok()?;
            let gimli::Pointer::Direct(eh_at) = hdr.eh_frame_ptr() else {
                return None;
            };
            let eh_at = eh_at as usize;
            if !(hdr_at.min(eh_at) >= bias && eh_at < seg_end) {
                return None;
            }
            // SAFETY: `.eh_frame` lies in the same read-only segment as the header table,
            // mapped to `seg_end` for the object's life.
            let eh_bytes =
                unsafe { core::slice::from_raw_parts(eh_at as *const u8, seg_end - eh_at) };
            let bases = bases.set_eh_frame(eh_at as u64).set_text(text.0 as u64);
            Some(Tables {
                text,
                bases,
                hdr,
                eh_frame: EhFrame::new(eh_bytes, NativeEndian),
            })
        }

        /// The rule of the frame whose code is at `pc` (this object's), from the cache or
        /// from the tables.
        fn rule(&self, pc: usize) -> Option<Rule> {
            let key = (pc - self.text.0) as u64;
            if let Some(r) = Rule::cached(key) {
                return Some(r);
            }
            let table = self.hdr.table()?;
            let mut ctx = UnwindContext::<usize, OnStack>::new_in();
            let row = table
                .unwind_info_for_address(
                    &self.eh_frame,
                    &self.bases,
                    &mut ctx,
                    pc as u64,
                    EhFrame::cie_from_offset,
                )
                .ok()?;
            let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
                return None;
            };
            // The psABI's return address, just below the CFA; the frame pointer's rule.
            if row.register(X86_64::RA) != RegisterRule::Offset(-8) {
                return None;
            }
            let r = Rule {
                from_fp: match register {
                    X86_64::RSP => false,
                    X86_64::RBP => true,
                    _ => return None,
                },
                cfa: offset,
                fp_at: match row.register(X86_64::RBP) {
                    RegisterRule::Undefined | RegisterRule::SameValue => None,
                    RegisterRule::Offset(o) => Some(o),
                    _ => return None,
                },
            };
            r.cache(key);
            Some(r)
        }

        /// Unwinds from `pc` (in this object), with stack pointer `sp` and frame pointer
        /// `fp`, through this object's frames, writing their return addresses to `out`.
        /// Returns how many, and the frame pointer of the first frame outside this object;
        /// None if a frame of this object has no usable rule.
        pub(super) fn walk(
            &self,
            mut pc: usize,
            mut sp: usize,
            mut fp: usize,
            top: usize,
            out: &mut [usize; MAX_STACK],
        ) -> Option<(usize, usize)> {
            // A word of the stack between `sp` and `top`.
            let word = |at: usize, sp: usize| -> Option<usize> {
                if at < sp || at % 8 != 0 || at > top.checked_sub(8)? {
                    return None;
                }
                // SAFETY: `sp <= at <= top - 8`: the word lies in the mapped part of the
                // calling thread's stack (the module header).
                Some(unsafe { *(at as *const usize) })
            };
            // The first `pc` is an instruction's address; the others are return addresses,
            // looked up one byte back, in the call instruction (a call that ends its
            // function returns to the next one's first byte).
            let mut back = 0;
            let mut n = 0;
            while (self.text.0..self.text.1).contains(&pc) && n < MAX_STACK {
                let r = self.rule(pc - back)?;
                let cfa = if r.from_fp { fp } else { sp }.checked_add_signed(r.cfa as isize)?;
                if cfa <= sp || cfa > top {
                    return None;
                }
                let ra = word(cfa - 8, sp)?;
                if let Some(o) = r.fp_at {
                    fp = word(cfa.checked_add_signed(o as isize)?, sp)?;
                }
                if ra == 0 {
                    return Some((n, 0));
                }
                out[n] = ra;
                n += 1;
                pc = ra;
                sp = cfa;
                back = 1;
            }
            Some((n, fp))
        }
    }

    /// How to unwind one frame of this object at a given instruction: the CFA is `rsp` (or
    /// `rbp`) plus `cfa`, the return address is just below it, and the caller's frame
    /// pointer is saved at the CFA plus `fp_at` (or is still in `rbp`).
    #[derive(Clone, Copy)]
    struct Rule {
        from_fp: bool,
        cfa: i64,
        fp_at: Option<i64>,
    }

    /// Rules already worked out, by instruction (the tables' binary search and call-frame
    /// programs cost thousands of instructions a frame; a profile's stacks pass through the
    /// same few allocator frames): a 4-way set-associative cache of 64 sets, so that the
    /// half-dozen instructions of one walk do not evict one another, as two that collide
    /// in a direct-mapped table would at every sample. Each entry is one word (the
    /// instruction's offset in the text, 32 bits, and the rule, packed), so that racing
    /// writers and readers never see half an entry. No lock: a fork or a signal leaves
    /// nothing held.
    static CACHE: [[AtomicU64; WAYS]; 64] = [const { [const { AtomicU64::new(0) }; WAYS] }; 64];
    const WAYS: usize = 4;

    impl Rule {
        /// `key | 1 << 32 (valid) | from_fp << 33 | (cfa / 8) as 15 bits << 34 |
        /// fp saved << 49 | (fp_at / 8) as 14 bits << 50`; None for what does not fit.
        fn pack(&self, key: u64) -> Option<u64> {
            let small = |v: i64, bits: u32| -> Option<u64> {
                let w = v / 8;
                let lim = 1i64 << (bits - 1);
                (v % 8 == 0 && (-lim..lim).contains(&w)).then_some((w as u64) & ((1 << bits) - 1))
            };
            if key >= 1 << 32 {
                return None;
            }
            let fp = match self.fp_at {
                None => 0,
                Some(o) => 1 | small(o, 14)? << 1,
            };
            Some(
                key | 1 << 32 | (self.from_fp as u64) << 33 | small(self.cfa, 15)? << 34 | fp << 49,
            )
        }

        fn unpack(w: u64) -> Rule {
            let signed =
                |v: u64, bits: u32| -> i64 { ((v << (64 - bits)) as i64 >> (64 - bits)) * 8 };
            Rule {
                from_fp: w >> 33 & 1 != 0,
                cfa: signed(w >> 34 & 0x7fff, 15),
                fp_at: (w >> 49 & 1 != 0).then(|| signed(w >> 50, 14)),
            }
        }

        /// The set of `key` (Fibonacci hashing: the top bits of the product), and the way
        /// a new entry replaces when the set is full (the next two bits).
        fn set(key: u64) -> (&'static [AtomicU64; WAYS], usize) {
            let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (&CACHE[(h >> 58) as usize], (h >> 56) as usize & (WAYS - 1))
        }

        fn cached(key: u64) -> Option<Rule> {
            let tag = key | 1 << 32;
            Rule::set(key)
                .0
                .iter()
                .map(|e| e.load(Ordering::Relaxed))
                .find(|w| w & ((1 << 33) - 1) == tag)
                .map(Rule::unpack)
        }

        fn cache(&self, key: u64) {
            if let Some(w) = self.pack(key) {
                let (set, victim) = Rule::set(key);
                let way = set
                    .iter()
                    .position(|e| e.load(Ordering::Relaxed) & 1 << 32 == 0)
                    .unwrap_or(victim);
                set[way].store(w, Ordering::Relaxed);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rules_pack_and_unpack() {
            for (from_fp, cfa, fp_at) in [
                (false, 8, None),
                (false, 64, Some(-16)),
                (true, 16, Some(-16)),
                (false, 8 * 16383, Some(-8 * 8192)),
                (false, -8, Some(8 * 8191)),
            ] {
                let r = Rule {
                    from_fp,
                    cfa,
                    fp_at,
                };
                let key = 0xdead_beef;
                let w = r.pack(key).expect("fits");
                let u = Rule::unpack(w);
                assert_eq!((u.from_fp, u.cfa, u.fp_at), (from_fp, cfa, fp_at));
                assert_eq!(w & ((1 << 33) - 1), key | 1 << 32);
            }
            // What does not fit is not cached.
            let r = Rule {
                from_fp: false,
                cfa: 8 * 16384,
                fp_at: None,
            };
            assert!(r.pack(0).is_none());
            assert!(Rule { cfa: 12, ..r }.pack(0).is_none());
            assert!(r.pack(1 << 32).is_none());
        }

        #[test]
        fn this_objects_frames_unwind() {
            let mut out = [0; MAX_STACK];
            let n = super::super::capture(&mut out);
            // The test harness's frames are in this object: the walk passes through them.
            assert!(n >= 3, "{:x?}", &out[..n]);
            // Twice: the second walk from the cache gives the same frames.
            let mut again = [0; MAX_STACK];
            let m = super::super::capture(&mut again);
            assert_eq!(out[1..n], again[1..m]);
        }
    }
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
    let (_, sp, fp) = registers();
    frame_record(fp, sp, stack_top(sp)).map_or(0, |(_, ret)| ret)
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
