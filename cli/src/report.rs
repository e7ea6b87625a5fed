//! The report of `gomalloc bench`: medians of the runs, tables of wall time, CPU time and
//! peak RSS with each peer's ratio to gomalloc and the geometric means, written to the
//! terminal and as `results.json`, `results.md` and `ratios.svg` under the output folder.

use crate::BenchArgs;
use crate::peers::Peer;
use crate::suite::Workload;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{Value, json};
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

    /// `ratios.svg`: per workload, each peer's wall time and peak RSS over gomalloc's, drawn
    /// by [`ratio_chart`] with a last row of geometric means (those of the tables).
    fn svg(&self, path: &Path) -> Result<(), String> {
        let Some(g) = self.reference() else {
            return Ok(());
        };
        let others: Vec<usize> = (0..self.peers.len()).filter(|&p| p != g).collect();
        if others.is_empty() {
            return Ok(());
        }
        let ratios = |m: Measure, w: usize| -> Vec<Option<f64>> {
            others.iter().map(|&p| self.ratio(m, w, p)).collect()
        };
        let mut rows: Vec<ChartRow> = (0..self.workloads.len())
            .map(|w| ChartRow {
                label: self.workloads[w].name.to_string(),
                ratios: [ratios(Measure::Wall, w), ratios(Measure::Rss, w)],
                summary: false,
            })
            .filter(|r| r.ratios.iter().flatten().any(Option::is_some))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let geomeans = |panel: usize| -> Vec<Option<f64>> {
            (0..others.len())
                .map(|k| {
                    let v: Vec<f64> = rows.iter().filter_map(|r| r.ratios[panel][k]).collect();
                    geomean(&v)
                })
                .collect()
        };
        let summary = ChartRow {
            label: "geomean".into(),
            ratios: [geomeans(0), geomeans(1)],
            summary: true,
        };
        rows.push(summary);
        let names: Vec<&str> = others.iter().map(|&p| self.peers[p]).collect();
        ratio_chart(path, &names, &rows)
    }
}

/// One row of the ratio chart: per panel (wall time, peak RSS) and peer, `peer / gomalloc`,
/// `None` where the peer did not run or failed.
struct ChartRow {
    label: String,
    ratios: [Vec<Option<f64>>; 2],
    /// The geomean row: bold, below a rule.
    summary: bool,
}

/// The chart's panels: title, what a bar left of 1 means, what a bar right of 1 means.
const PANELS: [(&str, &str, &str); 2] = [
    ("Wall time", "peer faster", "gomalloc faster"),
    ("Peak RSS", "peer smaller", "gomalloc smaller"),
];

/// Colours of the peers' bars, in the order of the peers (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

/// A ratio as the chart writes it: `37x`, `2.4x`, `0.81x`.
fn ratio_label(r: f64) -> String {
    if r >= 9.95 {
        format!("{r:.0}x")
    } else if r >= 1.0 {
        format!("{r:.1}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.3}x")
    }
}

/// A tick of the axis: `0.25x`, `0.67x`, `1x`, `4x`.
fn tick_label(t: f64) -> String {
    format!("{}x", (t * 100.0).round() / 100.0)
}

/// Octaves the axis reaches on each side of 1: 1 (0.5x to 2x) when every ratio fits, else 2
/// (0.25x to 4x), beyond which bars are clipped at the panel's edge and labelled with their
/// value. Both panels share it, so that equal lengths mean equal ratios.
fn chart_octaves(rows: &[ChartRow]) -> f64 {
    let extent = rows
        .iter()
        .flat_map(|r| r.ratios.iter().flatten().flatten())
        .map(|r| r.log2().abs())
        .fold(0.0, f64::max);
    if extent <= 1.0 + 1e-9 { 1.0 } else { 2.0 }
}

