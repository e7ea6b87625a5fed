//! The generated size-class tables: reproducible, equal to Go 1.19's, and correct for
//! the lookups built on them.

#[path = "../examples/mksizeclasses.rs"]
mod mksizeclasses;

use gomalloc::sizeclass::{PAGE_SHIFT, PAGE_SIZE, SizeClass, obj_index, size_to_class};
use gomalloc::sizeclasses::{
    CLASS_TO_ALLOCNPAGES, CLASS_TO_DIVMAGIC, CLASS_TO_SIZE, MAX_SMALL_SIZE, NUM_SIZE_CLASSES,
};

/// The committed generated file.
const COMMITTED: &str = include_str!("../src/sizeclasses.rs");

/// Go 1.19's table (`runtime/sizeclasses.go`'s comment), one row per class from 1 on.
const GO_TABLE: &str = include_str!("data/go-sizeclasses.tsv");

/// All real size classes (1..NUM_SIZE_CLASSES).
fn classes() -> impl Iterator<Item = SizeClass> {
    (1..NUM_SIZE_CLASSES).map(|c| SizeClass(u8::try_from(c).unwrap()))
}

#[test]
fn generator_reproduces_committed_file() {
    let generated = mksizeclasses::generate();
    assert!(
        generated == COMMITTED,
        "src/sizeclasses.rs is stale: regenerate it with \
         `cargo run -q -p gomalloc --example mksizeclasses > alloc-core/src/sizeclasses.rs`"
    );
}

#[test]
fn table_matches_go_1_19() {
    let mut go_rows = GO_TABLE.lines();
    assert_eq!(
        go_rows.next().unwrap().split('\t').collect::<Vec<_>>(),
        [
            "class",
            "bytes_per_obj",
            "bytes_per_span",
            "objects",
            "tail_waste",
            "max_waste",
            "min_align"
        ]
    );
    let go_rows: Vec<Vec<&str>> = go_rows.map(|l| l.split('\t').collect()).collect();
    assert_eq!(go_rows.len(), NUM_SIZE_CLASSES - 1);

    // The human-readable table in the generated file's header, as printed.
    let printed: Vec<Vec<&str>> = COMMITTED
        .lines()
        .skip_while(|l| !l.starts_with("//! class  bytes/obj"))
        .skip(1)
        .take_while(|l| *l != "//!")
        .map(|l| l.trim_start_matches("//!").split_whitespace().collect())
        .collect();
    assert_eq!(printed.len(), NUM_SIZE_CLASSES - 1);

    assert_eq!(CLASS_TO_SIZE[0], 0);
    assert_eq!(CLASS_TO_ALLOCNPAGES[0], 0);
    assert_eq!(CLASS_TO_DIVMAGIC[0], 0);

    for ((class, go_row), printed) in classes().zip(&go_rows).zip(&printed) {
        // Every column printed the same way (max waste included: "87.50%")...
        assert_eq!(printed, go_row, "{class:?}: printed row");

        // ... and the numbers agree with the tables the crate uses.
        let numbers: Vec<usize> = go_row
            .iter()
            .filter(|f| !f.ends_with('%'))
            .map(|f| f.parse().unwrap())
            .collect();
        let [index, size, span, objects, tail, align] = numbers[..] else {
            panic!("bad row {go_row:?}");
        };
        assert_eq!(usize::from(class.0), index);
        assert_eq!(class.size(), size, "{class:?}: bytes/obj");
        assert_eq!(class.go_npages() * PAGE_SIZE, span, "{class:?}: bytes/span");
        assert_eq!(
            class.go_npages() * PAGE_SIZE / size,
            objects,
            "{class:?}: objects"
        );
        assert_eq!(span - objects * size, tail, "{class:?}: tail waste");
        let min_align = 1 << class.size().trailing_zeros().min(PAGE_SHIFT as u32);
        assert_eq!(min_align, align, "{class:?}: min align");
        assert_eq!(
            class.div_magic(),
            u32::MAX / size as u32 + 1,
            "{class:?}: magic"
        );
    }
}

