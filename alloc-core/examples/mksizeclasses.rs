//! Generates `src/sizeclasses.rs`, the size-class tables of the small-object heap.
//!
//! A port of Go 1.19's `src/runtime/mksizeclasses.go`: it *computes* the classes rather
//! than copying them, and checks its result the way Go does. Run it with
//!
//! ```text
//! cargo run -q -p gomalloc --example mksizeclasses > alloc-core/src/sizeclasses.rs
//! ```
//!
//! The size classes are chosen so that rounding an allocation request up to the next
//! size class wastes at most 12.5% (1.125x).
//!
//! Each size class has its own page count that gets allocated and chopped up when new
//! objects of the size class are needed. That page count is chosen so that chopping up
//! the run of pages into objects of the given size wastes at most 12.5% (1.125x) of the
//! memory. It is not necessary that the cutoff here be the same as above.
//!
//! The two sources of waste multiply, so the worst possible case for the above
//! constraints would be that allocations of some size might have a 26.6% (1.266x)
//! overhead. In practice, only one of the wastes comes into play for a given size (sizes
//! < 512 waste mainly on the round-up, sizes > 512 waste mainly on the page chopping).
//! For really small sizes, alignment constraints force the overhead higher.
//!
//! The output is exactly what `rustfmt` leaves (checked by `tests/sizeclasses.rs`, which
//! also compares it byte for byte with the committed file).

use std::fmt::Write as _;

// Constants that we use and will transfer to the runtime.
const MAX_SMALL_SIZE: usize = 32 << 10;
const SMALL_SIZE_DIV: usize = 8;
const SMALL_SIZE_MAX: usize = 1024;
const LARGE_SIZE_DIV: usize = 128;
const PAGE_SHIFT: usize = 13;

// Derived constants.
const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// The number of size classes Go 1.19 has, class 0 included.
const NUM_SIZE_CLASSES: usize = 68;

/// `rustfmt`'s default `max_width`, used to lay out the number arrays as it would.
const MAX_WIDTH: usize = 100;

/// One size class.
#[derive(Clone, Copy, Default, Debug)]
struct Class {
    /// Max size (bytes per object).
    size: usize,
    /// Number of pages per span.
    npages: usize,
}

fn power_of_two(x: usize) -> bool {
    x.is_power_of_two()
}

/// Computes the size classes, class 0 (a dummy entry for large objects) first.
///
/// # Panics
///
/// If the result is not Go 1.19's 68 classes or fails one of the self-checks.
fn make_classes() -> Vec<Class> {
    let mut classes = vec![Class::default()]; // class #0 is a dummy entry

    let mut align = 8;
    let mut size = align;
    while size <= MAX_SMALL_SIZE {
        if power_of_two(size) {
            // bump alignment once in a while
            if size >= 2048 {
                align = 256;
            } else if size >= 128 {
                align = size / 8;
            } else if size >= 32 {
                // heap bitmaps assume 16 byte alignment for allocations >= 32 bytes.
                align = 16;
            }
        }
        assert!(power_of_two(align), "incorrect alignment");

        // Make the allocnpages big enough that the leftover is less than 1/8 of the
        // total, so wasted space is at most 12.5%.
        let mut allocsize = PAGE_SIZE;
        while allocsize % size > allocsize / 8 {
            allocsize += PAGE_SIZE;
        }
        let npages = allocsize / PAGE_SIZE;

        // If the previous sizeclass chose the same allocation size and fit the same
        // number of objects into the page, we might as well use just this size instead
        // of having two different sizes. (Never merge into the dummy class 0.)
        let last = classes.len() - 1;
        if last > 0
            && npages == classes[last].npages
            && allocsize / size == allocsize / classes[last].size
        {
            classes[last].size = size;
        } else {
            classes.push(Class { size, npages });
        }
        size += align;
    }

    // Increase object sizes if we can fit the same number of larger objects into the
    // same number of pages. For example, we choose size 8448 above with 6 objects in 7
    // pages. But we can well use object size 9472, which is also 6 objects in 7 pages but
    // +1024 bytes (+12.12%). We need to preserve at least LARGE_SIZE_DIV alignment
    // otherwise size_to_class won't work.
    for c in classes.iter_mut().skip(1) {
        let psize = c.npages * PAGE_SIZE;
        let new_size = (psize / (psize / c.size)) & !(LARGE_SIZE_DIV - 1);
        if new_size > c.size {
            c.size = new_size;
        }
    }

    assert!(
        classes.len() == NUM_SIZE_CLASSES,
        "number of size classes has changed"
    );

    // Go gets these from the compiler (constants overflowing the uint16/uint8 arrays)
    // and from its runtime; here they are explicit.
    for (i, c) in classes.iter().enumerate().skip(1) {
        assert!(
            u16::try_from(c.size).is_ok(),
            "class {i}: size {} overflows u16",
            c.size
        );
        assert!(
            u8::try_from(c.npages).is_ok(),
            "class {i}: {} pages overflow u8",
            c.npages
        );
        assert!(
            c.size > classes[i - 1].size,
            "class {i}: sizes not increasing"
        );
        assert!(
            c.size <= c.npages * PAGE_SIZE,
            "class {i}: object larger than its span"
        );
    }
    assert!(
        classes[NUM_SIZE_CLASSES - 1].size == MAX_SMALL_SIZE,
        "last class is not MAX_SMALL_SIZE"
    );

    for c in &classes {
        compute_div_magic(c);
    }

    classes
}

