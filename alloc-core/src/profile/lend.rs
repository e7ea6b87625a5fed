//! The countdown carried by the window: how a thread that samples keeps the allocation
//! fast path unchanged (default build).
//!
//! The fast path has no countdown in it, so that a thread that does not sample runs the
//! code of an allocator without profiles. A thread that samples points its fast path
//! (`MCache::fast`) at *proxy* span records of its own instead, one per size class
//! ([`Loans`]). Each proxy holds a *loan*: free slots of the window of `alloc[class]`, at
//! most as many as the class's countdown has room for. The fast path runs unchanged on
//! the proxy. When it finds the proxy empty, every slot lent was allocated, and the slow
//! path decides whether this allocation is the sample, takes a slot (refilling the span
//! if its window is spent), and lends again: [`relend`] in the common case, [`due`] and
//! [`lend`] at a sample or after a rate change. So a sampling thread pays the slow path
//! once per loan (up to 64 allocations; fewer in a class whose spans hold a few slots, or
//! whose window frees refill a few slots at a time), not once per allocation.
//!
//! **One countdown per size class.** Go counts down one countdown per thread, over all
//! its allocations; that is a Poisson process of rate `1/rate` over the bytes the thread
//! allocates, and so is one countdown per class over each class's bytes: Poisson
//! processes of the same rate over disjoint sets of bytes make one over their union.
//! Every byte is sampled with the same chance as in Go, and a class's loans are bounded
//! by its own countdown alone, so classes never wait on one another's loans. (The
//! allocations that take no loan, large or over-aligned blocks and the collector's
//! objects, keep the thread's countdown, `MCache::next_sample`: one more disjoint set.)
//! A class's countdown is charged for a whole loan when it is lent and refunded the
//! slots the fast path did not take when it is repaid, so the sample falls on the
//! allocation where the class's bytes run out, as in Go; each slot is charged its
//! class's size, as Go charges the rounded size.
//!
//! Frees never reach a proxy: they find the span of their slot as always, and a lent slot
//! counts as allocated there until it is repaid (`Span::lend`). So each slot a proxy
//! hands out is counted once, and a thread that frees what it allocates still empties its
//! loans and reaches its samples. The cost: a double free of a slot that was lent is not
//! seen by the free; it is reported when the loan is repaid with the slot still in it,
//! and goes unnoticed if the fast path hands the slot out first, as a double free of a
//! slot already allocated again does.
//!
//! A loan goes back before its span can change hands: before every refill of its class,
//! when the cache is flushed, and when sampling stops. A free that moves the window of
//! `alloc[class]` (a run of frees) leaves the loan valid: `Span::repay` frees what is
//! left of it in the bitmap.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use crate::mcache::MCache;
use crate::sizeclass::SizeClass;
use crate::sizeclasses::NUM_SIZE_CLASSES;
use crate::span::Span;
use core::cell::Cell;

/// A cache's proxy spans, their loans and the classes' countdowns, mapped from the OS
/// when the thread first samples and kept with the cache record for its life (records
/// are reused, never freed).
///
/// Invariants (the cache's owner is the only user): `proxy[class]` is a span record in
/// no list, with no owner; its window's free slots (`Span::window_free`) are the slots of
/// its loan that the fast path has not taken: slots of the window of `alloc[class]` (or of
/// one that span had loaded when it lent them) that the span counts as allocated;
/// `countdown[class]` is the class's bytes before its next sample, less the whole of the
/// loan, so repaying the slots left refunds `popcount(proxy[class].window_free())` slots.
#[repr(C)]
pub struct Loans {
    /// The fast path's span of each class while the thread samples.
    proxy: [Span; NUM_SIZE_CLASSES],
    /// Bytes of the class left before its next sample, its loan already charged.
    countdown: [Cell<usize>; NUM_SIZE_CLASSES],
    /// The `sample::EPOCH` the countdowns were drawn in (0: never).
    epoch: Cell<u32>,
}

impl Loans {
    /// The proxy of `class`.
    #[inline(always)]
    fn proxy(&self, class: usize) -> &Span {
        crate::check!(class < NUM_SIZE_CLASSES, "size class out of range", class);
        // SAFETY: `class < NUM_SIZE_CLASSES`: classes come from the size-class tables.
        unsafe { self.proxy.get_unchecked(class) }
    }

