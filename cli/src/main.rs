//! `gomalloc`: the project's command.
//!
//! * `gomalloc bench [--quick] [--only NAMES] [--allocators NAMES] [--runs N]` runs the
//!   allocator benchmark suite ([`suite`]) and writes its report ([`report`]) under
//!   `target/gomalloc-bench/`;
//! * `gomalloc run [--stats] -- PROGRAM ARGS...` runs a program with the gomalloc C library
//!   (`target/release/libgomalloc.so`) preloaded; with `--heap-profile FILE` (or
//!   `--leak-report`), the library with sampled heap profiles (`libgomalloc-prof.so`,
//!   built by `shim-c/build-prof.sh`), which writes the profile when the program exits.
//!
//! From the repository: `cargo run --release -- bench --quick`.

mod peers;
mod report;
mod suite;

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(
    name = "gomalloc",
    version,
    about = "Go's heap as a malloc: benchmarks and tools"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the allocator benchmark suite against the installed peers.
    Bench(BenchArgs),
    /// Run PROGRAM with the gomalloc library preloaded.
    Run(RunArgs),
}

/// Options of `gomalloc bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Small inputs and 3 runs: a few minutes on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Run only these workloads (comma-separated names; see --list).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run only these allocators (comma-separated: glibc, gomalloc, mimalloc, jemalloc,
    /// tcmalloc; and variants run only when named: gomalloc-noscav, gomalloc with
    /// GOMALLOC_SCAVENGE=off; gomalloc-prof, with GOMALLOC_PROFILE_RATE=512KiB).
    #[arg(long, value_delimiter = ',')]
    pub allocators: Vec<String>,
    /// Runs of each workload per allocator; the median is reported (default 3 with
    /// --quick, 5 without).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Threads of the multi-threaded workloads (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// List the workloads and allocators, and exit.
    #[arg(long)]
    pub list: bool,
    /// Where to write results (default: target/gomalloc-bench).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Print the allocator's statistics when the program exits (GOMALLOC_STATS=1).
    #[arg(long)]
    stats: bool,
    /// Write a sampled heap profile (pprof, gzipped) to FILE when the program exits, for
    /// `go tool pprof -sample_index=inuse_space FILE` (GOMALLOC_PROFILE=FILE; `%p` in FILE
    /// becomes the process id, so forked children write their own).
    #[arg(long, value_name = "FILE")]
    heap_profile: Option<PathBuf>,
    /// Print the sampled blocks still live at exit, by stack, on stderr
    /// (GOMALLOC_PROFILE=leaks).
    #[arg(long, conflicts_with = "heap_profile")]
    leak_report: bool,
    /// Mean bytes between heap-profile samples (GOMALLOC_PROFILE_RATE; units as
    /// GOMALLOC_MEMLIMIT's).
    #[arg(long, value_name = "BYTES", default_value = "512KiB")]
    profile_rate: String,
    /// The program and its arguments.
    #[arg(required = true, last = true)]
    program: Vec<String>,
}

/// The repository root (the workspace this binary was built in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory of the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The cargo to run for builds: the one that runs us, if any.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo_root());
    c
}

/// `target/release/libgomalloc-prof.so`, built by `shim-c/build-prof.sh` if missing.
fn profiling_lib_or_build() -> Result<PathBuf, String> {
    let lib = target_dir().join("release/libgomalloc-prof.so");
    if lib.exists() {
        return Ok(lib);
    }
    eprintln!("gomalloc: {} missing; building it", lib.display());
    let st = Command::new("sh")
        .arg(repo_root().join("shim-c/build-prof.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run shim-c/build-prof.sh: {e}"))?;
    if st.success() && lib.exists() {
        Ok(lib)
    } else {
        Err(format!(
            "could not build {} (shim-c/build-prof.sh)",
            lib.display()
        ))
    }
}

fn run(args: RunArgs) -> ExitCode {
    let profiling = args.heap_profile.is_some() || args.leak_report;
    let lib = if profiling {
        profiling_lib_or_build()
    } else {
        peers::gomalloc_lib_or_build()
    };
    let lib = match lib {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!("gomalloc run: {e}");
            return ExitCode::from(127);
        }
    };
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    };
    let mut cmd = Command::new(&args.program[0]);
    cmd.args(&args.program[1..]).env("LD_PRELOAD", preload);
    if args.stats {
        cmd.env("GOMALLOC_STATS", "1");
    }
    if let Some(path) = &args.heap_profile {
        // Absolute, so that a program that changes directory writes it where asked.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        cmd.env("GOMALLOC_PROFILE", path);
    } else if args.leak_report {
        cmd.env("GOMALLOC_PROFILE", "leaks");
    }
    if profiling {
        cmd.env("GOMALLOC_PROFILE_RATE", &args.profile_rate);
    }
    match cmd.status() {
        Ok(st) => match st.code() {
            Some(c) => ExitCode::from(c as u8),
            None => {
                use std::os::unix::process::ExitStatusExt;
                eprintln!(
                    "gomalloc run: {} killed by signal {}",
                    args.program[0],
                    st.signal().unwrap_or(0)
                );
                ExitCode::from(128 + st.signal().unwrap_or(0) as u8)
            }
        },
        Err(e) => {
            eprintln!("gomalloc run: cannot start {}: {e}", args.program[0]);
            ExitCode::from(127)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Bench(a) => match suite::bench(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gomalloc bench: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run(a) => run(a),
    }
}
