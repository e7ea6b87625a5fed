//! The report of `gomalloc bench`: medians of the runs, tables of wall time, CPU time and
//! peak RSS with each peer's ratio to gomalloc and the geometric means, written to the
//! terminal and as `results.json`, `results.md` and `ratios.svg` under the output folder.

use crate::peers::Peer;
use crate::suite::Workload;
use crate::BenchArgs;
use plotters::prelude::*;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User + system CPU seconds.
    pub cpu: f64,
    /// Peak resident set size, KiB.
    pub peak_rss_kb: u64,
    /// `metric NAME VALUE` lines the workload printed.
    pub metrics: Vec<(String, f64)>,
}

/// One run: measured, or failed with a reason.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The run finished with status 0.
    Ok(Measurement),
    /// The run could not start, crashed or exited non-zero.
    Failed(String),
}

/// Everything measured, by workload and allocator.
pub struct Results {
    workloads: Vec<Workload>,
    peers: Vec<&'static str>,
    runs: usize,
    threads: usize,
    quick: bool,
    command: String,
    notes: Vec<String>,
    libs: Vec<(String, String)>,
    cells: Vec<Vec<Vec<Outcome>>>,
    /// Seconds the whole suite took.
    pub elapsed: f64,
}

/// The three measures of the tables.
#[derive(Clone, Copy)]
enum Measure {
    Wall,
    Cpu,
    Rss,
}

