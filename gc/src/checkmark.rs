//! Checkmark mode (`GOMALLOC_GCCHECKMARK=1`, Go's `GODEBUG=gccheckmark=1`,
//! `mcheckmark.go`): after each mark, with the world still stopped, mark again from the
//! roots into a separate table and end the process with a report if an object the second
//! mark reaches was left unmarked by the first (a lost grey object, a missed barrier, a
//! marker that stopped early).
//!
//! The re-mark runs in [`crate::collector::terminate`], after the barrier's shades are
//! drained and before weak references are cleared and finalizers queued (both act on what
//! the mark left white), on the same roots as the mark: precise roots, finalizer roots,
//! every thread's handle scopes and stack. It never touches the mark bitmaps: what it
//! reached is the key set of [`Checkmark::seen`], each with the object it was reached
//! from, so that the report can name a path from a root.
//!
//! One exception: an unmarked object named directly by a word of a thread's stack (or of
//! a blocking thread's stack copy) is not reported, only not followed. The stack is scanned
//! conservatively, so such a word may be a stale copy of a pointer to garbage, written
//! below the stack pointer before the cycle began and inside a live frame by the time the
//! re-mark reads it (the incremental test cycle scans the stack at its start only, as the
//! hybrid barrier lets a concurrent collector do). A stop-the-world mark scans the very
//! same stack words as the re-mark, so there every stack-named object is marked anyway.