    /// The countdown of `class`.
    #[inline(always)]
    fn countdown(&self, class: usize) -> &Cell<usize> {
        crate::check!(class < NUM_SIZE_CLASSES, "size class out of range", class);
        // SAFETY: `class < NUM_SIZE_CLASSES`: classes come from the size-class tables.
        unsafe { self.countdown.get_unchecked(class) }
    }
}

/// Bytes mapped for a cache's [`Loans`]: whole pages.
const LOANS_BYTES: usize = core::mem::size_of::<Loans>().next_multiple_of(4096);

/// The cache's loans, mapped at its first call (null if the OS refused memory: the thread
/// then does not sample).
pub(crate) fn loans(c: &MCache) -> *mut Loans {
    let l = c.prof.loans.get();
    if !l.is_null() {
        return l;
    }
    // SAFETY: `LOANS_BYTES` is a multiple of the page size.
    let l = unsafe { crate::os::sys_alloc(LOANS_BYTES) }.cast::<Loans>();
    if !l.is_null() {
        // SAFETY: fresh, page-aligned storage of at least `size_of::<Loans>()` bytes, which
        // satisfies `Span`'s 64-byte alignment.
        unsafe {
            l.write(Loans {
                proxy: [const { Span::empty() }; NUM_SIZE_CLASSES],
                countdown: [const { Cell::new(0) }; NUM_SIZE_CLASSES],
                epoch: Cell::new(0),
            })
        };
        c.prof.loans.set(l);
    }
    l
}

/// The proxy span of `class` in `c`'s loans, which exist (the cache samples).
pub(crate) fn proxy(c: &MCache, class: usize) -> *mut Span {
    let l = c.prof.loans.get();
    crate::check!(!l.is_null(), "proxy of a cache that never sampled", class);
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`), and
    // records are never freed.
    unsafe { &raw mut (*l).proxy[class] }
}

/// Gives back to the span of `class` the slots of its loan that the fast path did not
/// take, and refunds them to the class's countdown.
///
/// # Safety
/// The caller owns `c`, which samples or did.
pub(crate) unsafe fn repay(c: &MCache, class: usize) {
    let l = c.prof.loans.get();
    if l.is_null() {
        return;
    }
    // SAFETY: mapped loans live as long as the record; the caller owns `c` (# Safety).
    let l = unsafe { &*l };
    let p = l.proxy(class);
    let unused = crate::cpu::popcount(p.window_free()) as usize;
    if unused == 0 {
        return;
    }
    let cd = l.countdown(class);
    cd.set(cd.get() + unused * p.elemsize.get() as usize);
    // SAFETY: the loan came from `alloc[class]`, which the cache still owns: a span leaves
    // the cache only after its class's loan is repaid (module doc).
    unsafe { c.span(class).repay(p) };
}

/// [`repay`] for every class (at a flush, when sampling stops or the rate changes).
///
/// # Safety
/// As for [`repay`].
pub(crate) unsafe fn repay_all(c: &MCache) {
    for class in 1..NUM_SIZE_CLASSES {
        // SAFETY: as for this function (# Safety).
        unsafe { repay(c, class) };
    }
}

/// What [`relend`] did, or left to do.
pub(crate) enum Relend {
    /// It took this slot for the allocation and lent the rest of the window.
    Slot(*mut u8),
    /// The span's window is spent: [`relend_refilled`], with the class's countdown.
    Refill(usize),
    /// The countdown has room for part of the window only: [`take_and_lend_part`], with
    /// the countdown after this allocation.
    Part(usize),
    /// The exact path decides: the countdown has no room for this allocation (the sample
    /// is due), the rate changed, or the fast path did not spend the loan.
    Exact,
}

/// The common case of a sampling thread's slow path: the fast path spent the loan of
/// `class`, the rate has not changed, and the class's countdown has room for this
/// allocation and the rest of the span's window. Takes a slot and lends the rest of the
/// window; otherwise says which path does the work. Every other path is out of line, and
/// its caller tail-calls it, so that this one saves no registers.
///
/// # Safety
/// The caller owns `c`, which samples; `class` is a size class other than 0.
#[inline(always)]
pub(crate) unsafe fn relend(c: &MCache, class: usize) -> Relend {
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`).
    let l = unsafe { &*c.prof.loans.get() };
    let p = l.proxy(class);
    if p.window_free() != 0 || l.epoch.get() != super::sample::epoch() {
        return Relend::Exact;
    }
    // The fast path took every slot lent, and the countdown was charged for them.
    let elem = SizeClass(class as u8).size();
    let cd = l.countdown(class).get();
    if cd < elem {
        return Relend::Exact;
    }
    let s = c.span(class);
    let bits = s.window_bits();
    if bits == u64::MAX {
        return Relend::Refill(cd);
    }
    let left = cd - elem;
    match rest_fits(bits, elem, left) {
        // SAFETY: the caller owns `c`, so `s` and the proxy, whose loan is spent; `s` has
        // `n + 1` free slots in its window, and the countdown room for `n` after this one.
        Some(n) => Relend::Slot(unsafe { take_and_lend_rest(l, s, bits, class, left, n) }),
        None => Relend::Part(left),
    }
}

