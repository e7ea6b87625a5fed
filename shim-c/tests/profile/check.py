#!/usr/bin/env python3
"""Checks one `go tool pprof -top -sample_index=INDEX` listing of sites.c's profile.

usage: check.py LISTING FIRST WANT_BYTES REL_SD [ABSENT]
  FIRST       the function that must head the listing (by flat)
  WANT_BYTES  the bytes it must show, within 5 * REL_SD (relative)
  ABSENT      a function that must not appear with a non-zero flat value
"""
import re
import sys

UNITS = {"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def parse(text):
    rows = []
    seen_header = False
    for line in text.splitlines():
        if line.strip().startswith("flat"):
            seen_header = True
            continue
        if not seen_header:
            continue
        m = re.match(r"\s*([\d.]+)([kMG]?B)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+[kMG]?B\s+[\d.]+%\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)) * UNITS[m.group(2)], m.group(3).strip()))
    return rows


def main():
    listing, first, want, sd = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    absent = sys.argv[5] if len(sys.argv) > 5 else None
    text = open(listing).read()
    rows = parse(text)
    if not rows:
        sys.exit(f"no rows in listing:\n{text}")
    got, name = rows[0]
    if not name.startswith(first):
        sys.exit(f"first function is {name!r}, expected {first!r}:\n{text}")
    err = abs(got - want) / want
    if err > 5 * sd:
        sys.exit(f"{first}: {got:.0f} bytes, expected {want:.0f} +- {500 * sd:.0f}%:\n{text}")
    if absent and any(n.startswith(absent) and b > 0 for b, n in rows):
        sys.exit(f"{absent} listed:\n{text}")
    print(f"ok: {first} first with {got:.0f} bytes (expected {want:.0f}, error {100 * err:.1f}%,"
          f" allowed {500 * sd:.0f}%)")


main()
