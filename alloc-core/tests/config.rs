//! `GOMALLOC_*` settings, read once at start-up: each case runs in a child process (this
//! test binary re-executed with `GOMALLOC_CONFIG_CASE` and the variables under test).

use std::process::{Command, Output};

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

/// Runs in the child: grows the heap to 16 MiB in use, then frees 16 MiB of large blocks
/// (memory to give back: the scavenger starts, if it is on), then prints what the
/// allocator made of its environment on stdout.
#[test]
fn config_child() {
    let Ok(case) = std::env::var("GOMALLOC_CONFIG_CASE") else {
        return; // in the parent this test does nothing
    };
    let v: Vec<Vec<u8>> = (0..4096).map(|_| vec![7u8; 4096]).collect();
    let started_before_free = gomalloc::stats().scavenge.starts > 0;
    let big: Vec<Vec<u8>> = (0..8).map(|_| vec![7u8; 2 << 20]).collect();
    drop(big);
    let cfg = gomalloc::Config::current();
    let st = gomalloc::stats();
    println!(
        "case={case} scavenge={} percent={} release={:?} limit={:?} stats={} \
         started before freeing={} after={}",
        cfg.scavenge,
        cfg.scavenge_percent,
        cfg.release_mode,
        cfg.memory_limit,
        cfg.stats_at_exit,
        started_before_free,
        st.scavenge.starts > 0
    );
    // Live until exit: the summary printed at exit must list them in their size class
    // (freed, their empty spans could be back in the page heap by then).
    std::mem::forget(v);
    if case == "stats_stderr_closed" {
        // As GNU coreutils do at exit: the summary must still reach the original stderr.
        // SAFETY: closing our own stderr; nothing in this process writes to it afterwards.
        unsafe { libc::close(2) };
    }
}

fn child(case: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["config_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("GOMALLOC_CONFIG_CASE", case);
    for var in [
        "GOMALLOC_SCAVENGE",
        "GOMALLOC_SCAVENGE_PERCENT",
        "GOMALLOC_RELEASE",
        "GOMALLOC_MEMLIMIT",
        "GOMALLOC_STATS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{case}: {out:?}");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn defaults_without_variables() {
    let o = child("defaults", &[]);
    let out = stdout(&o);
    assert!(
        out.contains("scavenge=true percent=1 release=DontNeed limit=None stats=false"),
        "{out}"
    );
    // Growing the heap starts no thread; freeing memory to give back does.
    assert!(
        out.contains("started before freeing=false after=true"),
        "{out}"
    );
    assert!(!stderr(&o).contains("gomalloc:"), "{}", stderr(&o));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn valid_values_are_applied() {
    let o = child(
        "valid",
        &[
            ("GOMALLOC_SCAVENGE", "off"),
            ("GOMALLOC_SCAVENGE_PERCENT", "5"),
            ("GOMALLOC_RELEASE", "free"),
            ("GOMALLOC_MEMLIMIT", "512MiB"),
        ],
    );
    let out = stdout(&o);
    assert!(
        out.contains("scavenge=false percent=5 release=Free limit=Some(536870912)"),
        "{out}"
    );
    // Scavenging off: no background thread is ever started.
    assert!(
        out.contains("started before freeing=false after=false"),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn invalid_values_warn_once_each_and_keep_the_defaults() {
    let o = child(
        "invalid",
        &[
            ("GOMALLOC_SCAVENGE", "maybe"),
            ("GOMALLOC_SCAVENGE_PERCENT", "0"),
            ("GOMALLOC_RELEASE", "madvise"),
            ("GOMALLOC_MEMLIMIT", "12 parsecs"),
            ("GOMALLOC_STATS", "loud"),
        ],
    );
    let out = stdout(&o);
    assert!(
        out.contains("scavenge=true percent=1 release=DontNeed limit=None stats=false"),
        "{out}"
    );
    let err = stderr(&o);
    // Run under shim-c's preload runner, the child holds two heaps that each read the
    // environment once: this binary's own and the preloaded libgomalloc.so.
    let heaps = if std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("libgomalloc")) {
        2
    } else {
        1
    };
    for expect in [
        "gomalloc: ignoring GOMALLOC_SCAVENGE=maybe: expected on, off, 1, 0, true, false; using on",
        "gomalloc: ignoring GOMALLOC_SCAVENGE_PERCENT=0: expected an integer 1..100; using 1",
        "gomalloc: ignoring GOMALLOC_RELEASE=madvise: expected dontneed, free; using dontneed",
        "gomalloc: ignoring GOMALLOC_MEMLIMIT=12 parsecs: expected a byte count",
        "gomalloc: ignoring GOMALLOC_STATS=loud: expected",
    ] {
        assert_eq!(err.matches(expect).count(), heaps, "{expect:?} in {err}");
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn stats_at_exit_prints_a_summary() {
    let o = child("stats", &[("GOMALLOC_STATS", "1")]);
    let err = stderr(&o);
    assert!(err.contains("gomalloc: ---- statistics ----"), "{err}");
    assert!(err.contains("gomalloc: heap_sys"), "{err}");
    assert!(
        err.contains("gomalloc: class     size    spans      objects"),
        "{err}"
    );
    // The 4 KiB vectors of the child show up in their size class.
    assert!(err.lines().any(|l| l.contains(" 4096 ")), "{err}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "runs the case in a child process: Miri cannot spawn processes"
)]
fn stats_at_exit_survive_a_closed_stderr() {
    let o = child("stats_stderr_closed", &[("GOMALLOC_STATS", "1")]);
    let err = stderr(&o);
    assert!(err.contains("gomalloc: ---- statistics ----"), "{err}");
    assert!(err.contains("gomalloc: heap_sys"), "{err}");
}