impl Measure {
    fn get(self, m: &Measurement) -> f64 {
        match self {
            Measure::Wall => m.wall,
            Measure::Cpu => m.cpu,
            Measure::Rss => m.peak_rss_kb as f64 / 1024.0,
        }
    }
    fn title(self) -> &'static str {
        match self {
            Measure::Wall => "Wall time (s)",
            Measure::Cpu => "CPU time, user + system (s)",
            Measure::Rss => "Peak RSS (MiB)",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Measure::Wall => "wall_s",
            Measure::Cpu => "cpu_s",
            Measure::Rss => "peak_rss_mib",
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8(s).ok()
        })
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Results {
    /// Empty results for this suite.
    pub fn new(
        workloads: &[Workload],
        peers: &[Peer],
        runs: usize,
        threads: usize,
        a: &BenchArgs,
        notes: Vec<String>,
    ) -> Results {
        let libs = peers
            .iter()
            .map(|p| {
                let lib = match &p.preload {
                    Some(l) => std::fs::canonicalize(l)
                        .unwrap_or_else(|_| l.clone())
                        .display()
                        .to_string(),
                    None if p.name == "glibc" => first_line("ldd", &["--version"]),
                    None => "(Rust workloads only)".into(),
                };
                (p.name.to_string(), lib)
            })
            .collect();
        Results {
            workloads: workloads.to_vec(),
            peers: crate::suite::peer_names(peers),
            runs,
            threads,
            quick: a.quick,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            notes,
            libs,
            cells: vec![vec![Vec::new(); peers.len()]; workloads.len()],
            elapsed: 0.0,
        }
    }

    /// Records one run.
    pub fn add(&mut self, workload: usize, peer: usize, o: Outcome) {
        self.cells[workload][peer].push(o);
    }

    /// Median measurement of a cell; `Err` if it failed, `None` if it was not run.
    fn cell(&self, w: usize, p: usize) -> Option<Result<Measurement, String>> {
        let runs = &self.cells[w][p];
        if runs.is_empty() {
            return None;
        }
        let mut ok = Vec::new();
        for r in runs {
            match r {
                Outcome::Ok(m) => ok.push(m),
                Outcome::Failed(why) => return Some(Err(why.clone())),
            }
        }
        let mut names: Vec<&String> = ok
            .iter()
            .flat_map(|m| m.metrics.iter().map(|x| &x.0))
            .collect();
        names.sort();
        names.dedup();
        let metrics = names
            .into_iter()
            .map(|n| {
                let v = ok
                    .iter()
                    .filter_map(|m| m.metrics.iter().find(|x| &x.0 == n).map(|x| x.1))
                    .collect();
                (n.clone(), median(v))
            })
            .collect();
        Some(Ok(Measurement {
            wall: median(ok.iter().map(|m| m.wall).collect()),
            cpu: median(ok.iter().map(|m| m.cpu).collect()),
            peak_rss_kb: median(ok.iter().map(|m| m.peak_rss_kb as f64).collect()) as u64,
            metrics,
        }))
    }

    fn reference(&self) -> Option<usize> {
        self.peers.iter().position(|p| *p == "gomalloc")
    }

    /// `peer / gomalloc` of a measure for one workload, when both ran.
    fn ratio(&self, m: Measure, w: usize, p: usize) -> Option<f64> {
        let g = self.reference()?;
        let (Some(Ok(a)), Some(Ok(b))) = (self.cell(w, p), self.cell(w, g)) else {
            return None;
        };
        let (x, y) = (m.get(&a), m.get(&b));
        (y > 0.0 && x > 0.0).then(|| x / y)
    }

    fn table(&self, m: Measure) -> String {
        let mut s = format!("### {}\n\n| workload |", m.title());
        for p in &self.peers {
            let _ = write!(s, " {p} |");
        }
        s.push_str("\n|---|");
        for _ in &self.peers {
            s.push_str("---:|");
        }
        s.push('\n');
        for (wi, w) in self.workloads.iter().enumerate() {
            let _ = write!(s, "| {} |", w.name);
            for pi in 0..self.peers.len() {
                let cell = match self.cell(wi, pi) {
                    None => "-".to_string(),
                    Some(Err(_)) => "failed".to_string(),
                    Some(Ok(x)) => {
                        let v = m.get(&x);
                        let v = if matches!(m, Measure::Rss) {
                            format!("{v:.1}")
                        } else {
                            format!("{v:.3}")
                        };
                        match self.ratio(m, wi, pi) {
                            Some(r) if Some(pi) != self.reference() => format!("{v} ({r:.2}x)"),
                            _ => v,
                        }
                    }
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
        s.push_str("| **geomean vs gomalloc** |");
        for pi in 0..self.peers.len() {
            if Some(pi) == self.reference() {
                s.push_str(" 1 |");
                continue;
            }
            let rs: Vec<f64> = (0..self.workloads.len())
                .filter_map(|wi| self.ratio(m, wi, pi))
                .collect();
            match geomean(&rs) {
                Some(g) => {
                    let _ = write!(s, " **{g:.2}x** (n={}) |", rs.len());
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
        s
    }

    fn metrics_table(&self) -> String {
        let mut s = String::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            let mut names: Vec<String> = Vec::new();
            for pi in 0..self.peers.len() {
                if let Some(Ok(m)) = self.cell(wi, pi) {
                    names.extend(m.metrics.iter().map(|x| x.0.clone()));
                }
            }
            names.sort();
            names.dedup();
            for n in names {
                let _ = write!(s, "| {} `{n}` |", w.name);
                let g = self.reference().and_then(|g| match self.cell(wi, g) {
                    Some(Ok(m)) => m.metrics.iter().find(|x| x.0 == n).map(|x| x.1),
                    _ => None,
                });
                for pi in 0..self.peers.len() {
                    let v = match self.cell(wi, pi) {
                        Some(Ok(m)) => m.metrics.iter().find(|x| x.0 == n).map(|x| x.1),
                        _ => None,
                    };
                    match (v, g) {
                        (Some(v), Some(g)) if g > 0.0 && Some(pi) != self.reference() => {
                            let _ = write!(s, " {v:.0} ({:.2}x) |", v / g);
                        }
                        (Some(v), _) => {
                            let _ = write!(s, " {v:.0} |");
                        }
                        _ => s.push_str(" - |"),
                    }
                }
                s.push('\n');
            }
        }
        if s.is_empty() {
            return s;
        }
        let mut h = String::from("### Metrics the workloads report\n\n| metric |");
        for p in &self.peers {
            let _ = write!(h, " {p} |");
        }
        h.push_str("\n|---|");
        for _ in &self.peers {
            h.push_str("---:|");
        }
        h.push('\n');
        h + &s
    }

    fn markdown(&self) -> String {
        let mut s = String::from("## gomalloc bench results\n\n");
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(
            s,
            "- machine: {}, {} CPUs, Linux {}",
            cpu_model(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            first_line("uname", &["-r"])
        );
        let _ = writeln!(
            s,
            "- {} run(s) per workload and allocator, median reported; {} threads; {} inputs; suite took {:.0} s",
            self.runs,
            self.threads,
            if self.quick { "quick" } else { "full" },
            self.elapsed
        );
        let _ = writeln!(
            s,
            "- compilers: {}; {}",
            first_line("gcc", &["--version"]),
            first_line("rustc", &["--version"])
        );
        for (p, l) in &self.libs {
            let _ = writeln!(s, "- {p}: {l}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "- note: {n}");
        }
        s.push_str(
            "\nRatios are peer / gomalloc: above 1 means gomalloc is faster (or smaller).\n\
             C workloads run under LD_PRELOAD; rust-* workloads use each allocator as the \
             Rust global allocator (glibc = `std::alloc::System`).\n\n",
        );
        for m in [Measure::Wall, Measure::Cpu, Measure::Rss] {
            s.push_str(&self.table(m));
            s.push('\n');
        }
        s.push_str(&self.metrics_table());
        let mut failures = String::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            for (pi, p) in self.peers.iter().enumerate() {
                if let Some(Err(why)) = self.cell(wi, pi) {
                    let _ = writeln!(failures, "- {} with {p}: {why}", w.name);
                }
            }
        }
        if !failures.is_empty() {
            s.push_str("\n### Failures\n\n");
            s.push_str(&failures);
        }
        s
    }

    fn json(&self) -> Value {
        let mut rows = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            for (pi, p) in self.peers.iter().enumerate() {
                let runs: Vec<Value> = self.cells[wi][pi]
                    .iter()
                    .map(|o| match o {
                        Outcome::Ok(m) => json!({
                            "wall_s": m.wall, "cpu_s": m.cpu, "peak_rss_kb": m.peak_rss_kb,
                            "metrics": m.metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                        }),
                        Outcome::Failed(why) => json!({ "failed": why }),
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let median = match self.cell(wi, pi) {
                    Some(Ok(m)) => json!({
                        "wall_s": m.wall, "cpu_s": m.cpu, "peak_rss_kb": m.peak_rss_kb,
                        "metrics": m.metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    }),
                    _ => Value::Null,
                };
                let ratios: serde_json::Map<String, Value> =
                    [Measure::Wall, Measure::Cpu, Measure::Rss]
                        .into_iter()
                        .filter_map(|m| {
                            self.ratio(m, wi, pi)
                                .map(|r| (m.key().to_string(), json!(r)))
                        })
                        .collect();
                rows.push(json!({
                    "workload": w.name, "allocator": p, "runs": runs,
                    "median": median, "ratio_to_gomalloc": ratios,
                }));
            }
        }
        json!({
            "command": self.command,
            "machine": {
                "cpu": cpu_model(),
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "kernel": first_line("uname", &["-r"]),
            },
            "runs": self.runs, "threads": self.threads, "quick": self.quick,
            "elapsed_s": self.elapsed,
            "allocators": self.libs.iter().map(|(p, l)| json!({"name": p, "library": l})).collect::<Vec<_>>(),
            "notes": self.notes,
            "results": rows,
        })
    }

    /// Horizontal grouped bars: per workload, each peer's wall-time ratio to gomalloc.
    fn svg(&self, path: &Path) -> Result<(), String> {
        let Some(g) = self.reference() else {
            return Ok(());
        };
        let others: Vec<usize> = (0..self.peers.len()).filter(|&p| p != g).collect();
        let rows: Vec<usize> = (0..self.workloads.len())
            .filter(|&w| {
                others
                    .iter()
                    .any(|&p| self.ratio(Measure::Wall, w, p).is_some())
            })
            .collect();
        if rows.is_empty() || others.is_empty() {
            return Ok(());
        }
        let bar = 9i32;
        let group = bar * others.len() as i32 + 8;
        let (left, top, width) = (150i32, 40i32, 560i32);
        let height = top + group * rows.len() as i32 + 50;
        let root = SVGBackend::new(path, (760, height as u32)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| format!("{}: {e}", path.display());
        root.fill(&WHITE).map_err(err)?;
        let max = rows
            .iter()
            .flat_map(|&w| {
                others
                    .iter()
                    .filter_map(move |&p| self.ratio(Measure::Wall, w, p))
            })
            .fold(1.0f64, f64::max)
            .min(10.0)
            * 1.05;
        let x = |r: f64| left + (r.min(max) / max * width as f64) as i32;
        let font = ("sans-serif", 12).into_font();
        root.draw(&Text::new(
            "Wall time, peer / gomalloc (right of the line: gomalloc faster)",
            (left, 12),
            font.clone(),
        ))
        .map_err(err)?;
        let colors = [RED, BLUE, GREEN, MAGENTA, CYAN];
        for (i, &w) in rows.iter().enumerate() {
            let y0 = top + i as i32 * group;
            root.draw(&Text::new(
                self.workloads[w].name,
                (5, y0 + group / 2 - 8),
                font.clone(),
            ))
            .map_err(err)?;
            for (k, &p) in others.iter().enumerate() {
                if let Some(r) = self.ratio(Measure::Wall, w, p) {
                    let y = y0 + k as i32 * bar;
                    root.draw(&Rectangle::new(
                        [(left, y), (x(r), y + bar - 1)],
                        colors[k % colors.len()].filled(),
                    ))
                    .map_err(err)?;
                }
            }
        }
        let bottom = top + group * rows.len() as i32;
        root.draw(&PathElement::new(
            vec![(x(1.0), top - 4), (x(1.0), bottom)],
            BLACK,
        ))
        .map_err(err)?;
        let mut t = 0.0;
        while t <= max {
            root.draw(&Text::new(
                format!("{t:.1}"),
                (x(t) - 8, bottom + 4),
                font.clone(),
            ))
            .map_err(err)?;
            t += if max > 4.0 { 1.0 } else { 0.5 };
        }
        for (k, &p) in others.iter().enumerate() {
            let lx = left + k as i32 * 110;
            root.draw(&Rectangle::new(
                [(lx, bottom + 24), (lx + 10, bottom + 34)],
                colors[k % colors.len()].filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                self.peers[p],
                (lx + 14, bottom + 22),
                font.clone(),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
        Ok(())
    }
}

/// Prints the tables and writes `results.json`, `results.md` and `ratios.svg` to `dir`.
pub fn write(r: &Results, dir: &Path) -> Result<(), String> {
    let md = r.markdown();
    println!("{md}");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let w = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))
    };
    w("results.md", md)?;
    w(
        "results.json",
        serde_json::to_string_pretty(&r.json()).expect("serialisable"),
    )?;
    r.svg(&dir.join("ratios.svg"))?;
    eprintln!("wrote {}/results.{{md,json}} and ratios.svg", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![7.0]), 7.0);
    }

    #[test]
    fn geomean_of_ratios() {
        assert_eq!(geomean(&[]), None);
        let g = geomean(&[2.0, 8.0]).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
    }
}
