//! The Rust workloads of `gomalloc bench`, built once per allocator: the examples
//! `rustload-system`, `rustload-gomalloc`, `rustload-mimalloc` and `rustload-jemalloc` each
//! install one allocator as `#[global_allocator]` and call [`main`].
//!
//! `rustload-ALLOC WORKLOAD [SCALE [THREADS]]`, with the same SCALE and THREADS meaning as
//! the C workloads (`benches/workloads/common.h`):
//! * `collections`: HashMap, BTreeMap, String and Vec churn on every thread;
//! * `json`: generates a JSON document (about 2 MB) and parses it into a
//!   `serde_json::Value` again and again on every thread, walking and dropping the tree.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::process::ExitCode;

/// A small xorshift generator (no dependency, same on every allocator).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn scaled(n: f64, scale: f64) -> u64 {
    ((n * scale) as u64).max(1)
}

fn collections(seed: u64, iters: u64) -> u64 {
    let mut r = Rng::new(seed);
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    let mut tree: BTreeMap<u64, String> = BTreeMap::new();
    let mut sum = 0u64;
    for i in 0..iters {
        let k = r.below(20_000);
        let key = format!("key-{k}");
        match r.below(4) {
            0 | 1 => {
                let v = map.entry(key).or_default();
                v.push(i as u32);
                if v.len() > 32 {
                    v.clear();
                    v.shrink_to_fit();
                }
            }
            2 => {
                if let Some(v) = map.remove(&key) {
                    sum += v.len() as u64;
                }
            }
            _ => {
                let mut s = String::with_capacity(8);
                for _ in 0..r.below(12) {
                    s.push_str("word ");
                }
                if let Some(old) = tree.insert(k, s) {
                    sum += old.len() as u64;
                }
                if tree.len() > 5_000 {
                    let first = *tree.keys().next().expect("non-empty");
                    tree.remove(&first);
                }
            }
        }
    }
    sum + map.len() as u64 + tree.len() as u64
}

fn gen_json(seed: u64, n: usize) -> String {
    let mut r = Rng::new(seed);
    let mut out = String::from("[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let tags: Vec<String> = (0..r.below(6))
            .map(|t| format!("\"tag{}\"", t + r.below(100)))
            .collect();
        out.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user {}\",\"score\":{}.{},\"active\":{},\"tags\":[{}],\
             \"address\":{{\"city\":\"city {}\",\"zip\":\"{:05}\"}}}}",
            r.below(1_000_000),
            r.below(1000),
            r.below(100),
            r.below(2) == 0,
            tags.join(","),
            r.below(500),
            r.below(100_000)
        ));
    }
    out.push(']');
    out
}

fn walk(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Array(a) => a.iter().map(walk).sum::<u64>() + 1,
        serde_json::Value::Object(o) => o.values().map(walk).sum::<u64>() + o.len() as u64,
        serde_json::Value::String(s) => s.len() as u64,
        _ => 1,
    }
}

fn json(seed: u64, iters: u64) -> u64 {
    let doc = gen_json(seed, 12_000);
    let mut sum = 0;
    for _ in 0..iters {
        let v: serde_json::Value = serde_json::from_str(black_box(&doc)).expect("valid JSON");
        sum += walk(&v);
    }
    sum
}

/// Runs the workload named by the command line; see the module documentation.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("");
    let scale: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let threads: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
    let work: fn(u64, u64) -> u64 = match name {
        "collections" => collections,
        "json" => json,
        _ => {
            eprintln!("usage: rustload-ALLOC collections|json [SCALE [THREADS]]");
            return ExitCode::from(2);
        }
    };
    let iters = match name {
        "collections" => scaled(3_000_000.0, scale) / threads,
        _ => scaled(60.0, scale).div_ceil(threads),
    };
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || work(t + 1, iters)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .sum()
    });
    black_box(total);
    ExitCode::SUCCESS
}
