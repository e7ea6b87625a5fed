//! loom models of the heap's lock-free structures. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gomalloc --test loom --release`.
#![cfg(loom)]

use gomalloc::lock::SpinLock;
use gomalloc::remote::{IntrusiveStack, Linked, Push, RemoteFrees};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use loom::thread;

/// A span's remote frees: the flag word and a two-word remote-free bitmap (128 slots).
struct Remote {
    frees: RemoteFrees,
    bits: [AtomicU64; 2],
}

impl Remote {
    fn new() -> Arc<Self> {
        Arc::new(Remote {
            frees: RemoteFrees::new(),
            bits: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// A remote free of slot `idx`.
    fn free(&self, idx: usize) -> Push {
        // SAFETY: `idx < 128`, inside the bitmap.
        unsafe { self.frees.push(self.bits.as_ptr(), idx) }
    }

    /// The consumer's collection: the slots taken, appended to `out`.
    fn collect(&self, out: &mut Vec<usize>) {
        // SAFETY: the bitmap has two words.
        unsafe {
            self.frees.take(self.bits.as_ptr(), 2, |i, mut x| {
                while x != 0 {
                    out.push(i * 64 + x.trailing_zeros() as usize);
                    x &= x - 1;
                }
            })
        };
    }

    /// True if the bitmap holds no bit (only meaningful once no free is in flight).
    fn bits_clear(&self) -> bool {
        self.bits.iter().all(|w| w.load(Ordering::Relaxed) == 0)
    }
}

/// Two threads free `slots` while the owner collects: each slot is taken exactly once, and
/// one taken later is announced (its flag up) when the frees end.
fn two_frees_race_a_collection(slots: [usize; 2]) {
    loom::model(move || {
        let r = Remote::new();
        let producers: Vec<_> = slots
            .iter()
            .map(|&idx| {
                let r = r.clone();
                thread::spawn(move || r.free(idx))
            })
            .collect();
        let mut got = Vec::new();
        r.collect(&mut got); // the owner collects while frees arrive
        for p in producers {
            assert_eq!(p.join().unwrap(), Push::Done, "nobody parked the span");
        }
        r.collect(&mut got);
        got.sort();
        assert_eq!(got, slots.to_vec());
        assert!(r.bits_clear() && r.frees.is_empty());
    });
}

#[test]
fn remote_frees_from_two_threads_are_each_collected_once() {
    two_frees_race_a_collection([5, 100]); // two words
}

#[test]
fn frees_into_one_word_are_each_collected_once() {
    two_frees_race_a_collection([1, 2]); // one word, swapped while set
}

#[test]
fn a_free_racing_a_collection_stays_announced() {
    // The flag is up (an earlier free) when the owner lowers it to collect while another
    // free sets its bit: the free must not trust the flag it saw before the owner lowered
    // it unless the owner's scan then sees its bit (the Dekker pair of `RemoteFrees`).
    loom::model(|| {
        let r = Remote::new();
        assert_eq!(r.free(5), Push::Done);
        let producer = {
            let r = r.clone();
            thread::spawn(move || r.free(100))
        };
        let mut got = Vec::new();
        r.collect(&mut got);
        producer.join().unwrap();
        r.collect(&mut got);
        got.sort();
        assert_eq!(got, vec![5, 100], "a remote free was lost");
        assert!(r.bits_clear());
    });
}

#[test]
fn parking_a_full_span_never_loses_the_wake_up() {
    // The owner parks the span while another thread frees into it: either the park fails
    // and the owner takes the object, or the park succeeds and the freeing thread is told
    // to hand the span to its mcentral. Never both, never neither: a bit set just before
    // the park is announced by its free, which then finds the span parked.
    loom::model(|| {
        let r = Remote::new();
        let freer = {
            let r = r.clone();
            thread::spawn(move || r.free(7))
        };
        let mut taken = Vec::new();
        let parked = loop {
            if r.frees.try_park() {
                break true;
            }
            r.collect(&mut taken);
            if !taken.is_empty() {
                break false;
            }
        };
        let pushed = freer.join().unwrap();
        if parked {
            assert_eq!(pushed, Push::Woke, "a free into a parked span must wake it");
            // What the mcentral does with a woken span (and the owner with a parked one
            // it unparks): take the frees.
            if !r.frees.try_unpark() {
                r.collect(&mut taken);
            }
        } else {
            assert_eq!(pushed, Push::Done);
        }
        assert_eq!(taken, vec![7]);
        assert!(r.bits_clear());
    });
}

#[test]
fn taking_a_parked_span_races_a_remote_free_safely() {
    // A refill unparks a listed span while another thread frees into it. Exactly one wins:
    // either the unpark succeeds (the refill owns the span and the free's bit waits for
    // it, announced), or the free clears the flag first and must notify, and the unpark
    // fails (the span stays for the mcentral's pending handling).
    loom::model(|| {
        let r = Remote::new();
        assert!(r.frees.try_park());
        let freer = {
            let r = r.clone();
            thread::spawn(move || r.free(64))
        };
        let unparked = r.frees.try_unpark();
        let notified = freer.join().unwrap() == Push::Woke;
        assert_ne!(unparked, notified, "exactly one side may own the span");
        assert!(!r.frees.is_parked());
        let mut taken = Vec::new();
        r.collect(&mut taken);
        assert_eq!(taken, vec![64]);
    });
}

#[test]
fn a_second_free_of_a_slot_is_reported() {
    // Two threads free the same slot (a double free): exactly one is told so.
    loom::model(|| {
        let r = Remote::new();
        let other = {
            let r = r.clone();
            thread::spawn(move || r.free(9))
        };
        let mine = r.free(9);
        let theirs = other.join().unwrap();
        let twice = [mine, theirs].iter().filter(|&&p| p == Push::Twice).count();
        assert_eq!(twice, 1);
    });
}

struct Node {
    next: AtomicPtr<Node>,
    id: usize,
}

impl Linked for Node {
    fn link(&self) -> &AtomicPtr<Node> {
        &self.next
    }
}

#[test]
fn pending_stack_hands_every_span_over_once() {
    loom::model(|| {
        let stack = Arc::new(IntrusiveStack::<Node>::new());
        let pushers: Vec<_> = (0..2)
            .map(|id| {
                let s = stack.clone();
                thread::spawn(move || {
                    let n = Box::into_raw(Box::new(Node {
                        next: AtomicPtr::new(std::ptr::null_mut()),
                        id,
                    }));
                    // SAFETY: a fresh node, pushed once.
                    unsafe { s.push(n) };
                })
            })
            .collect();
        let mut ids = Vec::new();
        let take = |ids: &mut Vec<usize>| {
            let mut p = stack.take_all();
            while !p.is_null() {
                // SAFETY: taken nodes are ours; freed after reading the link.
                let b = unsafe { Box::from_raw(p) };
                ids.push(b.id);
                p = b.next.load(Ordering::Relaxed);
            }
        };
        take(&mut ids);
        for p in pushers {
            p.join().unwrap();
        }
        take(&mut ids);
        ids.sort();
        assert_eq!(ids, vec![0, 1]);
    });
}

#[test]
fn spin_lock_excludes() {
    loom::model(|| {
        let lock = Arc::new(SpinLock::new(0u32));
        let inside = Arc::new(AtomicBool::new(false));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                thread::spawn(move || {
                    let mut g = lock.lock();
                    assert!(!inside.swap(true, Ordering::Relaxed), "two holders");
                    *g += 1;
                    inside.store(false, Ordering::Relaxed);
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 2);
    });
}

#[test]
fn a_wake_racing_a_leaving_thread_is_never_lost() {
    // The scavenger decides to leave while a free asks for it: either the thread stays
    // (it saw the request) or the waker starts a new one (it saw the thread leave); never
    // a thread gone and a request that nobody serves.
    use gomalloc::wakeup::Wakeup;
    loom::model(|| {
        let w = Arc::new(Wakeup::new());
        assert!(w.wake());
        w.starting();
        assert!(w.take_request());
        let waker = {
            let w = w.clone();
            thread::spawn(move || w.wake())
        };
        let left = w.try_leave();
        let started = waker.join().unwrap();
        assert!(started || !left, "the thread left and the request was lost");
        assert!(
            !(started && !left),
            "a second thread while the first runs on"
        );
    });
}

#[test]
fn two_wakers_start_one_thread() {
    use gomalloc::wakeup::Wakeup;
    loom::model(|| {
        let w = Arc::new(Wakeup::new());
        let other = {
            let w = w.clone();
            thread::spawn(move || w.wake())
        };
        let mine = w.wake();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one waker starts the thread");
    });
}
