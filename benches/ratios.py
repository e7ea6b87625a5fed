#!/usr/bin/env python3
"""Table of the criterion results of `cargo bench -p gomalloc-benches --bench alloc`.

Reads target/criterion/<group>/<allocator>/<size>/new/estimates.json and prints, per
benchmark, each allocator's mean time and its ratio to gomalloc (above 1: gomalloc faster),
as a markdown table.
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
allocs = ["gomalloc", "system", "mimalloc", "jemalloc"]
print("| benchmark | " + " | ".join(allocs) + " |")
print("|---|" + "---:|" * len(allocs))
for group in ["pair", "batch", "xthread"]:
    gdir = os.path.join(root, group, "gomalloc")
    if not os.path.isdir(gdir):
        continue
    for size in sorted((s for s in os.listdir(gdir) if s.isdigit()), key=int):
        t = {}
        for a in allocs:
            f = os.path.join(root, group, a, size, "new", "estimates.json")
            if os.path.exists(f):
                t[a] = json.load(open(f))["mean"]["point_estimate"]
        g = t.get("gomalloc")
        cells = []
        for a in allocs:
            if a not in t:
                cells.append("-")
                continue
            ns = t[a]
            v = f"{ns:.1f} ns" if ns < 10000 else f"{ns / 1000:.1f} µs"
            cells.append(v if a == "gomalloc" or not g else f"{v} ({ns / g:.2f}x)")
        print(f"| {group}/{size} | " + " | ".join(cells) + " |")
