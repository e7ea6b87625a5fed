//! Reachability, cycles, weak references, finalizers, large and tiny objects.
// These tests keep `Gc`s in locals: they need the conservative stack scan.
#![cfg(not(feature = "precise"))]

#[path = "common/serial.rs"]
mod serial;

use gc::{Gc, Lock, RefLock, Root, Trace, Weak};
use serial::alone;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Trace)]
struct Node {
    id: u64,
    next: Lock<Option<Gc<Node>>>,
    kids: RefLock<Vec<Gc<Node>>>,
}

fn node(m: &gc::Mutator, id: u64) -> Gc<Node> {
    Gc::new(
        m,
        Node {
            id,
            next: Lock::new(None),
            kids: RefLock::new(Vec::new()),
        },
    )
}

#[inline(never)]
fn make_cycle(m: &gc::Mutator) -> (Weak<Node>, Weak<Node>) {
    let a = node(m, 1);
    let b = node(m, 2);
    a.next.set(m, Some(b));
    b.next.set(m, Some(a));
    (Weak::new(m, a), Weak::new(m, b))
}

/// Collects after wiping stale stack words (conservative scanning would otherwise keep
/// objects that a returned call left behind).
#[inline(never)]
fn collect_clean() {
    gc::debug::clear_stack(64 << 10);
    gc::collect();
}

#[test]
fn cycles_are_collected() {
    alone(|| {
        let m = gc::attach();
        let (wa, wb) = make_cycle(&m);
        assert!(!wa.is_cleared() && !wb.is_cleared());
        collect_clean();
        assert!(wa.upgrade(&m).is_none(), "unreachable cycle survived");
        assert!(wb.upgrade(&m).is_none());
    });
}

/// Builds a list of `n` nodes, each with two children, and returns its head.
#[inline(never)]
fn build_list(m: &gc::Mutator, n: u64) -> Gc<Node> {
    let head = node(m, 0);
    let mut cur = head;
    for i in 1..n {
        let nx = node(m, i);
        {
            let mut k = cur.kids.borrow_mut(m);
            k.push(node(m, 1_000_000 + i));
            k.push(node(m, 2_000_000 + i));
        }
        cur.next.set(m, Some(nx));
        cur = nx;
    }
    head
}

fn check_list(head: Gc<Node>, n: u64) {
    let mut cur = Some(head);
    let mut i = 0;
    while let Some(c) = cur {
        assert_eq!(c.id, i, "node {i} corrupted (freed while reachable?)");
        let k = c.kids.borrow();
        if c.next.get().is_some() {
            assert_eq!(k.len(), 2);
            assert_eq!(k[0].id, 1_000_000 + i + 1);
            assert_eq!(k[1].id, 2_000_000 + i + 1);
        }
        cur = c.next.get();
        i += 1;
    }
    assert_eq!(i, n);
}

#[inline(never)]
fn garbage(m: &gc::Mutator, n: usize) -> u64 {
    let mut s = 0;
    for i in 0..n {
        let g = node(m, i as u64);
        s += g.id;
    }
    s
}

#[test]
fn reachable_objects_survive_many_cycles() {
    alone(|| {
        let m = gc::attach();
        let head = build_list(&m, 5_000);
        for _ in 0..5 {
            assert!(garbage(&m, 50_000) > 0);
            collect_clean();
            check_list(head, 5_000);
        }
        // A second list reachable only through a precise root held in malloc memory.
        #[inline(never)]
        fn rooted_list(m: &gc::Mutator) -> Box<Root<Node>> {
            Box::new(Root::new(build_list(m, 2_000)))
        }
        let r = rooted_list(&m);
        for _ in 0..3 {
            garbage(&m, 20_000);
            collect_clean();
            check_list(r.get(), 2_000);
        }
        check_list(head, 5_000);
    });
}

#[test]
fn roots_keep_objects_alive_and_release_them() {
    alone(|| {
        let m = gc::attach();
        #[inline(never)]
        fn rooted(m: &gc::Mutator) -> (Box<Root<Node>>, Weak<Node>) {
            let n = node(m, 77);
            (Box::new(Root::new(n)), Weak::new(m, n))
        }
        #[inline(never)]
        fn check(m: &gc::Mutator, root: &Root<Node>, weak: Weak<Node>) {
            assert_eq!(weak.upgrade(m).map(|n| n.id), Some(77));
            assert_eq!(root.id, 77);
        }
        // The Root lives in a Box: no copy of the pointer stays on this stack when it drops.
        let (root, weak) = rooted(&m);
        collect_clean();
        check(&m, &root, weak);
        drop(root);
        collect_clean();
        assert!(weak.upgrade(&m).is_none());
    });
}

#[derive(Trace)]
struct Big {
    data: Vec<u8>,
    payload: [u64; 8192],
    next: Option<Gc<Big>>,
}

