//! The profile as `profile.proto` (pprof's format, gzipped), with the process's mappings,
//! so that `go tool pprof` symbolizes the addresses from the binaries themselves.
//!
//! The messages are derived with prost from the fields of pprof's `profile.proto` that
//! this writer fills (no `protoc` needed). Sample types are those of Go's heap profile:
//! `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes`,
//! period `space/bytes` = the sampling rate, and the counts un-sampled as Go's
//! `scaleHeapSample` does. Runs outside malloc only: it allocates.
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use super::bucket::Bucket;
use std::collections::HashMap;
use std::io::Write;

#[derive(Clone, PartialEq, prost::Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    drop_frames: i64,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
    #[prost(int64, repeated, tag = "13")]
    comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    memory_start: u64,
    #[prost(uint64, tag = "3")]
    memory_limit: u64,
    #[prost(uint64, tag = "4")]
    file_offset: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(int64, tag = "6")]
    build_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
}

/// Frames of the allocator itself and of the allocation functions above it: pprof drops
/// a frame matching this (anchored) and every frame it called, so that a sample's leaf is
/// the function that asked for memory, as in Go's heap profiles (pprof's own list for C
/// heap profiles, `allocRxStr`, has the C names).
pub const DROP_FRAMES: &str = concat!(
    "malloc|calloc|realloc|reallocarray|free|cfree|memalign|aligned_alloc|",
    "posix_memalign|__posix_memalign|valloc|pvalloc|__libc_.*|operator new.*|",
    "__rust_alloc|__rust_alloc_zeroed|__rust_realloc|__rust_dealloc|__rdl_.*|__rg_.*|",
    "gomalloc::.*|<gomalloc::.*|alloc::alloc::.*|alloc::raw_vec::.*|<alloc::.*|",
    "alloc::vec::.*|alloc::boxed::.*|alloc::string::.*|",
    // The names `go tool pprof` gives functions of a Rust program (DWARF's short names):
    // the allocator's slow path, where it did not tail-call.
    "alloc_refill|alloc_unsettled|alloc_unsettled_slow|alloc_slow|alloc_slow_unsampled|",
    "alloc_malloc_slow|alloc_sampled|",
    "record_sampled|record_sampled_charged"
);

/// The executable segment of an object loaded in the process.
struct Map {
    start: u64,
    limit: u64,
    offset: u64,
    path: String,
    /// A shared library holding this allocator (`libgomalloc.so`): a sample's leading
    /// frames in it are the allocator's own.
    allocator_library: bool,
}