/// The slots a relend lends from a window whose `Span::window_bits` are `bits` (a free
/// slot among them): the rest of the window after this allocation's slot, if the
/// countdown, `left` bytes after it, has room for them all (in a class whose spans hold a
/// few slots, nearly always).
#[inline(always)]
fn rest_fits(bits: u64, elem: usize, left: usize) -> Option<usize> {
    let n = 63 - crate::cpu::popcount(bits) as usize;
    (left >= n * elem).then_some(n)
}

/// [`relend`]'s [`Relend::Refill`]: refills the span of `class`, whose window is spent,
/// takes a slot and lends what the new window and the countdown `cd` allow. Null if the
/// refill fails (out of memory).
///
/// # Safety
/// As for [`relend`], which returned `Refill(cd)`: the loan of `class` is spent, and `cd`
/// is its countdown, at least the class's size.
#[cold]
#[inline(never)]
pub(crate) unsafe fn relend_refilled(c: &MCache, class: usize, cd: usize) -> *mut u8 {
    // SAFETY: the caller owns `c` (# Safety); the class's loan is spent, so its span
    // may change hands.
    let r = unsafe { crate::mcache::refill(c, SizeClass(class as u8)) };
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`).
    let l = unsafe { &*c.prof.loans.get() };
    // The refill pointed the fast path at the span (`MCache::put_alloc`).
    c.fast[class].set(l.proxy(class) as *const Span as *mut Span);
    crate::check::after_slow_op();
    if r.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `refill` returns a live span of the cache with a free slot loaded; the
    // rest as for this function.
    let s = unsafe { &*r };
    let elem = SizeClass(class as u8).size();
    let left = cd - elem;
    let bits = s.window_bits();
    match rest_fits(bits, elem, left) {
        // SAFETY: as above; the countdown has room for the whole window.
        Some(n) => unsafe { take_and_lend_rest(l, s, bits, class, left, n) },
        // SAFETY: as above.
        None => unsafe { take_and_lend(l, s, class, left) },
    }
}

/// [`relend`]'s [`Relend::Part`]: takes a slot of the window of `class` and lends the
/// part of the rest that the countdown, `left` bytes after this allocation, has room
/// for.
///
/// # Safety
/// As for [`relend`], which returned `Part(left)`: the loan of `class` is spent, and the
/// span's window has a free slot.
#[cold]
#[inline(never)]
pub(crate) unsafe fn take_and_lend_part(c: &MCache, class: usize, left: usize) -> *mut u8 {
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`).
    let l = unsafe { &*c.prof.loans.get() };
    // SAFETY: as for this function (# Safety).
    unsafe { take_and_lend(l, c.span(class), class, left) }
}

