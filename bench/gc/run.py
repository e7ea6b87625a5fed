#!/usr/bin/env python3
"""Side-by-side GC benchmark: binary-trees and GCBench in Rust (gomalloc-gc), Go 1.19 and
C with the Boehm collector. Prints a Markdown table: median wall and CPU (user+sys) time
over the runs, peak RSS, GC cycles, and the longest pause as each collector's own trace
reports it.

Needs cargo; the peers need golang-go (Go 1.19) and gcc with libgc-dev, and a peer whose
toolchain is missing is skipped with a note on stderr. Usage:
    python3 bench/gc/run.py [--depth N] [--runs R] > table.md

With --pause, runs the pause benchmark instead (gc/examples/pause.rs and bench/gc/pause.go:
a live graph of small objects, two threads replacing parts of it) in Rust with the
stopped mark (GOMALLOC_GCCONCURRENT=0) and with the concurrent one (the default), and in Go, once each,
and prints its table: cycles, world-stopped pause max / p99 / p50, share of the wall
time stopped, mutator throughput, peak RSS:
    python3 bench/gc/run.py --pause [--live-mib 1024] [--seconds 20]
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "target", "gc-bench")


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def skip(peer, why):
    sys.stderr.write(f"run.py: skipping {peer}: {why}\n")


def build(pause=False):
    """Builds the Rust programs and every peer it can; returns the implementations built."""
    os.makedirs(OUT, exist_ok=True)
    examples = ["pause"] if pause else ["binary_trees", "gcbench"]
    sh(["cargo", "build", "--release", "-p", "gomalloc-gc"]
       + [x for e in examples for x in ["--example", e]], cwd=ROOT, stdout=sys.stderr)
    built = {"rust"}
    env = dict(os.environ, GOCACHE=os.path.join(OUT, "gocache"), GO111MODULE="off")
    if shutil.which("go"):
        for p in examples:
            sh(["go", "build", "-o", os.path.join(OUT, p + "_go"), os.path.join(HERE, p + ".go")],
               env=env)
        built.add("go")
    else:
        skip("Go 1.19", "no `go` on PATH (apt-get install golang-go)")
    if pause:
        return built
    for p in examples:
        r = subprocess.run(["gcc", "-O2", "-o", os.path.join(OUT, p + "_boehm"),
                            os.path.join(HERE, p + ".c"), "-lgc"],
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["gcc failed"])[-1]
            skip("Boehm GC", f"gcc cannot build against it (apt-get install libgc-dev): {last}")
            return built
    built.add("boehm")
    return built


def run(cmd, env):
    """Runs one child; returns (wall s, user+sys CPU s, peak RSS KiB, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if status != 0:
        raise SystemExit(f"{cmd} failed: {err[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, out, err


GCTRACE = re.compile(r"^gc \d+ @\S+ \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock", re.M)


def parse(impl, err):
    """(cycles, longest pause ms) from the collector's own trace output."""
    if impl == "rust" and os.environ.get("GOMALLOC_GCCONCURRENT") == "0":
        # the stopped mark: all three phases pause
        m = [sum(map(float, g)) for g in GCTRACE.findall(err)]
        return len(m), max(m, default=0.0)
    if impl in ("rust", "go"):  # concurrent mark: the first and the last field pause
        m = [float(a) + float(c) for a, _, c in GCTRACE.findall(err)]
        return len(m), max(m, default=0.0)
    # Boehm (GC_PRINT_STATS=1): "Complete collection took N ms M ns"
    m = [int(a) + int(b) / 1e6 for a, b in
         re.findall(r"Complete collection took (\d+) ms (\d+) ns", err)]
    c = re.search(r"gc-stats cycles=(\d+)", err)
    return (int(c.group(1)) if c else len(m)), max(m, default=0.0)


def pause(live_mib, seconds):
    """The pause benchmark, Rust then Go, one run each; prints a Markdown table."""
    built = build(pause=True)
    rust = "target/release/examples/pause"
    progs = [("Rust gomalloc-gc, stopped mark", rust, {"GOMALLOC_GCCONCURRENT": "0"}),
             ("Rust gomalloc-gc, concurrent mark", rust, {"GOMALLOC_GCCONCURRENT": "1"})]
    if "go" in built:
        progs.append(("Go 1.19", os.path.join(OUT, "pause_go"), {}))
    print(f"| implementation ({live_mib} MiB live, {seconds:g} s) | cycles | max pause ms "
          "| p99 ms | p50 ms | stopped % | M nodes/s | peak RSS MiB | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path, env in progs:
        cmd = [os.path.join(ROOT, path), str(live_mib), str(seconds)]
        w, _, _, out, _ = run(cmd, {**os.environ, **env})
        sys.stderr.write(out)
        m = dict(kv.split("=") for kv in
                 re.search(r"^pause-result (.*)$", out, re.M).group(1).split())
        print(f"| {name} | {m['cycles']} | {float(m['max_ms']):.2f} | {float(m['p99_ms']):.2f} "
              f"| {float(m['p50_ms']):.3f} | {m['stopped_pct']} "
              f"| {float(m['nodes_per_s']) / 1e6:.2f} | {m['rss_mib']} | {w:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pause", action="store_true", help="run the pause benchmark instead")
    ap.add_argument("--live-mib", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    if a.pause:
        return pause(a.live_mib, a.seconds)
    built = build()
    progs = {
        "rust": ("target/release/examples/{p}", {"GOMALLOC_GCTRACE": "1"}),
        "go": (os.path.join(OUT, "{p}_go"), {"GODEBUG": "gctrace=1"}),
        "boehm": (os.path.join(OUT, "{p}_boehm"), {"GC_PRINT_STATS": "1", "GCSTATS": "1"}),
    }
    names = {"rust": "Rust gomalloc-gc", "go": "Go 1.19", "boehm": "C + Boehm GC 8.2"}
    print("| program | implementation | wall s | CPU s (user+sys) | peak RSS MiB "
          "| GC cycles | longest pause ms |")
    print("|---|---|---|---|---|---|---|")
    for prog, args in [("binary_trees", [str(a.depth)]), ("gcbench", [])]:
        outputs = {}
        for impl, (path, extra) in progs.items():
            if impl not in built:
                continue
            cmd = [os.path.join(ROOT, path.format(p=prog))] + args
            env = dict(os.environ, **extra)
            runs = []
            for _ in range(a.runs):
                w, cpu, rss, out, err = run(cmd, env)
                runs.append((w, cpu, rss) + parse(impl, err))
                outputs[impl] = out
            def med(i):
                return statistics.median(r[i] for r in runs)
            label = prog.replace("_", "-") + (f" {a.depth}" if args else "")
            print(f"| {label} | {names[impl]} | {med(0):.2f} | {med(1):.2f} | "
                  f"{max(r[2] for r in runs) / 1024:.0f} | {runs[-1][3]} | "
                  f"{max(r[4] for r in runs):.1f} |", flush=True)
        if prog == "binary_trees":
            assert len(set(outputs.values())) == 1, "outputs differ"


if __name__ == "__main__":
    main()
