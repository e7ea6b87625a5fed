//! The page heap's per-page bitmaps (see `mheap.rs`): the *scavenged* bit of each page
//! (its memory is back with the OS, or was never touched, so it reads as zero) and the
//! *in-use* bit of each page that starts an in-use span, in each arena's record. All of
//! it runs under the heap lock.
//!
//! Layer: pages (the crate root's module map, `lib.rs`).

use crate::arena::{self, HeapArena, PAGES_PER_ARENA};
use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE};
use crate::span::SpanState;
use core::ptr;

use super::release::CHUNK_PAGES;

/// Calls `f(arena, first_page, count, address)` for each arena-sized piece of a page range.
fn for_arena_pieces(
    start: usize,
    npages: usize,
    mut f: impl FnMut(*mut HeapArena, usize, usize, usize),
) {
    let mut addr = start;
    let mut left = npages;
    while left > 0 {
        let ha = arena::heap_arena_of(addr);
        crate::check!(!ha.is_null(), "page bits of an address outside the arenas", addr);
        let first = arena::page_index(addr);
        let n = left.min(PAGES_PER_ARENA - first);
        f(ha, first, n, addr);
        addr += n << PAGE_SHIFT;
        left -= n;
    }
}

/// Mask of bits `[lo, lo+n)` within one word (`lo + n <= 64`).
#[inline]
fn word_mask(lo: usize, n: usize) -> u64 {
    if n == 64 {
        !0
    } else {
        ((1u64 << n) - 1) << lo
    }
}

/// Calls `f(word, mask)` for each word of `words` covering bits `[first, first+n)`.
///
/// Contract (not checked; every caller meets it): `words` is one of a live arena's per-page
/// bitmaps (`PAGES_PER_ARENA` bits), `first + n <= PAGES_PER_ARENA`, and the heap lock is
/// held, so no other reference to those words exists meanwhile.
pub(super) fn for_bit_words(words: *mut u64, first: usize, n: usize, mut f: impl FnMut(&mut u64, u64)) {
    let mut i = first;
    let end = first + n;
    while i < end {
        let lo = i % 64;
        let k = (64 - lo).min(end - i);
        // SAFETY: `i / 64` indexes a word of a live arena's per-page bitmap, since
        // `first + n <= PAGES_PER_ARENA`, and the heap lock makes this `&mut` unique (the
        // contract above).
        f(unsafe { &mut *words.add(i / 64) }, word_mask(lo, k));
        i += k;
    }
}

pub(super) fn scavenged_set(start: usize, npages: usize) {
    for_arena_pieces(start, npages, |ha, first, n, _| {
        // SAFETY: `ha` is a live arena record; heap lock held.
        let words = unsafe { ptr::addr_of_mut!((*ha).scavenged) }.cast::<u64>();
        for_bit_words(words, first, n, |w, m| *w |= m);
    });
}

/// Clears the scavenged bits of a range; returns how many were set.
pub(super) fn scavenged_take(start: usize, npages: usize) -> usize {
    let mut count = 0;
    for_arena_pieces(start, npages, |ha, first, n, _| {
        // SAFETY: `ha` is a live arena record; heap lock held.
        let words = unsafe { ptr::addr_of_mut!((*ha).scavenged) }.cast::<u64>();
        for_bit_words(words, first, n, |w, m| {
            count += (*w & m).count_ones() as usize;
            *w &= !m;
        });
    });
    count
}

/// Whether every page of `[start, start + npages pages)` (in one arena) is released.
pub(super) fn all_released(start: usize, npages: usize) -> bool {
    let ha = arena::heap_arena_of(start);
    // SAFETY: `ha` is a live arena record; heap lock held.
    let words = unsafe { ptr::addr_of_mut!((*ha).scavenged) }.cast::<u64>();
    let mut all = true;
    for_bit_words(words, arena::page_index(start), npages, |w, m| {
        all &= *w & m == m
    });
    all
}

/// Pages of the 2 MiB chunk at `chunk` that belong to in-use spans. Walks the chunk span
/// by span: the first page's in-use span through [`arena::span_containing`] (it may start
/// before the chunk, or map only its ends), then each next span through the entry of its
/// first page, which every span, free or in use, has in the map (arena invariant 1); a
/// page with no entry (inside a free run) is passed one at a time. Heap lock held.
pub(super) fn chunk_in_use(chunk: usize) -> usize {
    let end = chunk + (CHUNK_PAGES << PAGE_SHIFT);
    let (mut addr, mut n) = (chunk, 0);
    let mut s = arena::span_containing(addr);
    while addr < end {
        if s.is_null() {
            // Inside a free run, or not in the heap's spans (reserved, not committed).
            addr += PAGE_SIZE;
        } else {
            // SAFETY: arena-map entries point to valid records; heap lock held, so the
            // spans do not change, and `s` holds `addr` (span_containing, or the entry
            // of its first page).
            let sr = unsafe { &*s };
            let limit = sr.limit().min(end);
            if sr.state() == SpanState::InUse {
                n += (limit - addr) >> PAGE_SHIFT;
            }
            // (At least a page on: a record that broke the invariant cannot stall the walk.)
            addr = limit.max(addr + PAGE_SIZE);
        }
        if addr < end {
            s = arena::span_of(addr);
        }
    }
    n
}

pub(super) fn set_page_in_use(base: usize, on: bool) {
    let ha = arena::heap_arena_of(base);
    let p = arena::page_index(base);
    // SAFETY: `ha` is a live arena record.
    let w = unsafe { &(*ha).page_in_use[p / 64] };
    let m = 1usize << (p % 64);
    if on {
        w.fetch_or(m, core::sync::atomic::Ordering::Relaxed);
    } else {
        w.fetch_and(!m, core::sync::atomic::Ordering::Relaxed);
    }
}
