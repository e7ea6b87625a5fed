//! Settings: `GOMALLOC_*` environment variables, read once at start-up without allocating,
//! and the same settings through [`Config`] / [`configure`] for the global allocator.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `GOMALLOC_SCAVENGE` | `on`/`off` (also `1`/`0`, `true`/`false`) | `on` |
//! | `GOMALLOC_SCAVENGE_PERCENT` | CPU budget of the background scavenger, percent of one core, `1`..`100` | `1` |
//! | `GOMALLOC_RELEASE` | `dontneed` (RSS drops at once) or `free` (`MADV_FREE`: lazily, under memory pressure) | `dontneed` |
//! | `GOMALLOC_MEMLIMIT` | soft memory limit: bytes with an optional unit `B`, `KiB`, `MiB`, `GiB`, `TiB` (or `K`, `M`, `G`, `T`), or `off` | `off` |
//! | `GOMALLOC_PROFILE_RATE` | mean bytes between heap-profile samples, with the units of `GOMALLOC_MEMLIMIT` (e.g. `512KiB`; `1`: every allocation), or `0`/`off` | `off` |
//! | `GOMALLOC_PROFILE` | what to do with the heap profile at exit: a path (pprof, gzipped; `%p` becomes the process id), `leaks` (the sampled blocks still live, on stderr), or `leaks:PATH` (them, as a profile) | none |
//! | `GOMALLOC_STATS` | `1` prints a statistics summary to stderr at exit (through a close-on-exec duplicate of it taken at start-up, so a program that closes its stderr still gets one); `0` does not | `0` |
//!
//! An invalid value prints one warning naming the variable and the accepted values, and the
//! default is used. Every setting lives in an atomic; a change through [`configure`] takes
//! effect at the scavenger's next step (within 100 ms).
//!
//! Layer: support (the crate root's module map, `lib.rs`).

use crate::report::{write_stderr, Line};
use crate::sync::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// How free pages are handed back to the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseMode {
    /// `MADV_DONTNEED`: resident memory drops at once; the pages read zero afterwards.
    DontNeed,
    /// `MADV_FREE`: the kernel reclaims the pages only under memory pressure; until then
    /// they keep their old contents (so gomalloc does not treat released pages as zero).
    Free,
}

/// The allocator's settings. Start from [`Config::current`] (or `Default`) and apply with
/// [`configure`].
///
/// ```
/// let cfg = gomalloc::Config::current()
///     .scavenge_percent(5)
///     .memory_limit(Some(512 << 20));
/// gomalloc::configure(cfg);
/// assert_eq!(gomalloc::Config::current().memory_limit, Some(512 << 20));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Run the background scavenger.
    pub scavenge: bool,
    /// The scavenger's CPU budget in percent of one core (1..=100).
    pub scavenge_percent: u8,
    /// How pages are released.
    pub release_mode: ReleaseMode,
    /// Soft memory limit in bytes: above it the scavenger ignores its CPU budget and the
    /// heap releases memory synchronously as it grows.
    pub memory_limit: Option<usize>,
    /// Print statistics to stderr at process exit.
    pub stats_at_exit: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scavenge: true,
            scavenge_percent: 1,
            release_mode: ReleaseMode::DontNeed,
            memory_limit: None,
            stats_at_exit: false,
        }
    }
}

impl Config {
    /// The settings in force now.
    pub fn current() -> Config {
        Config {
            scavenge: SCAVENGE.load(Ordering::Relaxed),
            scavenge_percent: SCAVENGE_PERCENT.load(Ordering::Relaxed),
            release_mode: release_mode(),
            memory_limit: match MEMLIMIT.load(Ordering::Relaxed) {
                usize::MAX => None,
                n => Some(n),
            },
            stats_at_exit: STATS_AT_EXIT.load(Ordering::Relaxed),
        }
    }

    /// Sets [`Config::scavenge`].
    pub fn scavenge(mut self, on: bool) -> Config {
        self.scavenge = on;
        self
    }

    /// Sets [`Config::scavenge_percent`] (clamped to 1..=100).
    pub fn scavenge_percent(mut self, pct: u8) -> Config {
        self.scavenge_percent = pct.clamp(1, 100);
        self
    }

    /// Sets [`Config::release_mode`].
    pub fn release_mode(mut self, mode: ReleaseMode) -> Config {
        self.release_mode = mode;
        self
    }