/// The multiplier of [`compute_div_magic`]: `n / size == (n * div_magic(size)) >> 32`.
fn div_magic(size: usize) -> u32 {
    let size = u32::try_from(size).expect("size fits u32");
    u32::MAX / size + 1
}

/// Checks that the division required to compute object index from span offset can be
/// computed using 32-bit multiplication. `n / c.size` is implemented as
/// `(n * (u32::MAX / c.size + 1)) >> 32` for all `0 <= n <= c.npages * PAGE_SIZE`.
///
/// # Panics
///
/// If 32 bits of precision do not suffice for `c`.
fn compute_div_magic(c: &Class) {
    // divisor
    let d = c.size;
    if d == 0 {
        return;
    }

    // maximum input value for which the formula needs to work.
    let max = c.npages * PAGE_SIZE;

    // As reported in [1], if n and d are unsigned N-bit integers, we can compute n / d as
    // ⌊n * c / 2^F⌋, where c is ⌈2^F / d⌉ and F is computed with:
    //
    //     Algorithm 2: Algorithm to select the number of fractional bits
    //     and the scaled approximate reciprocal in the case of unsigned
    //     integers.
    //
    //     if d is a power of two then
    //         Let F ← log₂(d) and c = 1.
    //     else
    //         Let F ← N + L where L is the smallest integer
    //         such that d ≤ (2^(N+L) mod d) + 2^L.
    //     end if
    //
    // [1] "Faster Remainder by Direct Computation: Applications to Compilers and Software
    // Libraries" Daniel Lemire, Owen Kaser, Nathan Kurz arXiv:1902.01961
    //
    // To minimize the risk of introducing errors, we implement the algorithm exactly as
    // stated, rather than trying to adapt it to fit typical idioms.
    let n_bits = (usize::BITS - max.leading_zeros()) as usize; // bits.Len(max)
    let f = if power_of_two(d) {
        let f = d.trailing_zeros() as usize;
        assert!(d == 1 << f, "imprecise log2");
        f
    } else {
        let d = d as u64;
        (0..)
            .find(|&l| d <= ((1u64 << (n_bits + l)) % d) + (1u64 << l))
            .map(|l| n_bits + l)
            .expect("L exists")
    };

    // Also, noted in the paper, F is the smallest number of fractional bits required. We
    // use 32 bits, because it works for all size classes and is fast on all CPU
    // architectures that we support.
    assert!(
        f <= 32,
        "size class requires more than 32 bits of precision: d={d} max={max} N={n_bits} F={f}"
    );

    // Brute force double-check with the exact computation that will be done by the
    // runtime.
    let m = u64::from(div_magic(d));
    for n in 0..=max {
        assert!(
            ((n as u64 * m) >> 32) as usize == n / d,
            "bad 32-bit multiply magic: d={d} max={max} m={m} n={n}"
        );
    }
}