#[test]
fn large_objects_live_and_die() {
    alone(|| {
        let m = gc::attach();
        #[inline(never)]
        fn make(m: &gc::Mutator) -> (Box<Root<Big>>, Weak<Big>) {
            let a = Gc::new(
                m,
                Big {
                    data: vec![7; 100],
                    payload: [3; 8192],
                    next: None,
                },
            );
            let b = Gc::new(
                m,
                Big {
                    data: vec![9; 10],
                    payload: [5; 8192],
                    next: Some(a),
                },
            );
            (Box::new(Root::new(b)), Weak::new(m, a))
        }
        #[inline(never)]
        fn check(m: &gc::Mutator, b: &Root<Big>, wa: Weak<Big>) {
            let a = wa.upgrade(m).expect("reachable large object freed");
            assert!(a.payload.iter().all(|&x| x == 3) && a.data == vec![7; 100]);
            assert!(b.payload.iter().all(|&x| x == 5));
            assert!(Gc::ptr_eq(b.next.unwrap(), a));
        }
        let (b, wa) = make(&m);
        collect_clean();
        check(&m, &b, wa);
        drop(b);
        collect_clean();
        assert!(wa.upgrade(&m).is_none());
    });
}

static FINALIZED: AtomicUsize = AtomicUsize::new(0);
static RESURRECTED: std::sync::Mutex<Option<Root<Node>>> = std::sync::Mutex::new(None);

fn fin_count(_: &gc::Mutator, n: Gc<Node>) {
    assert_eq!(n.id, 5);
    FINALIZED.fetch_add(1, Ordering::SeqCst);
}

fn fin_resurrect(_: &gc::Mutator, n: Gc<Node>) {
    // The object and what it references are intact when the finalizer runs.
    assert_eq!(n.id, 6);
    assert_eq!(n.next.get().map(|c| c.id), Some(60));
    *RESURRECTED.lock().unwrap() = Some(Root::new(n));
}

#[test]
fn finalizers_run_once_and_resurrection_is_safe() {
    alone(|| {
        let mut m = gc::attach();
        #[inline(never)]
        fn arm(m: &gc::Mutator) -> Weak<Node> {
            let n = node(m, 5);
            gc::set_finalizer(m, n, fin_count);
            Weak::new(m, n)
        }
        let w = arm(&m);
        collect_clean();
        m.run_finalizers();
        assert_eq!(FINALIZED.load(Ordering::SeqCst), 1);
        assert!(
            w.upgrade(&m).is_none(),
            "weak cleared when the object became unreachable"
        );
        collect_clean();
        m.run_finalizers();
        assert_eq!(FINALIZED.load(Ordering::SeqCst), 1, "finalizer ran twice");

        #[inline(never)]
        fn arm2(m: &gc::Mutator) -> Weak<Node> {
            let n = node(m, 6);
            let child = node(m, 60);
            n.next.set(m, Some(child));
            gc::set_finalizer(m, n, fin_resurrect);
            Weak::new(m, child)
        }
        let wchild = arm2(&m);
        collect_clean();
        m.run_finalizers();
        // Resurrected: the object and its child stay usable across further cycles.
        for _ in 0..3 {
            garbage(&m, 10_000);
            collect_clean();
            let r = RESURRECTED.lock().unwrap();
            let n = r.as_ref().expect("finalizer ran");
            assert_eq!(n.id, 6);
            assert_eq!(n.next.get().unwrap().id, 60);
        }
        assert!(wchild.upgrade(&m).is_some());
        // Dropping the resurrected root frees it for good, without running the finalizer again.
        *RESURRECTED.lock().unwrap() = None;
        collect_clean();
        m.run_finalizers();
        // A finalizer that ran a second time would have resurrected the object again. (Whether
        // the object is gone is not asserted here: conservative stack scanning may still find a
        // stale copy of its address in this frame, which keeps it, correctly, alive.)
        assert!(
            RESURRECTED.lock().unwrap().is_none(),
            "the finalizer ran twice"
        );
    });
}

/// Packing and keeping: one live object keeps its whole block. That the block is freed
/// once all its objects are dead is checked by `tests/runtime.rs` (which needs no other
/// test allocating tiny objects meanwhile).
#[test]
fn tiny_objects_share_blocks_and_keep_each_other_alive() {
    alone(|| {
        let m = gc::attach();
        #[inline(never)]
        fn tiny(m: &gc::Mutator) -> (Gc<u32>, Gc<u32>, Gc<u64>, Weak<u64>) {
            let a = Gc::new(m, 0xAAAA_AAAAu32);
            let b = Gc::new(m, 0xBBBB_BBBBu32);
            let c = Gc::new(m, 0xCCCC_CCCC_CCCC_CCCCu64);
            (a, b, c, Weak::new(m, c))
        }
        // Other tests of this binary collect meanwhile, and a collection that stops this
        // thread between two allocations drops its tiny block: try again until none did.
        let (a, b, c, wc) = loop {
            let cycles = gc::stats().cycles;
            let t = tiny(&m);
            if gc::stats().cycles == cycles {
                break t;
            }
        };
        // Three objects of 4+4+8 bytes fill one 16-byte block.
        let (pa, pb, pc) = (
            Gc::as_ptr(a) as usize,
            Gc::as_ptr(b) as usize,
            Gc::as_ptr(c) as usize,
        );
        assert_eq!(pa / 16, pb / 16, "a and b share a tiny block");
        assert_eq!(pa / 16, pc / 16, "c shares it too");
        assert_eq!((pb - pa, pc - pa), (4, 8));
        // Only `a` stays on the stack: the whole block (and so `c`) stays alive.
        let _ = (b, c);
        collect_clean();
        assert_eq!(*a, 0xAAAA_AAAA);
        let c2 = wc.upgrade(&m).expect("c shares a live block");
        assert_eq!(*c2, 0xCCCC_CCCC_CCCC_CCCC);
    });
}