use crate::mark::Tracer;
use crate::ptr::VTable;
use gomalloc::gcapi::{self, ObjectKind, ObjectRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// The mode is on (`GOMALLOC_GCCHECKMARK=1` at start-up, [`crate::debug::set_checkmark`]).
pub(crate) static CHECKMARK: AtomicBool = AtomicBool::new(false);

/// True when every mark is followed by the checking re-mark.
#[inline]
pub(crate) fn enabled() -> bool {
    CHECKMARK.load(Ordering::Relaxed)
}

/// The re-mark's state, owned by the tracer that runs it ([`Tracer::check`]).
pub(crate) struct Checkmark {
    /// Every object the re-mark reached (base address) -> the base of the object it was
    /// first reached from, 0 for a root.
    seen: HashMap<usize, usize>,
    /// For objects reached from a root: which root.
    root_of: HashMap<usize, &'static str>,
    /// The object being scanned now; 0 while roots are marked.
    pub(crate) parent: usize,
    /// The root being marked now (while `parent` is 0).
    root: &'static str,
    /// The root being marked is a conservatively scanned stack (see the module docs).
    stack_root: bool,
    /// Unmarked objects named only by stack words, not followed.
    stale: usize,
}

impl Checkmark {
    fn new() -> Checkmark {
        Checkmark {
            seen: HashMap::new(),
            root_of: HashMap::new(),
            parent: 0,
            root: "a root",
            stack_root: false,
            stale: 0,
        }
    }
}

impl Tracer {
    /// Names the roots marked next, for the checkmark report (nothing outside that mode).
    /// `stack`: they are conservatively scanned stack words.
    #[inline]
    pub(crate) fn check_root(&mut self, what: &'static str, stack: bool) {
        if let Some(c) = self.check.as_deref_mut() {
            c.root = what;
            c.stack_root = stack;
        }
    }

    /// The re-mark's step for a precise `Gc` at `addr` (from [`Tracer::mark_gc`]).
    pub(crate) fn check_gc(&mut self, addr: usize) {
        match gcapi::find_object(addr) {
            Some(o) => self.check_object(o),
            None => {
                let c = self.check.as_deref().expect("checkmark mode");
                report(
                    c,
                    format_args!(
                        "a Gc ({addr:#x}) reached by the re-mark names no allocated object"
                    ),
                    c.parent,
                )
            }
        }
    }

    /// The re-mark's step for an object (from [`Tracer::mark_object`]): record it, check
    /// that the mark marked it, queue it for scanning.
    pub(crate) fn check_object(&mut self, o: ObjectRef) {
        let c = self.check.as_deref_mut().expect("checkmark mode");
        if c.seen.contains_key(&o.base()) {
            return;
        }
        // SAFETY: `o` came from `find_object` while the world is stopped after the mark
        // and before the sweep: its span is neither swept nor freed.
        let marked = unsafe { gcapi::is_marked(o) };
        if !marked && c.parent == 0 && c.stack_root {
            c.stale += 1;
            return;
        }
        c.seen.insert(o.base(), c.parent);
        if c.parent == 0 {
            c.root_of.insert(o.base(), c.root);
        }
        if !marked {
            report(
                c,
                format_args!(
                    "object {:#x} ({}) is reachable but the mark left it unmarked",
                    o.base(),
                    describe(o.base())
                ),
                o.base(),
            );
        }
        if o.span().kind() == Some(ObjectKind::Scan) {
            self.push_grey(o.base());
        }
    }
}

/// Re-marks from the roots (`roots` greys them into the tracer it is given) and checks
/// every object reached; ends the process with a report on the first one the mark left
/// unmarked. Returns the objects reached. The world is stopped; no sweep runs.
pub(crate) fn verify(roots: impl FnOnce(&mut Tracer)) -> usize {
    let mut t = Tracer::new();
    t.check = Some(Box::new(Checkmark::new()));
    roots(&mut t);
    while let Some(base) = t.pop_grey() {
        t.check.as_deref_mut().expect("checkmark mode").parent = base;
        // SAFETY: only allocated scan objects are queued (`check_object`), and nothing is
        // swept or freed while the world is stopped after the mark.
        unsafe { crate::mark::scan_object(base, &mut t) };
    }
    let c = t.check.take().expect("checkmark mode");
    c.seen.len()
}

/// The type and slot size of the allocated object at `base`.
fn describe(base: usize) -> String {
    let Some(o) = gcapi::find_object(base) else {
        return "not an allocated object".into();
    };
    let s = o.span();
    let size = s.object_size();
    if s.kind() == Some(ObjectKind::Noscan) {
        return format!("a pointer-free object without a header, {size}-byte slot");
    }
    // SAFETY: objects of scan and noscan-with-drop spans start with their type's vtable
    // (`ptr::Layout`), written when the object was allocated; it is allocated now.
    let name = unsafe { ((*(base as *const &'static VTable)).name)() };
    format!("`{name}`, {size}-byte slot")
}

/// Ends the process: `what`, then the path from a root to `last` (an object of `c.seen`,
/// or 0 for none).
#[cold]
fn report(c: &Checkmark, what: std::fmt::Arguments<'_>, last: usize) -> ! {
    let mut path = Vec::new();
    let mut p = last;
    while p != 0 {
        path.push(p);
        p = c.seen.get(&p).copied().unwrap_or(0);
    }
    path.reverse();
    let root = path
        .first()
        .and_then(|b| c.root_of.get(b))
        .copied()
        .unwrap_or(c.root);
    let mut msg = format!("gc: checkmark: {what}\ngc: checkmark: path from a root: {root}");
    const SHOWN: usize = 10;
    for (i, &b) in path.iter().enumerate() {
        if path.len() > 2 * SHOWN && i == SHOWN {
            msg.push_str(&format!(
                "\n    ... {} more objects ...",
                path.len() - 2 * SHOWN
            ));
        }
        if path.len() > 2 * SHOWN && i >= SHOWN && i < path.len() - SHOWN {
            continue;
        }
        msg.push_str(&format!("\n    -> {b:#x} ({})", describe(b)));
    }
    eprintln!("{msg}");
    crate::collector::fatal(format_args!(
        "checkmark found a reachable object the mark missed ({} objects re-marked, {} stale stack words skipped)",
        c.seen.len(),
        c.stale
    ));
}