/// Draws `rows` as horizontal bars in two panels side by side, wall time and peak RSS, each
/// on a log2 axis centred on 1: a bar grows from 1 to the right where the peer's figure is
/// larger than gomalloc's (gomalloc better) and to the left where it is smaller.
fn ratio_chart(path: &Path, peers: &[&str], rows: &[ChartRow]) -> Result<(), String> {
    const PITCH: i32 = 10; // one bar and its gap
    const LABELS_W: i32 = 132; // the workload names
    const MARGIN: i32 = 46; // either side of a plot, for the values of clipped bars
    const PLOT_W: i32 = 300;
    const GAP: i32 = 14;
    const TOP: i32 = 108;
    let octaves = chart_octaves(rows);
    let group = PITCH * peers.len() as i32 + 10;
    let panel_w = 2 * MARGIN + PLOT_W;
    let width = LABELS_W + 2 * panel_w + GAP;
    let bottom = TOP + group * rows.len() as i32;
    let height = bottom + 46;
    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("{}: {e}", path.display());
    let grey = |v: u8| RGBColor(v, v, v);
    let text = |s: &str, (x, y): (i32, i32), size: f64, bold: bool, color: RGBColor, h: HPos| {
        let font = ("sans-serif", size).into_font().style(if bold {
            FontStyle::Bold
        } else {
            FontStyle::Normal
        });
        root.draw_text(
            s,
            &font.color(&color).pos(Pos::new(h, VPos::Center)),
            (x, y),
        )
        .map_err(err)
    };
    root.fill(&WHITE).map_err(err)?;

    let lim = 2f64.powf(octaves);
    text(
        &format!(
            "Peer / gomalloc, wall time and peak RSS (median of the runs; log scale, {} to {})",
            tick_label(1.0 / lim),
            tick_label(lim)
        ),
        (8, 14),
        17.0,
        true,
        BLACK,
        HPos::Left,
    )?;
    text(
        "Right of 1: gomalloc faster or smaller; left of 1: the peer is. \
         A bar cut at the edge has its value written beyond it; the last row gives the \
         geometric means.",
        (8, 34),
        14.0,
        false,
        grey(60),
        HPos::Left,
    )?;
    let mut lx = 8;
    for (k, p) in peers.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        root.draw(&Rectangle::new([(lx, 49), (lx + 11, 60)], c.filled()))
            .map_err(err)?;
        text(p, (lx + 16, 55), 14.0, false, BLACK, HPos::Left)?;
        lx += 30 + 7 * p.len() as i32;
    }

    for (i, row) in rows.iter().enumerate() {
        let y0 = TOP + i as i32 * group;
        if i % 2 == 0 && !row.summary {
            root.draw(&Rectangle::new(
                [(0, y0), (width, y0 + group)],
                grey(244).filled(),
            ))
            .map_err(err)?;
        }
        if row.summary {
            root.draw(&PathElement::new(vec![(4, y0), (width - 4, y0)], grey(90)))
                .map_err(err)?;
        }
        text(
            &row.label,
            (8, y0 + group / 2),
            14.0,
            row.summary,
            BLACK,
            HPos::Left,
        )?;
    }

    for (pi, (title, left, right)) in PANELS.iter().enumerate() {
        let px = LABELS_W + pi as i32 * (panel_w + GAP) + MARGIN;
        let one = px + PLOT_W / 2;
        let x = |r: f64| {
            one + (r.log2().clamp(-octaves, octaves) / octaves * (PLOT_W / 2) as f64).round() as i32
        };
        text(
            &format!("{title}: peer / gomalloc"),
            (one, TOP - 30),
            15.0,
            true,
            BLACK,
            HPos::Center,
        )?;
        let mut ticks: Vec<f64> = (-(octaves as i32)..=octaves as i32)
            .map(|j| 2f64.powi(j))
            .collect();
        if octaves == 1.0 {
            ticks.extend([2.0 / 3.0, 1.5]);
        }
        for &t in &ticks {
            let c = if t == 1.0 { BLACK } else { grey(200) };
            root.draw(&PathElement::new(vec![(x(t), TOP - 4), (x(t), bottom)], c))
                .map_err(err)?;
            for ty in [TOP - 12, bottom + 9] {
                text(
                    &tick_label(t),
                    (x(t), ty),
                    13.0,
                    t == 1.0,
                    grey(40),
                    HPos::Center,
                )?;
            }
        }
        text(
            &format!("\u{2190} {left}"),
            (one - 8, bottom + 28),
            13.0,
            false,
            grey(60),
            HPos::Right,
        )?;
        text(
            &format!("{right} \u{2192}"),
            (one + 8, bottom + 28),
            13.0,
            false,
            grey(60),
            HPos::Left,
        )?;
        for (i, row) in rows.iter().enumerate() {
            let y0 = TOP + i as i32 * group + 5;
            for (k, r) in row.ratios[pi].iter().enumerate() {
                let y = y0 + k as i32 * PITCH;
                let mid = y + (PITCH - 2) / 2;
                let Some(r) = *r else {
                    text("n/a", (one + 4, mid), 11.0, false, grey(130), HPos::Left)?;
                    continue;
                };
                let c = PALETTE[k % PALETTE.len()];
                let end = x(r);
                root.draw(&Rectangle::new(
                    [(one.min(end), y), (one.max(end), y + PITCH - 2)],
                    c.filled(),
                ))
                .map_err(err)?;
                let high = r > lim * (1.0 + 1e-9);
                let low = r < (1.0 - 1e-9) / lim;
                if high || low {
                    // A slanted break near the edge: the bar is longer than drawn.
                    let b = if high { end - 10 } else { end + 6 };
                    root.draw(&Polygon::new(
                        vec![
                            (b, y + PITCH - 2),
                            (b + 3, y + PITCH - 2),
                            (b + 6, y),
                            (b + 3, y),
                        ],
                        WHITE.filled(),
                    ))
                    .map_err(err)?;
                }
                // Clipped bars and the geomeans (as in the tables) carry their values.
                let label = if row.summary {
                    format!("{r:.2}x")
                } else if high || low {
                    ratio_label(r)
                } else {
                    continue;
                };
                let (lx, h) = if r >= 1.0 {
                    (end + 4, HPos::Left)
                } else {
                    (end - 4, HPos::Right)
                };
                let dark = RGBColor(c.0 / 2, c.1 / 2, c.2 / 2);
                text(&label, (lx, mid), 12.0, true, dark, h)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
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

    /// Results of the whole suite with the usual peers: gomalloc's wall time and peak RSS,
    /// and each peer's as gomalloc's times `ratio(workload, peer)` (`None`: not run).
    fn synthetic(ratio: impl Fn(&str, &str) -> Option<(f64, f64)>) -> Results {
        let workloads = crate::suite::WORKLOADS.to_vec();
        let peers = crate::peers::NAMES.to_vec();
        let mut cells = vec![vec![Vec::new(); peers.len()]; workloads.len()];
        for (wi, w) in workloads.iter().enumerate() {
            let (wall, rss_kb) = (0.5 + wi as f64 * 0.1, 20_000 + 3_000 * wi as u64);
            for (pi, p) in peers.iter().enumerate() {
                let Some((rw, rr)) = (if *p == "gomalloc" {
                    Some((1.0, 1.0))
                } else {
                    ratio(w.name, p)
                }) else {
                    continue;
                };
                for jitter in [0.99, 1.0, 1.01] {
                    cells[wi][pi].push(Outcome::Ok(Measurement {
                        wall: wall * rw * jitter,
                        cpu: wall * rw * jitter,
                        peak_rss_kb: (rss_kb as f64 * rr) as u64,
                        metrics: Vec::new(),
                    }));
                }
            }
        }
        Results {
            workloads,
            peers,
            runs: 3,
            threads: 2,
            quick: true,
            command: "gomalloc bench".into(),
            notes: Vec::new(),
            libs: Vec::new(),
            cells,
            elapsed: 0.0,
        }
    }

    /// The strings of an SVG's `<text>` elements (plotters writes each on a line of its own).
    fn texts(svg: &str) -> Vec<&str> {
        let lines: Vec<&str> = svg.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].starts_with("<text"))
            .map(|w| w[1].trim())
            .collect()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gomalloc-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn ratio_labels() {
        assert_eq!(ratio_label(37.2), "37x");
        assert_eq!(ratio_label(9.96), "10x");
        assert_eq!(ratio_label(4.26), "4.3x");
        assert_eq!(ratio_label(0.812), "0.81x");
        assert_eq!(ratio_label(0.0456), "0.046x");
    }

    /// The chart of a suite with wins and losses past the axis: both panels, bars clipped on
    /// either side with their values, the peers in the legend, `n/a` where a peer did not
    /// run (tcmalloc has no Rust workloads) or failed.
    #[test]
    fn ratio_chart_clips_and_labels_on_a_log_axis() {
        let mut r = synthetic(|w, p| {
            if p == "tcmalloc" && w.starts_with("rust-") {
                return None;
            }
            let k = (w.len() * 7 + p.len() * 13) % 11;
            Some(match (w, p) {
                ("malloc-large", "glibc") => (37.4, 1.9),
                ("fragment", "mimalloc") => (0.37, 0.13),
                _ => (0.75 + k as f64 * 0.09, 0.7 + k as f64 * 0.12),
            })
        });
        let (w, p) = (r.workloads.len() - 1, r.peers.len() - 2);
        r.cells[w][p] = vec![Outcome::Failed("crashed".into())];
        let dir = temp_dir("ratio-chart");
        let path = dir.join("ratios.svg");
        r.svg(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let t = texts(&svg);
        for want in [
            "Wall time: peer / gomalloc",
            "Peak RSS: peer / gomalloc",
            "37x",
            "0.13x",
            "geomean",
            "n/a",
            "0.25x",
            "4x",
            "log scale, 0.25x to 4x",
            "gomalloc faster",
            "gomalloc smaller",
            "glibc",
            "mimalloc",
            "jemalloc",
            "tcmalloc",
        ] {
            assert!(
                t.iter().any(|s| s.contains(want)),
                "{want:?} is not in {}",
                path.display()
            );
        }
        // The clipped bars' values, each once; bars within the axis have none.
        assert_eq!(t.iter().filter(|s| **s == "37x").count(), 1);
        assert_eq!(t.iter().filter(|s| **s == "0.13x").count(), 1);
        assert!(!t.contains(&"1.9x") && !t.contains(&"0.37x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With every ratio within 2x the axis reaches 0.5x to 2x and nothing is clipped.
    #[test]
    fn ratio_chart_narrows_its_axis() {
        let r = synthetic(|w, _| Some((1.0 + w.len() as f64 / 40.0, 0.9)));
        let dir = temp_dir("ratio-chart-narrow");
        let path = dir.join("ratios.svg");
        r.svg(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let t = texts(&svg);
        for want in ["0.5x", "0.67x", "1x", "1.5x", "2x"] {
            assert!(t.contains(&want), "{want:?} is not in {}", path.display());
        }
        assert!(!t.contains(&"4x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