/// The executable segments of the loaded objects, from the loader's own list
/// (`dl_iterate_phdr`; outside malloc only: it takes the loader's lock). Each mapping
/// starts where its segment does, at file offset `p_offset`, not at the page
/// `/proc/self/maps` shows: `go tool pprof` takes `start - p_vaddr` for the load bias
/// (`cmd/pprof`'s `objTool.Open`), which is right only then, for a segment whose `p_vaddr`
/// is not page-aligned too (lld's layout, Rust binaries').
fn mappings() -> Vec<Map> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Vec<Map>` passed below; `info` is the loader's record of
        // one object, with `dlpi_phnum` headers at `dlpi_phdr`, valid during the call.
        unsafe {
            let maps = &mut *data.cast::<Vec<Map>>();
            let info = &*info;
            let name = if info.dlpi_name.is_null() {
                String::new()
            } else {
                core::ffi::CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            let main_program = name.is_empty();
            let path = if main_program {
                // The main program has no name in the list.
                std::fs::read_link("/proc/self/exe")
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                name
            };
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let start = info.dlpi_addr + ph.p_vaddr;
                    let own = super::alloc_sampled as *const () as u64;
                    maps.push(Map {
                        start,
                        limit: start + ph.p_memsz,
                        offset: ph.p_offset,
                        path: path.clone(),
                        allocator_library: !main_program
                            && (start..start + ph.p_memsz).contains(&own),
                    });
                }
            }
        }
        0
    }
    let mut maps: Vec<Map> = Vec::new();
    // SAFETY: `each` matches the callback type and only uses `data` as the Vec above.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut maps).cast()) };
    // The vDSO has no file to read symbols from.
    maps.retain(|m| m.path.starts_with('/'));
    maps
}

/// The stack without the allocator's own frames: the first (the return into
/// `alloc_sampled` from the walk), and those in the allocator's shared library, if it is
/// one. Where the allocator is linked into the program (Rust's `GoMalloc`), the frames
/// of the slow path that did not tail-call are left to [`DROP_FRAMES`].
fn allocator_frames_dropped<'a>(stk: &'a [usize], maps: &[Map]) -> &'a [usize] {
    let in_library = |pc: usize| {
        maps.iter()
            .any(|m| m.allocator_library && m.start <= pc as u64 && (pc as u64) < m.limit)
    };
    let stk = stk.get(1..).unwrap_or(&[]);
    let skip = stk.iter().take_while(|&&pc| in_library(pc)).count();
    &stk[skip..]
}

/// Go's `scaleHeapSample`: the expected number of objects (and bytes) that `count`
/// sampled objects of `size` bytes stand for, when each byte is sampled with
/// probability `1/rate`.
pub fn scale(count: u64, size: usize, rate: usize) -> (f64, f64) {
    scale_sampled(count, size, size, rate)
}

/// [`scale`] for objects of `size` bytes that the countdown charged `charged` bytes each
/// (a record's [`super::Record::charged`]): the chance of sampling is that of `charged`.
pub fn scale_sampled(count: u64, size: usize, charged: usize, rate: usize) -> (f64, f64) {
    scale_bytes(count, count * size as u64, charged, rate)
}

/// [`scale_sampled`] for `count` objects of `bytes` requested bytes in all (a record's
/// objects, whose sizes may differ within their charged size).
pub fn scale_bytes(count: u64, bytes: u64, charged: usize, rate: usize) -> (f64, f64) {
    let (c, b) = (count as f64, bytes as f64);
    if count == 0 || charged == 0 || rate <= 1 {
        return (c, b);
    }
    let s = 1.0 / (1.0 - libm::exp(-(charged as f64) / rate as f64));
    (c * s, b * s)
}

/// Encodes `buckets` as a gzipped profile. With `leaks`, only the objects still live.
pub fn encode(buckets: &[Bucket], rate: usize, leaks: bool) -> std::io::Result<Vec<u8>> {
    let mut strings: Vec<String> = vec![String::new()];
    let mut idx: HashMap<String, i64> = HashMap::new();
    let mut s = |v: &str| -> i64 {
        if let Some(&i) = idx.get(v) {
            return i;
        }
        strings.push(v.to_string());
        idx.insert(v.to_string(), strings.len() as i64 - 1);
        strings.len() as i64 - 1
    };
    let mut p = Profile {
        sample_type: vec![
            ValueType {
                r#type: s("alloc_objects"),
                unit: s("count"),
            },
            ValueType {
                r#type: s("alloc_space"),
                unit: s("bytes"),
            },
            ValueType {
                r#type: s("inuse_objects"),
                unit: s("count"),
            },
            ValueType {
                r#type: s("inuse_space"),
                unit: s("bytes"),
            },
        ],
        period_type: Some(ValueType {
            r#type: s("space"),
            unit: s("bytes"),
        }),
        period: rate as i64,
        drop_frames: s(DROP_FRAMES),
        time_nanos: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        ..Default::default()
    };
    if leaks {
        p.comment
            .push(s("gomalloc leak report: sampled objects still live"));
    }
    let maps = mappings();
    for (i, m) in maps.iter().enumerate() {
        p.mapping.push(Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename: s(&m.path),
            build_id: 0,
        });
    }
    let mut locs: HashMap<u64, u64> = HashMap::new();
    for b in buckets {
        let live = b.live();
        if leaks && live == 0 {
            continue;
        }
        let (ao, ab) = scale_bytes(b.allocs, b.alloc_bytes, b.charged, rate);
        let (io, ib) = scale_bytes(live, b.live_bytes(), b.charged, rate);
        let mut ids = Vec::with_capacity(b.nstk);
        for &ret in allocator_frames_dropped(b.stack(), &maps) {
            // A return address points after its call: the call is the byte before.
            let pc = ret as u64 - 1;
            let next = locs.len() as u64 + 1;
            let id = *locs.entry(pc).or_insert_with(|| {
                let mapping_id = maps
                    .iter()
                    .position(|m| m.start <= pc && pc < m.limit)
                    .map_or(0, |i| i as u64 + 1);
                p.location.push(Location {
                    id: next,
                    mapping_id,
                    address: pc,
                });
                next
            });
            ids.push(id);
        }
        let value = if leaks {
            vec![0, 0, io.round() as i64, ib.round() as i64]
        } else {
            vec![
                ao.round() as i64,
                ab.round() as i64,
                io.round() as i64,
                ib.round() as i64,
            ]
        };
        p.sample.push(Sample {
            location_id: ids,
            value,
        });
    }
    p.string_table = strings;
    let raw = prost::Message::encode_to_vec(&p);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    gz.finish()
}
