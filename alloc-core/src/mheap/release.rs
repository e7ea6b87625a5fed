//! Returning free pages to the OS: the mechanism (Go's `mgcscavenge.go` splits it the same
//! way). The page heap keeps its free runs that may hold memory on a *dirty list*, oldest
//! first; [`MHeap::scavenge`] walks it and releases their pages, skipping runs dirtied too
//! recently and, if asked, 2 MiB chunks densely in use. The policy, how much to release
//! and when, is the scavenger's (`scavenge.rs`). All of it runs under the heap lock.
//!
//! Layer: pages (the crate root's module map, `lib.rs`).

use super::pagebits::{all_released, chunk_in_use, for_bit_words};
use super::MHeap;
use crate::arena::{self, PAGES_PER_ARENA};
use crate::config;
use crate::os;
use crate::sizeclass::PAGE_SHIFT;
use crate::span::Span;
use core::ptr;

/// What the page heap asks of its release policy. The heap owns the mechanism (the dirty
/// list, [`MHeap::scavenge`]); the policy, the scavenger's (`scavenge::POLICY`, installed by
/// `runtime` at initialisation), decides how much memory the heap keeps and when the
/// background thread runs.
pub struct ReleasePolicy {
    /// The coarse time now, which stamps a free run when it becomes dirty.
    pub now: fn() -> usize,
    /// Pages came back to the heap: `free` bytes are free and not released, `inuse`
    /// bytes in use.
    pub pages_freed: fn(free: usize, inuse: usize),
    /// The heap committed memory: `heap_sys` bytes in all now.
    pub grew: fn(heap_sys: usize),
    /// The most memory the heap may keep from the OS with `inuse` bytes in use; growing
    /// past it releases as much elsewhere first (Go's `mheap.grow`).
    pub retained_goal: fn(inuse: usize) -> usize,
    /// The latest dirtying time of a free run that may be released now (`usize::MAX`: any).
    pub dirty_cutoff: fn(over_limit: bool) -> usize,
}

impl ReleasePolicy {
    /// The policy of a heap no scavenger serves (before initialisation, and the unit
    /// tests' private heaps): no clock, no wake-up, no goal.
    pub const NONE: ReleasePolicy = ReleasePolicy {
        now: || 0,
        pages_freed: |_, _| {},
        grew: |_| {},
        retained_goal: |_| usize::MAX,
        dirty_cutoff: |_| 0,
    };
}

impl MHeap {
    /// Installs the release policy (once, at initialisation).
    pub fn set_release_policy(&mut self, policy: &'static ReleasePolicy) {
        self.policy = policy;
    }

    /// Appends `s` to the dirty list (it is now the most recently dirtied run).
    ///
    /// # Safety
    /// `s` is a valid free record not on the dirty list.
    pub(super) unsafe fn dirty_push_back(&mut self, s: *mut Span) {
        // SAFETY: `s` is a valid record not on the dirty list (# Safety).
        unsafe {
            (*s).in_dirty.set(true);
            self.dirty.push_back(s);
        }
    }

    /// Takes `s` off the dirty list.
    ///
    /// # Safety
    /// `s` is on the dirty list.
    pub(super) unsafe fn dirty_unlink(&mut self, s: *mut Span) {
        // SAFETY: `s` is on the dirty list (# Safety), so a valid record.
        unsafe {
            self.dirty.remove(s);
            (*s).in_dirty.set(false);
        }
    }


    /// Gives every free, not yet released page back to the OS (`malloc_trim`,
    /// [`crate::release_memory`]), dense huge-page chunks included. Returns bytes released.
    pub fn release_all(&mut self) -> usize {
        self.scavenge(usize::MAX, false, usize::MAX).released << PAGE_SHIFT
    }

    /// Bytes of heap memory backed by the OS now: committed minus released.
    pub fn retained(&self) -> usize {
        self.c.heap_sys - (self.c.pages_released << PAGE_SHIFT)
    }

    /// Releases up to `max_pages` free pages that still hold memory, oldest free runs
    /// first (Go's `mgcscavenge.go`), skipping runs dirtied after `dirty_before` (on the
    /// scavenger's coarse clock; `usize::MAX` takes every run). With `spare_dense`, 2 MiB
    /// chunks with at least [`DENSE_PAGES`] of their 256 pages in use are skipped, so the
    /// huge pages backing densely used memory are not broken up.
    ///
    /// # Time Complexity
    /// O(runs visited + pages released); each run on the dirty list is visited at most once
    /// per call.
    pub fn scavenge(
        &mut self,
        max_pages: usize,
        spare_dense: bool,
        dirty_before: usize,
    ) -> Scavenged {
        let lazy = config::release_mode() == config::ReleaseMode::Free;
        let mut density = ChunkDensity::default();
        let (mut released, mut young) = (0, 0);
        let mut visits = self.dirty.len();
        while visits > 0 && released < max_pages {
            visits -= 1;
            let s = self.dirty.front();
            // SAFETY: dirty-list members are valid free records.
            let (base, n, since) =
                unsafe { ((*s).base.get(), (*s).npages.get(), (*s).dirty_since.get()) };
            if since > dirty_before {
                young += n;
                // SAFETY: `s` is on the dirty list.
                unsafe {
                    self.dirty_unlink(s);
                    self.dirty_push_back(s);
                }
                continue;
            }
            let dense = |chunk| spare_dense && density.is_dense(chunk);
            let (r, clean) = scavenge_run(base, n, max_pages - released, dense, lazy);
            released += r;
            // SAFETY: `s` is on the dirty list.
            unsafe {
                self.dirty_unlink(s);
                if !clean {
                    // Partly done, or dense chunks spared: to the back of the queue.
                    self.dirty_push_back(s);
                }
            }
        }
        self.c.pages_released += released;
        self.c.released_total += released << PAGE_SHIFT;
        Scavenged { released, young }
    }
}