    /// Sets [`Config::memory_limit`].
    pub fn memory_limit(mut self, limit: Option<usize>) -> Config {
        self.memory_limit = limit;
        self
    }

    /// Sets [`Config::stats_at_exit`].
    pub fn stats_at_exit(mut self, on: bool) -> Config {
        self.stats_at_exit = on;
        self
    }
}

static SCAVENGE: AtomicBool = AtomicBool::new(true);
static SCAVENGE_PERCENT: AtomicU8 = AtomicU8::new(1);
static RELEASE_FREE: AtomicBool = AtomicBool::new(false);
/// Set once `MADV_FREE` was ever used: from then on released pages may hold old bytes.
static EVER_FREE: AtomicBool = AtomicBool::new(false);
static MEMLIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static STATS_AT_EXIT: AtomicBool = AtomicBool::new(false);

/// Applies `cfg` to the running allocator.
pub fn configure(cfg: Config) {
    SCAVENGE.store(cfg.scavenge, Ordering::Relaxed);
    SCAVENGE_PERCENT.store(cfg.scavenge_percent.clamp(1, 100), Ordering::Relaxed);
    let free = cfg.release_mode == ReleaseMode::Free;
    if free {
        EVER_FREE.store(true, Ordering::Relaxed);
    }
    RELEASE_FREE.store(free, Ordering::Relaxed);
    MEMLIMIT.store(cfg.memory_limit.unwrap_or(usize::MAX), Ordering::Relaxed);
    STATS_AT_EXIT.store(cfg.stats_at_exit, Ordering::Relaxed);
    if cfg.stats_at_exit {
        crate::stats::keep_stderr_for_exit();
    }
}

pub(crate) fn scavenge_on() -> bool {
    SCAVENGE.load(Ordering::Relaxed)
}

#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn scavenge_percent() -> u8 {
    SCAVENGE_PERCENT.load(Ordering::Relaxed)
}

pub(crate) fn release_mode() -> ReleaseMode {
    if RELEASE_FREE.load(Ordering::Relaxed) {
        ReleaseMode::Free
    } else {
        ReleaseMode::DontNeed
    }
}

/// Whether pages released to the OS are known to read zero (no `MADV_FREE` ever used).
pub(crate) fn released_pages_are_zero() -> bool {
    !EVER_FREE.load(Ordering::Relaxed)
}

/// The soft memory limit in bytes (`usize::MAX`: none).
pub(crate) fn memory_limit() -> usize {
    MEMLIMIT.load(Ordering::Relaxed)
}

#[cfg_attr(miri, allow(dead_code))]
pub(crate) fn stats_at_exit() -> bool {
    STATS_AT_EXIT.load(Ordering::Relaxed)
}

// ---- the environment ----

/// Reads every `GOMALLOC_*` variable once. Called from the one-time set-up
/// ([`crate::runtime`]); `getenv` neither allocates nor locks.
pub(crate) fn read_env() {
    let mut cfg = Config::default();
    if let Some(v) = getenv(c"GOMALLOC_SCAVENGE") {
        match parse_bool(v) {
            Some(b) => cfg.scavenge = b,
            None => warn("GOMALLOC_SCAVENGE", v, "on, off, 1, 0, true, false", "on"),
        }
    }
    if let Some(v) = getenv(c"GOMALLOC_SCAVENGE_PERCENT") {
        match parse_percent(v) {
            Some(p) => cfg.scavenge_percent = p,
            None => warn("GOMALLOC_SCAVENGE_PERCENT", v, "an integer 1..100", "1"),
        }
    }
    if let Some(v) = getenv(c"GOMALLOC_RELEASE") {
        match parse_release(v) {
            Some(m) => cfg.release_mode = m,
            None => warn("GOMALLOC_RELEASE", v, "dontneed, free", "dontneed"),
        }
    }
    if let Some(v) = getenv(c"GOMALLOC_MEMLIMIT") {
        match parse_limit(v) {
            Some(l) => cfg.memory_limit = l,
            None => warn(
                "GOMALLOC_MEMLIMIT",
                v,
                "a byte count with an optional unit B, KiB, MiB, GiB, TiB (e.g. 512MiB), or off",
                "off",
            ),
        }
    }
    read_profile_env();
    if let Some(v) = getenv(c"GOMALLOC_STATS") {
        match parse_bool(v) {
            Some(b) => cfg.stats_at_exit = b,
            None => warn("GOMALLOC_STATS", v, "1, 0, on, off, true, false", "0"),
        }
    }
    configure(cfg);
}

