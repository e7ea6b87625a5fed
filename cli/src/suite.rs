//! The benchmark suite: the workloads, how they are built, and how each run is measured.
//!
//! Every workload is a fixed amount of work. C workloads (`benches/workloads/*.c`) are
//! compiled with gcc into `target/gomalloc-bench/bin/` and run under `LD_PRELOAD`; Rust
//! workloads run as `target/release/rustload-ALLOC`. Each run is one child process: wall
//! time from the parent's clock, CPU time (user + system) and peak RSS from `wait4`'s
//! rusage. Runs go round robin (every allocator once, then the next run, with the
//! allocator order rotated each round) so that drift on a noisy machine hits all alike;
//! the report takes the median of each allocator's runs.

use crate::BenchArgs;
use crate::peers::{self, Peer};
use crate::report::{self, Measurement, Outcome, Results};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a workload is built and run.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A C program: source file under `benches/workloads/` and extra gcc flags.
    C(&'static str, &'static [&'static str]),
    /// A workload of the `rustload-*` binaries, by its argument.
    Rust(&'static str),
}

/// One workload of the suite.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Name used by `--only` and in the report.
    pub name: &'static str,
    /// How it is built and run.
    pub kind: Kind,
    /// SCALE argument of a full run.
    pub full: f64,
    /// SCALE argument of a `--quick` run.
    pub quick: f64,
    /// Whether it takes a THREADS argument.
    pub threaded: bool,
    /// What it stands for.
    pub about: &'static str,
}

const fn c(
    name: &'static str,
    src: &'static str,
    flags: &'static [&'static str],
    threaded: bool,
    about: &'static str,
) -> Workload {
    Workload {
        name,
        kind: Kind::C(src, flags),
        full: 1.0,
        quick: 0.25,
        threaded,
        about,
    }
}

/// The suite, in report order.
pub const WORKLOADS: &[Workload] = &[
    c(
        "larson",
        "larson.c",
        &[],
        true,
        "server: random replacement, frees by other threads",
    ),
    c(
        "xmalloc-test",
        "xmalloc-test.c",
        &[],
        true,
        "producer/consumer, every free remote",
    ),
    c(
        "cache-scratch",
        "cache.c",
        &["-DSCRATCH"],
        true,
        "passive false sharing",
    ),
    c("cache-thrash", "cache.c", &[], true, "active false sharing"),
    c(
        "mstress",
        "mstress.c",
        &[],
        true,
        "many threads, random lifetimes, exchanges",
    ),
    c(
        "rptest",
        "rptest.c",
        &[],
        true,
        "16 B..16 KiB working sets, cross-thread frees",
    ),
    c(
        "cfrac",
        "cfrac.c",
        &[],
        false,
        "bignum small-object churn (single thread)",
    ),
    c(
        "espresso",
        "espresso.c",
        &[],
        false,
        "set churn with realloc (single thread)",
    ),
    c(
        "sh6bench",
        "sh6bench.c",
        &[],
        true,
        "runs of growing sizes, LIFO/FIFO frees",
    ),
    c(
        "sh8bench",
        "sh6bench.c",
        &["-DSH8"],
        true,
        "sh6bench with cross-thread frees",
    ),
    c(
        "glibc-simple",
        "glibc-simple.c",
        &[],
        false,
        "batches of one size (glibc bench-malloc-simple)",
    ),
    c(
        "glibc-thread",
        "glibc-thread.c",
        &[],
        true,
        "random working set (glibc bench-malloc-thread)",
    ),
    c(
        "malloc-large",
        "malloc-large.c",
        &[],
        false,
        "64 KiB..8 MiB blocks, every page touched",
    ),
    c(
        "realloc",
        "realloc.c",
        &[],
        false,
        "64 buffers grown by realloc to 1 MiB",
    ),
    c(
        "fragment",
        "fragment.c",
        &[],
        false,
        "RSS left after 90% of small blocks die",
    ),
    c(
        "release",
        "release.c",
        &[],
        false,
        "RSS 2 s after 99% of 1 GiB of small blocks die",
    ),
    c(
        "churn",
        "churn.c",
        &[],
        false,
        "4096 live blocks of 8-512 B, one replaced at random per step",
    ),
    c(
        "parked",
        "parked.c",
        &[],
        true,
        "threads of 8192 live blocks of 16-1024 B, replaced at random: peak RSS",
    ),
    c(
        "untouched",
        "untouched.c",
        &[],
        false,
        "40 blocks of 64 KiB-4 MiB replaced at random, first page written",
    ),
    Workload {
        name: "rust-collections",
        kind: Kind::Rust("collections"),
        full: 1.0,
        quick: 0.25,
        threaded: true,
        about: "HashMap/BTreeMap/String/Vec churn (global allocator)",
    },
    Workload {
        name: "rust-json",
        kind: Kind::Rust("json"),
        full: 1.0,
        quick: 0.25,
        threaded: true,
        about: "parse a generated 2 MB JSON document (global allocator)",
    },
];

/// How one (workload, allocator) is started.
struct Job {
    workload: usize,
    peer: usize,
    program: PathBuf,
    args: Vec<String>,
    preload: Option<PathBuf>,
    env: &'static [(&'static str, &'static str)],
}

fn workloads_dir() -> PathBuf {
    crate::repo_root().join("benches/workloads")
}

fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(a), m(b)) {
        (Some(x), Some(y)) => x > y,
        _ => true,
    }
}