/// What one [`MHeap::scavenge`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scavenged {
    /// Pages given back to the OS.
    pub released: usize,
    /// Pages of free runs left alone because they were dirtied too recently.
    pub young: usize,
}

/// Pages of a 2 MiB huge-page chunk that make it dense: Go's 96.875% (31/32).
pub const DENSE_PAGES: usize = CHUNK_PAGES * 31 / 32;
/// Pages per 2 MiB chunk (the x86-64 huge page).
pub(super) const CHUNK_PAGES: usize = (2 << 20) >> PAGE_SHIFT;

/// Releases dirty pages of the free run `[base, base + npages pages)`, at most `limit`,
/// chunk by chunk, skipping the chunks `dense` names. Returns the pages released and
/// whether the run is now wholly released.
fn scavenge_run(
    base: usize,
    npages: usize,
    limit: usize,
    mut dense: impl FnMut(usize) -> bool,
    lazy: bool,
) -> (usize, bool) {
    let end = base + (npages << PAGE_SHIFT);
    let chunk = CHUNK_PAGES << PAGE_SHIFT;
    let (mut addr, mut released, mut spared) = (base, 0, false);
    while addr < end && released < limit {
        let piece_end = ((addr & !(chunk - 1)) + chunk).min(end);
        let pages = (piece_end - addr) >> PAGE_SHIFT;
        if all_released(addr, pages) {
            // nothing to do here (checked first: it is cheaper than the density)
        } else if dense(addr & !(chunk - 1)) {
            spared = true;
        } else {
            let (r, done) = release_range(addr, pages, limit - released, lazy);
            released += r;
            if !done {
                return (released, false);
            }
        }
        addr = piece_end;
    }
    (released, addr >= end && !spared)
}

/// Remembers the density of the last chunk looked at: consecutive free runs of one
/// scavenging pass often share a chunk.
#[derive(Default)]
struct ChunkDensity {
    chunk: usize,
    dense: bool,
}

impl ChunkDensity {
    fn is_dense(&mut self, chunk: usize) -> bool {
        if chunk != self.chunk || chunk == 0 {
            self.chunk = chunk;
            self.dense = chunk_in_use(chunk) >= DENSE_PAGES;
        }
        self.dense
    }
}

/// Releases the dirty pages of `[start, start + npages pages)` (all in one arena) to the
/// OS, stopping after `limit` pages; marks them scavenged. Returns the pages released and
/// whether the whole range was covered.
fn release_range(start: usize, npages: usize, limit: usize, lazy: bool) -> (usize, bool) {
    let ha = arena::heap_arena_of(start);
    crate::check!(!ha.is_null(), "release of an address outside the arenas", start);
    let first = arena::page_index(start);
    crate::check!(
        first + npages <= PAGES_PER_ARENA,
        "release range crosses its arena's end at page",
        first + npages
    );
    // SAFETY: `ha` is a live arena record; heap lock held.
    let words = unsafe { ptr::addr_of_mut!((*ha).scavenged) }.cast::<u64>();
    // SAFETY: p < PAGES_PER_ARENA: inside the arena's bitmap.
    let clean = |p: usize| unsafe { *words.add(p / 64) } & (1 << (p % 64)) != 0;
    let (end, mut p, mut released) = (first + npages, first, 0);
    while p < end && released < limit {
        if p % 64 == 0 && p + 64 <= end {
            // SAFETY: p / 64 indexes a word of the arena's bitmap.
            if unsafe { *words.add(p / 64) } == u64::MAX {
                p += 64; // a whole word of released pages
                continue;
            }
        }
        if clean(p) {
            p += 1;
            continue;
        }
        let run = p;
        while p < end && !clean(p) && released + (p - run) < limit {
            p += 1;
        }
        let at = start + ((run - first) << PAGE_SHIFT);
        // SAFETY: the pages are free heap pages, mapped read-write, holding no data.
        unsafe { os::sys_unused(at as *mut u8, (p - run) << PAGE_SHIFT, lazy) };
        for_bit_words(words, run, p - run, |w, m| *w |= m);
        released += p - run;
    }
    while p < end && clean(p) {
        p += 1;
    }
    (released, p >= end)
}
