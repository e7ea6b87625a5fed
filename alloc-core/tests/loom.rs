//! loom models of the heap's lock-free structures. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gomalloc --test loom --release`.
#![cfg(loom)]

use gomalloc::lock::SpinLock;
use gomalloc::remote::{chain_next, IntrusiveStack, Linked, RemoteFreeList};
use loom::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A fake dead object: 16 bytes whose first word the list uses as its link.
fn object() -> usize {
    Box::into_raw(Box::new([0usize; 2])) as usize
}

fn drain(l: &RemoteFreeList, out: &mut Vec<usize>) {
    let mut p = l.take_all();
    while !p.is_null() {
        out.push(p as usize);
        // SAFETY: `p` is in the chain just taken.
        p = unsafe { chain_next(p) };
    }
}

#[test]
fn remote_frees_from_two_threads_are_each_collected_once() {
    loom::model(|| {
        let list = Arc::new(RemoteFreeList::new());
        let objs = [object(), object()];
        let producers: Vec<_> = objs
            .iter()
            .map(|&o| {
                let l = list.clone();
                // SAFETY: each object is pushed once by its thread.
                thread::spawn(move || unsafe { l.push(o as *mut u8) })
            })
            .collect();
        let mut got = Vec::new();
        drain(&list, &mut got); // the owner collects while frees arrive
        for p in producers {
            assert!(!p.join().unwrap(), "nobody parked the list");
        }
        drain(&list, &mut got);
        got.sort();
        let mut want = objs.to_vec();
        want.sort();
        assert_eq!(got, want);
    });
}

#[test]
fn parking_a_full_span_never_loses_the_wake_up() {
    // The owner parks the span while another thread frees into it: either the park fails
    // and the owner takes the object, or the park succeeds and the freeing thread is told
    // to hand the span to its mcentral. Never both, never neither.
    loom::model(|| {
        let list = Arc::new(RemoteFreeList::new());
        let o = object();
        let l = list.clone();
        // SAFETY: the object is pushed once.
        let freer = thread::spawn(move || unsafe { l.push(o as *mut u8) });
        let mut taken = Vec::new();
        let parked = loop {
            if list.try_park() {
                break true;
            }
            drain(&list, &mut taken);
            if !taken.is_empty() {
                break false;
            }
        };
        let notified = freer.join().unwrap();
        if parked {
            assert!(notified, "a free into a parked span must wake it");
            drain(&list, &mut taken); // what the mcentral would do
        } else {
            assert!(!notified);
        }
        assert_eq!(taken, vec![o]);
        assert!(list.is_empty() && !list.is_parked());
    });
}

#[test]
fn taking_a_parked_span_races_a_remote_free_safely() {
    // A refill unparks a listed span while another thread frees into it. Exactly one wins:
    // either the unpark succeeds (the refill owns the span and the free lands in its list
    // without a notification), or the free clears the flag first and must notify, and the
    // unpark fails (the span stays for the mcentral's pending handling).
    loom::model(|| {
        let list = Arc::new(RemoteFreeList::new());
        assert!(list.try_park());
        let o = object();
        let l = list.clone();
        // SAFETY: the object is pushed once.
        let freer = thread::spawn(move || unsafe { l.push(o as *mut u8) });
        let unparked = list.try_unpark();
        let notified = freer.join().unwrap();
        assert_ne!(unparked, notified, "exactly one side may own the span");
        assert!(!list.is_parked());
        let mut taken = Vec::new();
        drain(&list, &mut taken);
        assert_eq!(taken, vec![o]);
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