/// The human-readable table, as `//!` lines inside a `text` code block.
fn print_comment(w: &mut String, classes: &[Class]) {
    writeln!(w, "//! ```text").unwrap();
    writeln!(
        w,
        "//! {:<5}  {:<9}  {:<10}  {:<7}  {:<10}  {:<9}  {:<9}",
        "class", "bytes/obj", "bytes/span", "objects", "tail waste", "max waste", "min align"
    )
    .unwrap();
    let mut prev_size = 0;
    let mut min_aligns = [0usize; PAGE_SHIFT + 1];
    for (i, c) in classes.iter().enumerate().skip(1) {
        let span_size = c.npages * PAGE_SIZE;
        let objects = span_size / c.size;
        let tail_waste = span_size - c.size * (span_size / c.size);
        let max_waste = ((c.size - prev_size - 1) * objects + tail_waste) as f64 / span_size as f64;
        // object alignment is capped at page alignment
        let align_bits = (c.size.trailing_zeros() as usize).min(PAGE_SHIFT);
        for (bits, min_align) in min_aligns.iter_mut().enumerate() {
            if bits > align_bits {
                *min_align = 0;
            } else if *min_align == 0 {
                *min_align = c.size;
            }
        }
        prev_size = c.size;
        writeln!(
            w,
            "//! {i:5}  {:9}  {span_size:10}  {objects:7}  {tail_waste:10}  {:8.2}%  {:9}",
            c.size,
            100.0 * max_waste,
            1usize << align_bits
        )
        .unwrap();
    }
    writeln!(w, "//!").unwrap();

    writeln!(
        w,
        "//! {:<9}  {:<4}  {:<12}",
        "alignment", "bits", "min obj size"
    )
    .unwrap();
    for (bits, &size) in min_aligns.iter().enumerate() {
        if size == 0 {
            break;
        }
        if bits + 1 < min_aligns.len() && size == min_aligns[bits + 1] {
            continue;
        }
        writeln!(w, "//! {:9}  {bits:4}  {size:12}", 1usize << bits).unwrap();
    }
    writeln!(w, "//! ```").unwrap();
    writeln!(w, "//!").unwrap();
    writeln!(
        w,
        "//! Layer: tables (the crate root's module map, `lib.rs`)."
    )
    .unwrap();
}

/// Writes `pub static NAME: TY = [values];` laid out the way `rustfmt` does it.
fn print_array<T: std::fmt::Display>(w: &mut String, doc: &str, decl: &str, values: &[T]) {
    for line in doc.lines() {
        writeln!(w, "/// {line}").unwrap();
    }
    // (Every table here is too long for one line, so that case is not handled.)
    let items: Vec<String> = values.iter().map(ToString::to_string).collect();
    writeln!(w, "{decl} = [").unwrap();
    // rustfmt packs short elements (at most `short_array_element_width_threshold`, 10
    // characters) as many per line as fit; longer ones go one per line.
    if items.iter().all(|s| s.len() <= 10) {
        let mut line = String::new();
        for item in &items {
            // rustfmt fills a line up to `MAX_WIDTH - 1` columns: `"    " + line + " " +
            // item + ","` must fit in that.
            if !line.is_empty() && 4 + line.len() + 1 + item.len() + 1 > MAX_WIDTH - 1 {
                writeln!(w, "    {line}").unwrap();
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(item);
            line.push(',');
        }
        writeln!(w, "    {line}").unwrap();
    } else {
        for item in &items {
            writeln!(w, "    {item},").unwrap();
        }
    }
    writeln!(w, "];").unwrap();
}

/// Size -> class for `size = base + i * step`, `i` in `0..len`: the smallest class whose
/// objects are at least `size` bytes.
///
/// Size 0 maps to class 0, as in Go (its dummy entry: its size, 0, is >= 0). The
/// allocator relies on it: class 0's cache slot is always the empty span, so a zero-size
/// request leaves the fast path and the slow path gives it a real, aligned slot.
fn size_to_class_table(classes: &[Class], base: usize, step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let size = base + i * step;
            let class = (0..classes.len())
                .find(|&j| classes[j].size >= size)
                .expect("size <= MAX_SMALL_SIZE");
            u8::try_from(class).expect("class fits u8")
        })
        .collect()
}

