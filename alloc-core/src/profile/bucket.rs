//! The records: one [`Bucket`] per (stack, charged size), as Go's `mprof.go` `bucket`
//! with its `memRecord`: objects and bytes allocated and freed. The size in the key is the
//! one the countdown charged, a size class's size for a small block and whole pages for a
//! large one, as Go's key is the rounded size: so a site that allocates blocks of many
//! sizes (strings, buffers sized by their input) has a record per size class it uses, not
//! one per size, and the table does not fill up with them. The requested bytes are
//! summed in the record. A sampled block's span names its bucket and its requested size
//! (`Span::prof_bucket`, `Span::prof_size`), so that its free is counted (Go's
//! `mProf_Free`, found there through the span's `specialprofile`).
//!
//! Memory: a fixed table of [`MAX_BUCKETS`] records and an open-addressing index over
//! them, mapped from the OS on the first sample (never from `malloc`; pages are touched as
//! records are used). A sample whose stack finds no room counts in `dropped` and is not
//! recorded. Lock: [`TABLE`], taken after every other allocator lock (`HACKING.md`, "Locks
//! and their order") and by the `pthread_atfork` prepare handler last; nothing allocates
//! or takes another lock while holding it.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use crate::lock::SpinLock;
use core::ptr;

/// Frames kept per stack (Go's `maxStack`).
pub const MAX_STACK: usize = 32;
/// Records in the table: distinct (stack, charged size) pairs.
pub const MAX_BUCKETS: usize = 1 << 16;
/// Slots of the index (a power of two, twice [`MAX_BUCKETS`]: probes stay short).
const INDEX_SLOTS: usize = MAX_BUCKETS * 2;

/// One allocation site: a stack and the size the countdown charged for each object, with
/// its counts. Only [`TABLE`]'s holder writes it.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Bucket {
    /// Hash of `stk[..nstk]` and `charged`.
    pub hash: u64,
    /// Bytes the countdown charged for each object sampled here: its size class's size for
    /// a small block, whole pages for a large one, as Go charges (`profile::charge_of`).
    /// The chance that an object was sampled is `1 - exp(-charged / rate)`, which scaling
    /// must use.
    pub charged: usize,
    /// Frames in `stk` (return addresses, innermost first).
    pub nstk: usize,
    /// The stack.
    pub stk: [usize; MAX_STACK],
    /// Sampled objects allocated.
    pub allocs: u64,
    /// Sampled objects freed.
    pub frees: u64,
    /// Requested bytes of the sampled objects allocated, summed.
    pub alloc_bytes: u64,
    /// Requested bytes of the sampled objects freed, summed.
    pub free_bytes: u64,
}

impl Bucket {
    /// The stack, innermost frame first.
    pub fn stack(&self) -> &[usize] {
        &self.stk[..self.nstk]
    }

    /// Requested bytes of the sampled objects still live.
    pub fn live_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.free_bytes)
    }

    /// Sampled objects still live.
    pub fn live(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }
}

/// The table: `buckets[0..n]` in use; `index[h]` is 0 or a bucket's number plus one.
pub struct Table {
    buckets: *mut Bucket,
    index: *mut u32,
    n: usize,
    /// Samples not recorded: the table was full (or could not be mapped).
    pub dropped: u64,
}

// SAFETY: the table's memory is reached only through the lock that owns the `Table`.
unsafe impl Send for Table {}

/// The records, behind their lock.
pub static TABLE: SpinLock<Table> = SpinLock::new(Table {
    buckets: ptr::null_mut(),
    index: ptr::null_mut(),
    n: 0,
    dropped: 0,
});

const BUCKET_BYTES: usize = MAX_BUCKETS * core::mem::size_of::<Bucket>();
const INDEX_BYTES: usize = INDEX_SLOTS * 4;