/// Compiles a C workload unless its binary is newer than its sources.
fn build_c(w: &Workload, src: &str, flags: &[&str], bin_dir: &Path) -> Result<PathBuf, String> {
    let dir = workloads_dir();
    let src = dir.join(src);
    let bin = bin_dir.join(w.name);
    let common = dir.join("common.h");
    if bin.exists() && !newer(&src, &bin) && !newer(&common, &bin) {
        return Ok(bin);
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-g", "-fno-builtin", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags)
        .output()
        .map_err(|e| format!("cannot run {cc}: {e} (apt-get install gcc)"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}

/// Builds the `rustload-*` examples (cargo does nothing when they are fresh).
fn build_rust() -> Result<(), String> {
    let st = crate::cargo()
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "gomalloc-benches",
            "--examples",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err("cargo build -p gomalloc-benches failed".into())
    }
}

/// Runs one job to completion and measures it.
fn measure(job: &Job) -> Outcome {
    let mut cmd = Command::new(&job.program);
    cmd.args(&job.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("LD_PRELOAD");
    if let Some(p) = &job.preload {
        cmd.env("LD_PRELOAD", p);
    }
    for (k, v) in job.env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    // Read the output in threads so that a chatty child cannot block on a full pipe.
    let mut child = child;
    let out = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let err = child.stderr.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (std's `Child` is never waited on
    // after this); `status` and `ru` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if r != pid {
        return Outcome::Failed(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let how = if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(status))
        };
        let last = stderr.lines().last().unwrap_or("").to_string();
        return Outcome::Failed(format!("{how}: {last}"));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let metrics = stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("metric"), Some(k), Some(v)) => Some((k.to_string(), v.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    Outcome::Ok(Measurement {
        wall: wall.as_secs_f64(),
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        peak_rss_kb: ru.ru_maxrss as u64,
        metrics,
    })
}

/// `gomalloc bench`.
pub fn bench(a: &BenchArgs) -> Result<(), String> {
    if a.list {
        println!("workloads:");
        for w in WORKLOADS {
            println!("  {:<17} {}", w.name, w.about);
        }
        println!("allocators: {}", peers::NAMES.join(", "));
        return Ok(());
    }
    for o in &a.only {
        if !WORKLOADS.iter().any(|w| w.name == o) {
            return Err(format!("unknown workload {o} (see --list)"));
        }
    }
    let workloads: Vec<Workload> = WORKLOADS
        .iter()
        .filter(|w| a.only.is_empty() || a.only.iter().any(|o| o == w.name))
        .copied()
        .collect();
    let runs = a.runs.unwrap_or(if a.quick { 3 } else { 5 }).max(1);
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let (peers, notes) = peers::detect(&a.allocators);
    if peers.is_empty() {
        return Err("no allocator to run".into());
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| crate::target_dir().join("gomalloc-bench"));
    let bin_dir = out_dir.join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;

    eprintln!("building workloads...");
    if workloads.iter().any(|w| matches!(w.kind, Kind::Rust(_))) {
        build_rust()?;
    }
    let rust_dir = crate::target_dir().join("release/examples");
    let mut jobs = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        let scale = if a.quick { w.quick } else { w.full };
        let mut args = vec![format!("{scale}")];
        if w.threaded {
            args.push(threads.to_string());
        }
        let c_bin = match w.kind {
            Kind::C(src, flags) => Some(build_c(w, src, flags, &bin_dir)?),
            Kind::Rust(_) => None,
        };
        for (pi, p) in peers.iter().enumerate() {
            let job = match (w.kind, &c_bin) {
                (Kind::C(..), Some(bin)) if p.c_ok => Job {
                    workload: wi,
                    peer: pi,
                    program: bin.clone(),
                    args: args.clone(),
                    preload: p.preload.clone(),
                    env: p.env,
                },
                (Kind::Rust(name), _) if p.rust_bin.is_some() => {
                    let mut ra = vec![name.to_string()];
                    ra.extend(args.iter().cloned());
                    Job {
                        workload: wi,
                        peer: pi,
                        program: rust_dir.join(format!("rustload-{}", p.rust_bin.unwrap_or(""))),
                        args: ra,
                        preload: None,
                        env: p.env,
                    }
                }
                _ => continue,
            };
            jobs.push(job);
        }
    }

    let total = (jobs.len() * runs) as u64;
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(250));
    let mut results = Results::new(&workloads, &peers, runs, threads, a, notes);
    let started = Instant::now();
    for run in 0..runs {
        for (wi, w) in workloads.iter().enumerate() {
            let these: Vec<&Job> = jobs.iter().filter(|j| j.workload == wi).collect();
            // Rotate the allocator order every run.
            for k in 0..these.len() {
                let job = these[(k + run) % these.len()];
                pb.set_message(format!(
                    "run {}/{runs} {} {}",
                    run + 1,
                    w.name,
                    peers[job.peer].name
                ));
                let o = measure(job);
                if let Outcome::Failed(why) = &o {
                    pb.println(format!(
                        "{} with {} failed: {why}",
                        w.name, peers[job.peer].name
                    ));
                }
                results.add(wi, job.peer, o);
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    results.elapsed = started.elapsed().as_secs_f64();
    report::write(&results, &out_dir)
}

/// The peers a report talks about (used by the report to say which are missing).
pub fn peer_names(peers: &[Peer]) -> Vec<&'static str> {
    peers.iter().map(|p| p.name).collect()
}
