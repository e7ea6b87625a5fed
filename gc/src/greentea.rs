//! The span-queued mark's protocol (`GOMALLOC_GCGREENTEA=1`; after Go 1.26's "Green Tea"
//! collector, `mgcmark_greenteagc.go`): small scan objects are queued by span, not one by
//! one, so that a marker scans the grey objects of a span together.
//!
//! A marker that greys an object of a small scan span (`Tracer::mark_gc`, after its mark
//! bit's `fetch_or` found it white) sets the object's bit in the span's grey bitmap, then
//! the bit word's bit (`w % 64` for word `w`) in the span's queued word, a summary of the
//! words that hold grey bits ([`grey`]). The marker that finds the queued word zero queues
//! the span. The marker that takes the span from a queue swaps the queued word to zero
//! ([`dequeue`]) and takes the grey bits of the words its summary names ([`take`]),
//! scanning each object once. So a span with a few grey objects costs a swap or two, not
//! one per word of its bitmap. The storage is the heap's (`gomalloc::gcapi::GreyMap`);
//! this module is the accesses that carry the protocol's orderings.
//!
//! The invariant: a grey bit that is set is taken by a scan that has not yet taken its
//! word. Either the word's summary bit is in the queued word, where the swap of a scan
//! that has not yet begun (of the entry queued when the word left zero) will find it; or a
//! scan swapped the queued word after the summary bit was set and will take the word
//! after. The orderings that keep it are on the bit words: a grey sets its bit with a
//! read-modify-write that acquires, then reads the queued word; a scan swaps the queued
//! word, then takes each word it names with a swap that releases. If the grey's bit comes
//! after a scan's swap of the word, the grey's `fetch_or` read that swap's value (or a
//! later one), so the scan's swap of the queued word happens before the grey reads it:
//! the grey reads zero, or summary bits set since by a grey that queued the span again or
//! found it queued, and a later scan takes the word. If the bit comes before the word's
//! swap, the swap takes it. The queued word's accesses need only be atomic (one queuer per
//! zero, one summary per scan). Each bit is taken by one swap, so each object is scanned
//! once.
//!
//! This module uses no other module of the crate and no gomalloc item: `tests/loom.rs`
//! compiles it under `cfg(loom)` against loom's atomics and model-checks the protocol with
//! this very code.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Marker: records the object of bit `bit` of grey word `w` (`word`) as grey in its span,
/// whose queued word is `queued`. The caller set the object's mark bit (it was white), so
/// no other marker greys it. True if the span was not queued and now is: the caller puts it
/// into its queue.
#[inline(always)]
pub(crate) fn grey(word: &AtomicU64, w: usize, bit: u32, queued: &AtomicU64) -> bool {
    word.fetch_or(1 << bit, Ordering::AcqRel);
    let summary = 1u64 << (w % 64);
    // Most greys find their word's summary bit set already: a load first, so that those
    // do not write the span's shared word.
    queued.load(Ordering::Relaxed) & summary == 0
        && queued.fetch_or(summary, Ordering::Relaxed) == 0
}

/// Scanner: takes the span, just taken from a queue, out of the queued state; returns the
/// summary of the grey words to [`take`] (bit `b`: words `b`, `b + 64`, ...). A grey after
/// this queues the span again.
#[inline]
pub(crate) fn dequeue(queued: &AtomicU64) -> u64 {
    queued.swap(0, Ordering::Relaxed)
}

/// Scanner: the grey bits of `word`, cleared; the caller scans their objects.
#[inline(always)]
pub(crate) fn take(word: &AtomicU64) -> u64 {
    word.swap(0, Ordering::AcqRel)
}