/// `GOMALLOC_PROFILE` as read at start-up (a pointer into the environment, and its length).
static PROFILE_OUTPUT: crate::sync::AtomicPtr<u8> = crate::sync::AtomicPtr::new(core::ptr::null_mut());
static PROFILE_OUTPUT_LEN: AtomicUsize = AtomicUsize::new(0);
/// The process id at start-up: a forked child has another (see `profile::at_exit`).
static START_PID: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(0);

/// `GOMALLOC_PROFILE_RATE` and `GOMALLOC_PROFILE`.
fn read_profile_env() {
    let rate = getenv(c"GOMALLOC_PROFILE_RATE");
    let output = getenv(c"GOMALLOC_PROFILE");
    if let Some(v) = rate {
        match parse_rate(v) {
            // The stacks would be wrong (`profile::unwind`).
            Some(r) if r != 0 && !crate::profile::unwind::stacks_walkable() => warn(
                "GOMALLOC_PROFILE_RATE",
                v,
                "a gomalloc whose stacks the profile can walk (frame pointers, or \
                 call-frame information on x86-64)",
                "off",
            ),
            Some(r) => crate::profile::set_rate(r),
            None => warn(
                "GOMALLOC_PROFILE_RATE",
                v,
                "a byte count with an optional unit B, KiB, MiB, GiB (e.g. 512KiB), or 0, off",
                "off",
            ),
        }
    }
    if let Some(v) = output {
        if v.is_empty() {
            warn("GOMALLOC_PROFILE", v, "a path, leaks, or leaks:PATH", "no profile");
        } else {
            PROFILE_OUTPUT_LEN.store(v.len(), Ordering::Relaxed);
            PROFILE_OUTPUT.store(v.as_ptr().cast_mut(), Ordering::Release);
            if v == b"leaks" {
                crate::stats::keep_stderr_for_exit();
            }
        }
    }
    // SAFETY: getpid has no preconditions.
    START_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// `GOMALLOC_PROFILE`, if it was set.
pub(crate) fn profile_output() -> Option<&'static [u8]> {
    let p = PROFILE_OUTPUT.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` and the length were taken from a `getenv` result, which lives for the
    // process (nothing here calls setenv).
    Some(unsafe { core::slice::from_raw_parts(p, PROFILE_OUTPUT_LEN.load(Ordering::Relaxed)) })
}

/// The process id when the environment was read.
pub(crate) fn start_pid() -> u32 {
    START_PID.load(Ordering::Relaxed)
}

fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into the
    // environment, which lives (unchanged, as nothing here calls setenv) for the process.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

/// `gomalloc: ignoring GOMALLOC_X=<value>: expected <accepted>; using <default>`
fn warn(name: &str, value: &[u8], accepted: &str, default: &str) {
    let mut l = Line::new();
    l.str("gomalloc: ignoring ")
        .str(name)
        .str("=")
        .bytes(value)
        .str(": expected ")
        .str(accepted)
        .str("; using ")
        .str(default)
        .str("\n");
    write_stderr(l.as_bytes());
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// `on/off`, `1/0`, `true/false`, `yes/no` (ASCII case-insensitive).
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    let v = trim(v);
    for t in [&b"1"[..], b"on", b"true", b"yes"] {
        if v.eq_ignore_ascii_case(t) {
            return Some(true);
        }
    }
    for f in [&b"0"[..], b"off", b"false", b"no"] {
        if v.eq_ignore_ascii_case(f) {
            return Some(false);
        }
    }
    None
}

/// An integer percentage 1..=100.
pub fn parse_percent(v: &[u8]) -> Option<u8> {
    match parse_u64(trim(v))? {
        p @ 1..=100 => Some(p as u8),
        _ => None,
    }
}

/// `dontneed` or `free`.
pub fn parse_release(v: &[u8]) -> Option<ReleaseMode> {
    let v = trim(v);
    if v.eq_ignore_ascii_case(b"dontneed") {
        Some(ReleaseMode::DontNeed)
    } else if v.eq_ignore_ascii_case(b"free") {
        Some(ReleaseMode::Free)
    } else {
        None
    }
}

/// A memory limit: `off`/`none` (no limit), or a positive byte count with an optional
/// binary unit, as Go's `GOMEMLIMIT`: `B`, `KiB`, `MiB`, `GiB`, `TiB` (`K`, `M`, `G`, `T`
/// and `KB`.. are read as the same binary units).
pub fn parse_limit(v: &[u8]) -> Option<Option<usize>> {
    let v = trim(v);
    if v.eq_ignore_ascii_case(b"off") || v.eq_ignore_ascii_case(b"none") {
        return Some(None);
    }
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = parse_u64(&v[..digits])?;
    let unit = trim(&v[digits..]);
    let shift = UNITS
        .iter()
        .find(|(names, _)| names.iter().any(|n| unit.eq_ignore_ascii_case(n)))?
        .1;
    let bytes = n.checked_mul(1u64 << shift)?;
    if bytes == 0 || bytes > usize::MAX as u64 / 2 {
        return None;
    }
    Some(Some(bytes as usize))
}

/// A heap-profile sampling rate: `0` or `off` (sampling off), or a byte count with an
/// optional unit as [`parse_limit`] reads it.
pub fn parse_rate(v: &[u8]) -> Option<usize> {
    let t = trim(v);
    if t == b"0" || t.eq_ignore_ascii_case(b"off") {
        return Some(0);
    }
    parse_limit(v)?
}

/// Unit suffixes and their binary shifts.
const UNITS: [(&[&[u8]], u32); 5] = [
    (&[b"", b"b"], 0),
    (&[b"k", b"kb", b"kib"], 10),
    (&[b"m", b"mb", b"mib"], 20),
    (&[b"g", b"gb", b"gib"], 30),
    (&[b"t", b"tb", b"tib"], 40),
];

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(b"on"), Some(true));
        assert_eq!(parse_bool(b" TRUE "), Some(true));
        assert_eq!(parse_bool(b"1"), Some(true));
        assert_eq!(parse_bool(b"off"), Some(false));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"2"), None);
        assert_eq!(parse_bool(b""), None);
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent(b"1"), Some(1));
        assert_eq!(parse_percent(b"100"), Some(100));
        assert_eq!(parse_percent(b"0"), None);
        assert_eq!(parse_percent(b"101"), None);
        assert_eq!(parse_percent(b"5%"), None);
        assert_eq!(parse_percent(b"99999999999999999999"), None);
    }

    #[test]
    fn release_modes() {
        assert_eq!(parse_release(b"dontneed"), Some(ReleaseMode::DontNeed));
        assert_eq!(parse_release(b"FREE"), Some(ReleaseMode::Free));
        assert_eq!(parse_release(b"madvise"), None);
    }

    #[test]
    fn profile_rates() {
        assert_eq!(parse_rate(b"0"), Some(0));
        assert_eq!(parse_rate(b"off"), Some(0));
        assert_eq!(parse_rate(b"1"), Some(1));
        assert_eq!(parse_rate(b"524288"), Some(512 << 10));
        assert_eq!(parse_rate(b"512KiB"), Some(512 << 10));
        assert_eq!(parse_rate(b"1MiB"), Some(1 << 20));
        assert_eq!(parse_rate(b"-5"), None);
        assert_eq!(parse_rate(b"fast"), None);
        assert_eq!(parse_rate(b""), None);
    }

    #[test]
    fn limits_with_units() {
        assert_eq!(parse_limit(b"off"), Some(None));
        assert_eq!(parse_limit(b"4096"), Some(Some(4096)));
        assert_eq!(parse_limit(b"512MiB"), Some(Some(512 << 20)));
        assert_eq!(parse_limit(b"512 MiB"), Some(Some(512 << 20)));
        assert_eq!(parse_limit(b"2GiB"), Some(Some(2 << 30)));
        assert_eq!(parse_limit(b"2g"), Some(Some(2 << 30)));
        assert_eq!(parse_limit(b"1TiB"), Some(Some(1 << 40)));
        assert_eq!(parse_limit(b"64KiB"), Some(Some(64 << 10)));
        assert_eq!(parse_limit(b"0"), None);
        assert_eq!(parse_limit(b"MiB"), None);
        assert_eq!(parse_limit(b"12XB"), None);
        assert_eq!(parse_limit(b"-1"), None);
        assert_eq!(parse_limit(b"99999999999TiB"), None);
    }
}
