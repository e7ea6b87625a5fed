//! The allocators compared, and where each one is found on this machine.
//!
//! C workloads run under `LD_PRELOAD` with each library; Rust workloads run as one binary
//! per allocator (`rustload-*`, built with that allocator as `#[global_allocator]`).

use std::path::PathBuf;

/// One allocator of the comparison.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Column name: glibc, gomalloc, mimalloc, jemalloc, tcmalloc.
    pub name: &'static str,
    /// Library to preload for C workloads; `None` for glibc (nothing preloaded).
    pub preload: Option<PathBuf>,
    /// Whether C workloads can run with it (false when the library is missing).
    pub c_ok: bool,
    /// The `rustload-*` binary suffix for Rust workloads, if this allocator has one.
    pub rust_bin: Option<&'static str>,
    /// Environment for its runs (a gomalloc variant's settings).
    pub env: &'static [(&'static str, &'static str)],
}

/// All allocator names, in table order.
pub const NAMES: [&str; 5] = ["gomalloc", "glibc", "mimalloc", "jemalloc", "tcmalloc"];

/// Variants run only when named in `--allocators`: gomalloc with settings of its own, to
/// measure what a feature costs side by side (name, environment).
pub const VARIANTS: [(&str, &[(&str, &str)]); 2] = [
    ("gomalloc-noscav", &[("GOMALLOC_SCAVENGE", "off")]),
    // The heap profile's cost: Go's default rate, in the default library and `GoMalloc`.
    ("gomalloc-prof", &[("GOMALLOC_PROFILE_RATE", "512KiB")]),
];

const LIBDIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
];

fn find_lib(files: &[&str]) -> Option<PathBuf> {
    LIBDIRS
        .iter()
        .flat_map(|d| files.iter().map(move |f| PathBuf::from(d).join(f)))
        .find(|p| p.exists())
}

/// Where the gomalloc C library is expected: `$GOMALLOC_LIB`, or
/// `target/release/libgomalloc.so` (crate `shim-c`, package `gomalloc-shim`).
pub fn gomalloc_lib_path() -> PathBuf {
    std::env::var_os("GOMALLOC_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::target_dir().join("release/libgomalloc.so"))
}

/// The gomalloc C library, built with `cargo build --release -p gomalloc-shim` if missing.
pub fn gomalloc_lib_or_build() -> Result<PathBuf, String> {
    let lib = gomalloc_lib_path();
    if lib.exists() {
        return Ok(lib);
    }
    eprintln!("gomalloc: {} missing; building it", lib.display());
    let st = crate::cargo()
        .args(["build", "--release", "-p", "gomalloc-shim"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() && lib.exists() {
        Ok(lib)
    } else {
        Err(format!(
            "could not build {} (`cargo build --release -p gomalloc-shim`)",
            lib.display()
        ))
    }
}

/// Detects the peers; returns them (in [`NAMES`] order, filtered by `wanted` if not empty)
/// and one note per peer that is missing or partly missing.
pub fn detect(wanted: &[String]) -> (Vec<Peer>, Vec<String>) {
    let mut peers = Vec::new();
    let mut notes = Vec::new();
    for name in NAMES {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let (preload, rust_bin, missing) = match name {
            "glibc" => (None, Some("system"), None),
            "gomalloc" => {
                let lib = gomalloc_lib_path();
                let ok = lib.exists();
                (
                    ok.then_some(lib.clone()),
                    Some("gomalloc"),
                    (!ok).then(|| {
                        format!(
                            "gomalloc: {} not built, C workloads skipped \
                             (cargo build --release -p gomalloc-shim)",
                            lib.display()
                        )
                    }),
                )
            }
            "mimalloc" => lib_peer(
                &["libmimalloc.so.2", "libmimalloc.so"],
                "mimalloc",
                "libmimalloc2.0",
            ),
            "jemalloc" => lib_peer(
                &["libjemalloc.so.2", "libjemalloc.so"],
                "jemalloc",
                "libjemalloc2",
            ),
            _ => {
                let (p, _, m) = lib_peer(
                    &["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so"],
                    "tcmalloc",
                    "libtcmalloc-minimal4",
                );
                (p, None, m)
            }
        };
        if let Some(m) = missing {
            notes.push(m);
        }
        let c_ok = name == "glibc" || preload.is_some();
        if c_ok || rust_bin.is_some() {
            peers.push(Peer {
                name,
                preload,
                c_ok,
                rust_bin,
                env: &[],
            });
        }
    }
    for (name, env) in VARIANTS {
        if wanted.iter().any(|w| w == name) {
            let lib = gomalloc_lib_path();
            let ok = lib.exists();
            peers.push(Peer {
                name,
                preload: ok.then_some(lib),
                c_ok: ok,
                rust_bin: Some("gomalloc"),
                env,
            });
        }
    }
    for w in wanted {
        if !NAMES.contains(&w.as_str()) && !VARIANTS.iter().any(|(n, _)| n == w) {
            let variants: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
            notes.push(format!(
                "{w}: unknown allocator (known: {}; variants: {})",
                NAMES.join(", "),
                variants.join(", ")
            ));
        }
    }
    (peers, notes)
}

type Found = (Option<PathBuf>, Option<&'static str>, Option<String>);

fn lib_peer(files: &[&str], rust: &'static str, package: &str) -> Found {
    let lib = find_lib(files);
    let note = lib.is_none().then(|| {
        format!(
            "{rust}: {} not found, C workloads skipped (sudo apt-get install {package})",
            files[0]
        )
    });
    (lib, Some(rust), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_is_always_there_and_unknown_names_are_noted() {
        let (peers, notes) = detect(&["glibc".into(), "nosuch".into()]);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name, "glibc");
        assert!(peers[0].c_ok && peers[0].preload.is_none());
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("nosuch: unknown allocator"))
        );
    }

    #[test]
    fn variants_run_only_when_named_and_carry_their_settings() {
        let (all, _) = detect(&[]);
        assert!(all.iter().all(|p| p.env.is_empty()));
        let (peers, notes) = detect(&["gomalloc-noscav".into()]);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name, "gomalloc-noscav");
        assert_eq!(peers[0].rust_bin, Some("gomalloc"));
        assert_eq!(peers[0].env, &[("GOMALLOC_SCAVENGE", "off")]);
        assert!(notes.iter().all(|n| !n.contains("unknown")));
    }
}