#[test]
fn noscan_objects_with_destructors_are_dropped() {
    alone(|| {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Counted(#[allow(dead_code)] String);
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: holds no GC pointer; its destructor touches none.
        unsafe impl Trace for Counted {
            const NEEDS_TRACE: bool = false;
            fn trace(&self, _: &mut gc::Tracer) {}
        }
        let m = gc::attach();
        #[inline(never)]
        fn make(m: &gc::Mutator) {
            for i in 0..1000 {
                Gc::new(m, Counted(format!("value {i}")));
            }
        }
        let freed0 = gc::stats().objects_freed;
        make(&m);
        // One collection is enough: like Go's `runtime.GC`, `gc::collect()` finishes sweeping
        // (destructors run, `objects_freed` counted) before it returns.
        collect_clean();
        assert!(
            DROPS.load(Ordering::SeqCst) >= 990,
            "{}",
            DROPS.load(Ordering::SeqCst)
        );
        assert!(gc::stats().objects_freed - freed0 >= 990);
    });
}

#[test]
fn pacer_settings() {
    alone(|| {
        let old_pct = gc::set_gc_percent(50);
        assert_eq!(gc::stats().gc_percent, 50);
        assert!(
            gc::stats().heap_goal >= gc::MIN_HEAP / 2,
            "minimum heap x GOGC/100"
        );
        assert_eq!(gc::set_gc_percent(old_pct), 50);
        let old_limit = gc::set_memory_limit(1 << 40);
        assert_eq!(gc::stats().memory_limit, 1 << 40);
        assert_eq!(gc::set_memory_limit(old_limit), 1 << 40);
    });
}

/// A zero-sized value with drop glue lives inside its object (after the header word), not
/// one past its end: a rooted one is not dropped by the sweep, and its `Gc` does not name
/// (and keep) the slot that follows.
#[test]
fn zero_sized_values_with_destructors_live_in_their_object() {
    alone(|| {
        static ZDROPS: AtomicUsize = AtomicUsize::new(0);
        struct Z;
        impl Drop for Z {
            fn drop(&mut self) {
                ZDROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: holds no GC pointer; its destructor touches none.
        unsafe impl Trace for Z {
            const NEEDS_TRACE: bool = false;
            fn trace(&self, _: &mut gc::Tracer) {}
        }
        let m = gc::attach();
        let z = Root::new(Gc::new(&m, Z));
        collect_clean();
        assert_eq!(ZDROPS.load(Ordering::SeqCst), 0, "a rooted ZST was dropped");
        let p = Gc::as_ptr(z.get()) as usize;
        let o = gomalloc::gcapi::find_object(p).expect("a ZST's Gc names no allocated object");
        assert!(o.base() < p, "the value is not after the object's header");
        drop(z);
    });
}

/// A buffer in the malloc heap owned by a GC object, read through a `&[u8]` while
/// collections run: `gc::keep_alive` after the last read keeps the owner (so the buffer)
/// alive, though the owner's `Gc` itself is not used in between and the optimiser may drop
/// it from registers.
#[test]
fn keep_alive_keeps_a_borrowed_buffer_valid() {
    alone(|| {
        static OWNER_DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Owner {
            buf: Vec<u8>,
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.buf.fill(0);
                OWNER_DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: holds no GC pointer; its destructor touches none.
        unsafe impl Trace for Owner {
            const NEEDS_TRACE: bool = false;
            fn trace(&self, _: &mut gc::Tracer) {}
        }
        let m = gc::attach();
        let owner = Gc::new(
            &m,
            Owner {
                buf: vec![0xa5; 1 << 16],
            },
        );
        let bytes: &[u8] = &owner.buf;
        let mut sum = 0u64;
        for _ in 0..3 {
            garbage(&m, 10_000);
            collect_clean();
            sum += bytes.iter().map(|&b| b as u64).sum::<u64>();
        }
        assert_eq!(OWNER_DROPS.load(Ordering::SeqCst), 0, "the owner was freed");
        assert_eq!(
            sum,
            3 * 0xa5 * (1 << 16),
            "the buffer changed under its borrow"
        );
        gc::keep_alive(owner);
    });
}
