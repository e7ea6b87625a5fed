//! `mcentral`: the spans of one span class that no thread cache owns (Go's `mcentral.go`).
//!
//! * `partial`: unowned spans with free slots, FIFO, under the mcentral's own lock, so
//!   contention is limited to one span class.
//! * `pending`: a lock-free stack of spans that were parked *full* and then received a
//!   remote free. A full span is in no list at all: its remote free list carries the
//!   [`DELAYED`](crate::remote::DELAYED) flag, and the first thread to free into it pushes
//!   it here. The next refill moves pending spans to `partial`.
//!
//! While an unowned span sits in `partial`, the holder of this lock is its owner: it alone
//! may touch the span's bitmap.

use crate::lock::SpinLock;
use crate::mcache::MCache;
use crate::mheap::HEAP;
use crate::remote::IntrusiveStack;
use crate::sizeclass::{SpanClass, NUM_SPAN_CLASSES};
use crate::span::Span;
use crate::sync::Ordering;
use core::ptr;
use crossbeam_utils::CachePadded;

/// FIFO list of partial spans, linked through `Span::next`/`prev`.
pub struct SpanList {
    head: *mut Span,
    tail: *mut Span,
    /// Spans in the list.
    pub len: usize,
}

// SAFETY: the list's records are heap metadata guarded by the owning lock.
unsafe impl Send for SpanList {}

impl SpanList {
    const fn new() -> Self {
        SpanList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// # Safety
    /// `s` is a valid record in no list.
    unsafe fn push_back(&mut self, s: *mut Span) {
        // SAFETY: caller contract; `tail` is a valid member.
        unsafe {
            (*s).next.set(ptr::null_mut());
            (*s).prev.set(self.tail);
            if self.tail.is_null() {
                self.head = s;
            } else {
                (*self.tail).next.set(s);
            }
        }
        self.tail = s;
        self.len += 1;
    }

    fn pop_front(&mut self) -> *mut Span {
        let s = self.head;
        if !s.is_null() {
            // SAFETY: members are valid records.
            unsafe {
                self.head = (*s).next.get();
                if self.head.is_null() {
                    self.tail = ptr::null_mut();
                } else {
                    (*self.head).prev.set(ptr::null_mut());
                }
            }
            self.len -= 1;
        }
        s
    }
}

/// The central list of one span class.
pub struct MCentral {
    /// Unowned spans with free slots.
    pub partial: SpinLock<SpanList>,
    /// Parked-full spans that received a remote free.
    pub pending: IntrusiveStack<Span>,
}

impl MCentral {
    const fn new() -> Self {
        MCentral {
            partial: SpinLock::new(SpanList::new()),
            pending: IntrusiveStack::new(),
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const NEW_CENTRAL: CachePadded<MCentral> = CachePadded::new(MCentral::new());

/// One mcentral per span class, each on its own cache lines.
pub static CENTRAL: [CachePadded<MCentral>; NUM_SPAN_CLASSES] = [NEW_CENTRAL; NUM_SPAN_CLASSES];

/// The mcentral of `spc`.
#[inline]
pub fn central(spc: SpanClass) -> &'static MCentral {
    &CENTRAL[spc.index()]
}

impl MCentral {
    /// Hands `cache` a span of class `spc` with at least one free slot loaded in its
    /// window: a partial span, a pending one, or a fresh one from the page heap. Null when
    /// out of memory.
    pub fn cache_span(&self, spc: SpanClass, cache: *mut MCache) -> *mut Span {
        let s = {
            let mut partial = self.partial.lock();
            self.take_pending(&mut partial);
            partial.pop_front()
        };
        let s = if s.is_null() {
            let class = spc.size_class();
            let s = HEAP.lock().alloc_span(class.npages(), 0, spc);
            if s.is_null() {
                return s;
            }
            s
        } else {
            // SAFETY: the span was unowned and is now ours alone; its window is committed.
            unsafe {
                let sr = &*s;
                sr.collect_remote();
                sr.recount();
                let found = sr.load_window_from(0);
                debug_assert!(found, "span in mcentral without a free slot");
            }
            s
        };
        // SAFETY: `s` is a valid in-use record that we now own.
        unsafe { (*s).owner.store(cache, Ordering::Relaxed) };
        s
    }

    /// Moves pending spans to `partial`, after taking their remote frees; spans that
    /// turn out empty go back to the page heap (Go's sweeper frees empty spans likewise).
    fn take_pending(&self, partial: &mut SpanList) {
        let mut p = self.pending.take_all();
        while !p.is_null() {
            // SAFETY: pending spans are valid, unowned records, ours under the partial lock;
            // read the link first.
            unsafe {
                let next = (*p).pending_next.load(Ordering::Relaxed);
                (*p).collect_remote();
                if (*p).recount() == 0 {
                    HEAP.lock().free_span(p);
                } else {
                    partial.push_back(p);
                }
                p = next;
            }
        }
    }

    /// Takes back a span its cache no longer allocates from. The window must be
    /// committed and `alloc_count` exact.
    ///
    /// # Safety
    /// `s` is an in-use small span owned by the caller's cache, which forgets it.
    pub unsafe fn uncache_span(&self, s: *mut Span) {
        // SAFETY: caller contract: we own `s` until it is parked, listed or freed.
        unsafe {
            let sr = &*s;
            sr.owner.store(ptr::null_mut(), Ordering::Relaxed);
            loop {
                let n = sr.alloc_count.get();
                if n == 0 {
                    HEAP.lock().free_span(s);
                    return;
                }
                if n < sr.nelems.get() {
                    self.partial.lock().push_back(s);
                    return;
                }
                // Full: park it; the first remote free will hand it back through `pending`.
                if sr.xfree.try_park() {
                    return;
                }
                // Remote frees arrived meanwhile: take them and decide again.
                sr.collect_remote();
                sr.recount();
            }
        }
    }

    /// Frees the empty spans among this class's unowned spans to the page heap (taking
    /// their remote frees first). Returns how many spans were freed.
    pub fn reclaim(&self) -> usize {
        let mut partial = self.partial.lock();
        self.take_pending(&mut partial);
        let mut keep = SpanList::new();
        let mut freed = 0;
        loop {
            let s = partial.pop_front();
            if s.is_null() {
                break;
            }
            // SAFETY: unowned spans in `partial` belong to the lock holder.
            unsafe {
                (*s).collect_remote();
                if (*s).recount() == 0 {
                    HEAP.lock().free_span(s);
                    freed += 1;
                } else {
                    keep.push_back(s);
                }
            }
        }
        *partial = keep;
        freed
    }
}