/// The heap's spans are Go's, but for the one-page classes of `WIDE_MIN_SIZE` to
/// `WIDE_MAX_SIZE` bytes, which take the most pages (up to `WIDE_SPAN_PAGES`) that keep
/// them within one window; `nelems` follows the pages.
#[test]
fn spans_are_gos_but_the_widened_classes() {
    use gomalloc::sizeclass::{WIDE_MAX_SIZE, WIDE_MIN_SIZE, WIDE_SPAN_PAGES, WINDOW_SLOTS};
    let mut widened = 0;
    for class in classes() {
        let wide =
            class.go_npages() == 1 && (WIDE_MIN_SIZE..=WIDE_MAX_SIZE).contains(&class.size());
        widened += usize::from(wide);
        if wide {
            // Within one window, and one page more would not be.
            let most = usize::from(WIDE_SPAN_PAGES);
            assert!(class.npages() >= 2 && class.npages() <= most, "{class:?}");
            assert!(class.nelems() <= WINDOW_SLOTS, "{class:?}");
            assert!(
                class.npages() == most
                    || (class.npages() + 1) * PAGE_SIZE / class.size() > WINDOW_SLOTS,
                "{class:?}"
            );
        } else {
            assert_eq!(class.npages(), class.go_npages(), "{class:?}");
        }
        assert_eq!(
            class.nelems(),
            class.npages() * PAGE_SIZE / class.size(),
            "{class:?}"
        );
        // Go's bound on a span's tail waste (`mksizeclasses.go`): an eighth of the span.
        let span = class.npages() * PAGE_SIZE;
        assert!(
            span - class.nelems() * class.size() <= span / 8,
            "{class:?}"
        );
    }
    assert_eq!(widened, 21);
}

#[test]
fn size_to_class_is_smallest_fitting_class() {
    assert_eq!(size_to_class(0), SizeClass(0));
    let mut expected = classes();
    let mut class = expected.next().unwrap();
    for size in 1..=MAX_SMALL_SIZE {
        if class.size() < size {
            class = expected.next().unwrap();
        }
        assert!(class.size() >= size);
        assert_eq!(size_to_class(size), class, "size {size}");
    }
}

#[test]
fn obj_index_divides_exactly() {
    for class in classes() {
        let size = class.size();
        let magic = class.div_magic();
        for offset in 0..class.npages() * PAGE_SIZE {
            assert_eq!(
                obj_index(offset, magic),
                offset / size,
                "{class:?}: offset {offset}"
            );
        }
    }
}

#[test]
fn multiples_of_16_stay_16_aligned() {
    for size in (16..=MAX_SMALL_SIZE).step_by(16) {
        let class = size_to_class(size);
        assert_eq!(class.size() % 16, 0, "size {size} -> {class:?}");
    }
}

/// The fast paths' flattened table agrees with Go's two tables for every size and both
/// alignments it serves.
#[test]
fn flattened_table_matches_the_two_tables() {
    use gomalloc::sizeclass::{fast_class, size_to_class};
    for size in 0..=gomalloc::sizeclasses::MAX_SMALL_SIZE {
        let c8 = size_to_class(size).index();
        assert_eq!(fast_class(size, 8), Some(c8), "size {size}");
        assert_eq!(fast_class(size, 1), Some(c8), "size {size}");
        let c16 = size_to_class(size.next_multiple_of(16)).index();
        assert_eq!(fast_class(size, 16), Some(c16), "size {size}");
        assert!(size_to_class(size.next_multiple_of(16)).size() % 16 == 0 || size == 0);
    }
    assert_eq!(fast_class(32769, 8), None);
    assert_eq!(fast_class(64, 32), None);
}

/// C malloc's table gives, for every size, the class `alloc(size, align)` uses at the
/// alignment C promises: 16 from 16 bytes up, 8 below.
#[test]
fn malloc_table_matches_the_alignment_c_promises() {
    use gomalloc::sizeclass::{MALLOC_CLASS_BY_SIZE8, fast_class};
    for size in 0..=gomalloc::sizeclasses::MAX_SMALL_SIZE {
        let align = if size >= gomalloc::MALLOC_ALIGN {
            16
        } else {
            8
        };
        assert_eq!(
            Some(MALLOC_CLASS_BY_SIZE8[(size + 7) >> 3] as usize),
            fast_class(size, align),
            "size {size}"
        );
    }
    for size in [0usize, 1, 8, 9, 15, 16, 17, 24, 25, 33, 100, 1000, 32768] {
        let p = gomalloc::alloc_malloc(size);
        assert!(!p.is_null());
        let align = if size >= 16 { 16 } else { 8 };
        assert_eq!(p as usize % align, 0, "size {size}");
        // SAFETY: `p` is live.
        assert!(unsafe { gomalloc::usable_size(p) } >= size);
        // SAFETY: live block, freed once.
        unsafe { gomalloc::free(p) };
    }
}

/// `low32(off * div_magic) < div_magic` exactly when `off` is a multiple of the object
/// size, for every offset inside a span of every class: the free path's interior-pointer
/// test relies on it (no multiply back).
#[test]
fn div_magic_detects_exact_multiples() {
    use gomalloc::sizeclass::SizeClass;
    for c in 1..gomalloc::sizeclasses::NUM_SIZE_CLASSES as u8 {
        let class = SizeClass(c);
        let (e, magic) = (class.size() as u64, class.div_magic() as u64);
        for off in 0..class.nelems() as u64 * e {
            let prod = off * magic;
            assert_eq!(
                (prod as u32 as u64) < magic,
                off % e == 0,
                "class {c} off {off}"
            );
            assert_eq!(prod >> 32, off / e, "class {c} off {off}");
        }
    }
}