/// The constants and tables.
fn print_classes(w: &mut String, classes: &[Class]) {
    let consts = [
        (
            "log2 of the page size: pages are 8 KiB.",
            "PAGE_SHIFT",
            PAGE_SHIFT,
        ),
        (
            "The largest small object; larger ones are allocated straight from the page heap.",
            "MAX_SMALL_SIZE",
            MAX_SMALL_SIZE,
        ),
        (
            "Granularity of [`SIZE_TO_CLASS8`], for sizes up to [`SMALL_SIZE_MAX`].",
            "SMALL_SIZE_DIV",
            SMALL_SIZE_DIV,
        ),
        (
            "Sizes up to this use [`SIZE_TO_CLASS8`]; larger ones [`SIZE_TO_CLASS128`].",
            "SMALL_SIZE_MAX",
            SMALL_SIZE_MAX,
        ),
        (
            "Granularity of [`SIZE_TO_CLASS128`], for sizes above [`SMALL_SIZE_MAX`].",
            "LARGE_SIZE_DIV",
            LARGE_SIZE_DIV,
        ),
        (
            "Number of size classes, class 0 (large objects) included.",
            "NUM_SIZE_CLASSES",
            classes.len(),
        ),
    ];
    for (doc, name, value) in consts {
        writeln!(w, "/// {doc}").unwrap();
        writeln!(w, "pub const {name}: usize = {value};").unwrap();
    }

    let sizes: Vec<usize> = classes.iter().map(|c| c.size).collect();
    writeln!(w).unwrap();
    print_array(
        w,
        "Bytes per object of each class (0 for class 0).",
        "pub static CLASS_TO_SIZE: [u16; NUM_SIZE_CLASSES]",
        &sizes,
    );

    let npages: Vec<usize> = classes.iter().map(|c| c.npages).collect();
    writeln!(w).unwrap();
    print_array(
        w,
        "Pages per span of each class (0 for class 0).",
        "pub static CLASS_TO_ALLOCNPAGES: [u8; NUM_SIZE_CLASSES]",
        &npages,
    );

    let magics: Vec<String> = classes
        .iter()
        .map(|c| match c.size {
            0 => "0".to_string(),
            size => format!("u32::MAX / {size} + 1"),
        })
        .collect();
    writeln!(w).unwrap();
    print_array(
        w,
        "`u32::MAX / size + 1` of each class (0 for class 0): for every offset `n` inside a span,\n\
         `n / size == (n * magic) >> 32`.",
        "pub static CLASS_TO_DIVMAGIC: [u32; NUM_SIZE_CLASSES]",
        &magics,
    );

    // map from size to size class, for small sizes.
    let sc = size_to_class_table(
        classes,
        0,
        SMALL_SIZE_DIV,
        SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1,
    );
    writeln!(w).unwrap();
    print_array(
        w,
        "Size class of `size <= SMALL_SIZE_MAX`, indexed by `size.div_ceil(SMALL_SIZE_DIV)`.\n\
         (Size 0 maps to class 0, as in Go.)",
        "pub static SIZE_TO_CLASS8: [u8; SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1]",
        &sc,
    );

    // map from size to size class, for large sizes.
    let sc = size_to_class_table(
        classes,
        SMALL_SIZE_MAX,
        LARGE_SIZE_DIV,
        (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1,
    );
    writeln!(w).unwrap();
    print_array(
        w,
        "Size class of `SMALL_SIZE_MAX < size <= MAX_SMALL_SIZE`, indexed by\n\
         `(size - SMALL_SIZE_MAX).div_ceil(LARGE_SIZE_DIV)`.",
        "pub static SIZE_TO_CLASS128: [u8; (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1]",
        &sc,
    );
}

/// The generated file's first lines, up to the table.
const HEADER: &str = "\
//! Code generated by examples/mksizeclasses.rs; DO NOT EDIT.
//!
//! The size classes of Go 1.19's heap, computed by `examples/mksizeclasses.rs`, a port
//! of Go's `runtime/mksizeclasses.go`. Regenerate with
//! `cargo run -q -p gomalloc --example mksizeclasses > alloc-core/src/sizeclasses.rs`.
//!
//! Per class: bytes per object, bytes per span, objects per span, bytes left over at
//! the end of a span (tail waste), the worst-case fraction of a span lost to rounding
//! requests up plus the tail (max waste), and the alignment all its objects have
//! (min align, capped at the page size). Then, per alignment, the smallest object
//! size from which on every class is at least that aligned.
//!
";

/// Computes the classes and returns the complete text of `src/sizeclasses.rs`.
///
/// # Panics
///
/// If the classes fail Go's self-checks (see [`make_classes`]).
pub fn generate() -> String {
    let classes = make_classes();
    let mut w = String::from(HEADER);
    print_comment(&mut w, &classes);
    writeln!(w).unwrap();
    print_classes(&mut w, &classes);
    w
}

// `tests/sizeclasses.rs` includes this file as a module, where `main` is unused.
#[cfg_attr(test, allow(dead_code))]
fn main() {
    print!("{}", generate());
}