/// Takes a slot of `s`'s window for this allocation and lends the `n` slots left in the
/// window to the proxy of `class`, whose countdown has room for them, `left` bytes after
/// this allocation.
///
/// # Safety
/// The caller owns the cache of `l`, `s` (its span of `class`, whose window's
/// `Span::window_bits` are `bits`, with `n + 1` free slots) and the proxy, which holds no
/// loan; `left` is at least `n` slots.
#[inline(always)]
unsafe fn take_and_lend_rest(
    l: &Loans,
    s: &Span,
    bits: u64,
    class: usize,
    left: usize,
    n: usize,
) -> *mut u8 {
    let elem = SizeClass(class as u8).size();
    // SAFETY: as for this function (# Safety).
    let slot = unsafe { s.take_and_lend_rest(l.proxy(class), bits) };
    l.countdown(class).set(left - n * elem);
    // SAFETY: `slot` is the free slot just taken (poison feature only).
    unsafe { crate::harden::verify_poison(slot, elem) };
    slot
}

/// Takes a slot of `s`'s window for this allocation and lends the rest of the window, as
/// far as the class's countdown, `left` bytes after this allocation, goes, to the proxy
/// of `class`.
///
/// # Safety
/// The caller owns the cache of `l`, `s` (its span of `class`, with a free slot in its
/// window) and the proxy, which holds no loan.
unsafe fn take_and_lend(l: &Loans, s: &Span, class: usize, left: usize) -> *mut u8 {
    let elem = SizeClass(class as u8).size();
    let slot = s.next_free_fast();
    l.countdown(class).set(left);
    // SAFETY: as for this function (# Safety): the proxy holds no loan.
    unsafe { lend_window(l, s, class, elem) };
    // SAFETY: `slot` is the free slot just taken (poison feature only).
    unsafe { crate::harden::verify_poison(slot, elem) };
    slot
}

/// Lends the free slots of `s`'s loaded window, as many as the countdown of `class`
/// (`elem` bytes a slot) has room for, to the class's proxy, and charges them.
///
/// # Safety
/// The caller owns the cache of `l`, `s` (its span of `class`, with a window loaded) and
/// the proxy, which holds no loan.
#[inline(always)]
unsafe fn lend_window(l: &Loans, s: &Span, class: usize, elem: usize) {
    let cd = l.countdown(class);
    // SAFETY: as for this function (# Safety).
    let n = unsafe { s.lend(l.proxy(class), (cd.get() / elem).min(64) as u32) };
    cd.set(cd.get() - n as usize * elem);
}

/// The exact path of a sampling thread's allocation in `class`: repays its loan,
/// draws every class's countdown again if the rate changed, and counts the allocation
/// down. True if it is the sample (the class's countdown is then drawn anew).
///
/// # Safety
/// The caller owns `c`, which samples.
pub(crate) unsafe fn due(c: &MCache, class: SizeClass) -> bool {
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`).
    let l = unsafe { &*c.prof.loans.get() };
    let e = super::sample::epoch();
    // SAFETY: the caller owns `c` (# Safety).
    unsafe {
        if l.epoch.get() != e {
            repay_all(c);
            for cd in &l.countdown {
                cd.set(super::sample::draw(c));
            }
            l.epoch.set(e);
        } else {
            repay(c, class.index());
        }
    }
    let cd = l.countdown(class.index());
    let elem = class.size();
    if cd.get() >= elem {
        cd.set(cd.get() - elem);
        return false;
    }
    cd.set(super::sample::draw(c));
    !c.prof.busy.get() && super::sample::rate() != 0
}

/// Has the classes' countdowns drawn again at their next exact path (after a profile
/// was written: countdowns drawn meanwhile never run out).
pub(crate) fn draw_again(c: &MCache) {
    let l = c.prof.loans.get();
    if !l.is_null() {
        // SAFETY: mapped loans live as long as the record; only the owner calls this.
        unsafe { (*l).epoch.set(0) };
    }
}

/// Lends the fast path of `class` what its span's window and the class's countdown
/// allow, after the exact path took its slot.
///
/// # Safety
/// The caller owns `c`, which samples, and `class`'s loan is repaid.
pub(crate) unsafe fn lend(c: &MCache, class: SizeClass) {
    let s = c.span(class.index());
    if s.window_free() == 0 {
        return;
    }
    // SAFETY: a cache that samples has its loans mapped (`MCache::set_sampling`).
    let l = unsafe { &*c.prof.loans.get() };
    // SAFETY: the caller owns `c`, so the span of `class` and the proxy, whose loan is
    // repaid (# Safety); the span has a window loaded, as it has free slots in it.
    unsafe { lend_window(l, s, class.index(), class.size()) };
}