fn hash(stk: &[usize], charged: usize) -> u64 {
    // FNV-1a over the words, then a final mix (Go's `stkbucket` hashes the same way, by
    // word, and mixes the size in).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &w in stk.iter().chain(core::iter::once(&charged)) {
        h = (h ^ w as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl Table {
    /// Maps the table's memory on first use. False if the OS refused.
    fn ensure_mapped(&mut self) -> bool {
        if !self.buckets.is_null() {
            return true;
        }
        // SAFETY: both sizes are multiples of the page size (powers of two well above it).
        let (b, i) = unsafe {
            (
                crate::os::sys_alloc(BUCKET_BYTES),
                crate::os::sys_alloc(INDEX_BYTES),
            )
        };
        if b.is_null() || i.is_null() {
            // SAFETY: each non-null mapping is ours, just made, of the size given.
            unsafe {
                if !b.is_null() {
                    crate::os::sys_free(b, BUCKET_BYTES);
                }
                if !i.is_null() {
                    crate::os::sys_free(i, INDEX_BYTES);
                }
            }
            return false;
        }
        self.buckets = b.cast();
        self.index = i.cast();
        true
    }

    /// Counts one sampled object of `size` bytes, charged `charged` bytes by the
    /// countdown, allocated at `stk`; returns its bucket's number plus one, or 0 if it
    /// could not be recorded.
    pub fn record_alloc(&mut self, stk: &[usize], size: usize, charged: usize) -> u32 {
        if !self.ensure_mapped() {
            self.dropped += 1;
            return 0;
        }
        let stk = &stk[..stk.len().min(MAX_STACK)];
        let h = hash(stk, charged);
        let mut slot = h as usize & (INDEX_SLOTS - 1);
        loop {
            // SAFETY: `slot < INDEX_SLOTS`, inside the mapped index.
            let e = unsafe { &mut *self.index.add(slot) };
            if *e == 0 {
                if self.n == MAX_BUCKETS {
                    self.dropped += 1;
                    return 0;
                }
                let mut b = Bucket {
                    hash: h,
                    charged,
                    nstk: stk.len(),
                    stk: [0; MAX_STACK],
                    allocs: 1,
                    frees: 0,
                    alloc_bytes: size as u64,
                    free_bytes: 0,
                };
                b.stk[..stk.len()].copy_from_slice(stk);
                // SAFETY: `n < MAX_BUCKETS`, inside the mapped records, unused so far.
                unsafe { self.buckets.add(self.n).write(b) };
                self.n += 1;
                *e = self.n as u32;
                return *e;
            }
            // SAFETY: index entries name buckets below `n`.
            let b = unsafe { &mut *self.buckets.add(*e as usize - 1) };
            if b.hash == h && b.charged == charged && b.stack() == stk {
                b.allocs += 1;
                b.alloc_bytes += size as u64;
                return *e;
            }
            slot = (slot + 1) & (INDEX_SLOTS - 1);
        }
    }

    /// Counts the free of a sampled object of `size` requested bytes, of bucket `id` (a
    /// number [`Table::record_alloc`] returned).
    pub fn record_free(&mut self, id: u32, size: usize) {
        if id == 0 || id as usize > self.n {
            return;
        }
        // SAFETY: `id - 1 < n`: a bucket in use.
        let b = unsafe { &mut *self.buckets.add(id as usize - 1) };
        b.frees += 1;
        b.free_bytes += size as u64;
    }

    /// The stack of bucket `id` (a number [`Table::record_alloc`] returned), copied into
    /// `out`: its frame count, or `None` for an unknown `id`.
    pub fn stack_of(&self, id: u32, out: &mut [usize; MAX_STACK]) -> Option<usize> {
        if id == 0 || id as usize > self.n {
            return None;
        }
        // SAFETY: `id - 1 < n`: a bucket in use.
        let b = unsafe { &*self.buckets.add(id as usize - 1) };
        out[..b.nstk].copy_from_slice(b.stack());
        Some(b.nstk)
    }

    /// Buckets in use.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies the buckets into `out`, as many as its spare capacity holds (it does not
    /// grow: the caller reserved room before taking the lock, so nothing allocates under
    /// it).
    pub fn copy_into(&self, out: &mut Vec<Bucket>) {
        let k = self.n.min(out.capacity() - out.len());
        for i in 0..k {
            // SAFETY: `i < n`: a bucket in use.
            out.push(unsafe { *self.buckets.add(i) });
        }
    }
}
