#!/usr/bin/env python3
"""Markdown table of a tools/compare_allreduce.sh run: median over rounds per (np, size).

Usage: summarize_compare.py OUT_DIR --nps "2 4" --sizes 8,1024,... [--gloo 0|1]

Reads, per np and round r:
  chorus_np{np}_r{r}_{size}.json   all_reduce_perf -J output (out-of-place time is compared)
  mpi_np{np}_r{r}.txt              mpi_allreduce_bench rows: size_B count iters trials time_us ...
  gloo_np{np}_r{r}.txt             gloo_allreduce_bench rows, one block per algorithm
busbw = size / time * 2 (n - 1) / n (GB/s, 1 GB = 1e9 B); ratio = peer time / Chorus time, so
above 1 means Chorus is faster. Exit status 1 if any Chorus row was wrong or missing.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys


def size_str(n):
    for unit, s in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{s}"
    return str(n)


def busbw(size, time_us, np):
    if not time_us or time_us <= 0:
        return None
    return size / (time_us * 1e-6) / 1e9 * 2 * (np - 1) / np


def fmt_bw(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.4f}"


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 1000 else f"{v:.2f}"


def fmt_ratio(peer_us, chorus_us):
    if not peer_us or not chorus_us:
        return "-"
    return f"{peer_us / chorus_us:.2f}x"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def read_chorus(path):
    """(out-of-place time_us, wrong) or (None, reason). A launch of one size run for several
    cycles (-N) gives the median cycle's time, as the peers' programs give the median of their
    trials, and the wrong values of all cycles."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"no result ({e.__class__.__name__})"
    if doc.get("error"):
        return None, doc["error"]
    if not doc.get("results"):
        return None, "no rows"
    rows = [r["out_of_place"] for r in doc["results"] if r["size"] == doc["results"][0]["size"]]
    times = sorted(r["time_us"] for r in rows if r.get("time_us") is not None)
    if not times:
        return None, "no time"
    wrong = [r.get("wrong") for r in rows if r.get("wrong") is not None]
    return times[(len(times) - 1) // 2], (sum(wrong) if wrong else None)


def read_peer_rows(path):
    """{label: {size: time_us}} from a baseline benchmark's output."""
    out = {}
    label = "default"
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"# label=(\S+)", line)
                if m:
                    label = m.group(1)
                    continue
                w = line.split()
                if len(w) >= 10 and w[0].isdigit():
                    if w[9] not in ("ok", "-"):
                        continue  # a failed check: do not compare against it
                    out.setdefault(label, {})[int(w[0])] = float(w[4])
    except OSError:
        pass
    return out


def first_line(path, pattern):
    try:
        with open(path) as f:
            for line in f:
                if re.search(pattern, line):
                    return line.strip()
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--nps", default="2 4")
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--gloo", default="0")
    a = ap.parse_args()
    nps = [int(x) for x in a.nps.split()]
    sizes = [int(x) for x in a.sizes.split(",") if x]
    gloo = a.gloo == "1"
    bad = 0

    versions = set()
    for p in glob.glob(os.path.join(a.out, "chorus_*.txt")):
        v = first_line(p, r"^# Chorus all_reduce_perf")
        if v:
            versions.add(v.lstrip("# "))
    for p in glob.glob(os.path.join(a.out, "mpi_*.txt")):
        v = first_line(p, r"^# Open MPI")
        if v:
            versions.add(v.lstrip("# ").split(",")[0])
    for v in sorted(versions):
        print(f"# {v}")

    for np in nps:
        rounds = sorted({int(m.group(1)) for p in glob.glob(os.path.join(a.out, f"*_np{np}_r*"))
                         for m in [re.search(r"_r(\d+)", os.path.basename(p))] if m})
        print(f"\n### np={np}, float32 sum, median of {len(rounds)} round(s)\n")
        head = "| size | Chorus busbw GB/s | Open MPI busbw GB/s | Chorus vs MPI | Chorus us | MPI us |"
        rule = "|---:|---:|---:|---:|---:|---:|"
        if gloo:
            head += " Gloo busbw GB/s | Chorus vs Gloo |"
            rule += "---:|---:|"
        print(head)
        print(rule)
        for size in sizes:
            chorus_t, mpi_t, gloo_t, notes = [], [], [], []
            for r in rounds:
                t, info = read_chorus(os.path.join(a.out, f"chorus_np{np}_r{r}_{size}.json"))
                if t is None:
                    notes.append(f"r{r}: {info}")
                    bad += 1
                else:
                    chorus_t.append(t)
                    if info:
                        notes.append(f"r{r}: {info} wrong")
                        bad += 1
                mpi = read_peer_rows(os.path.join(a.out, f"mpi_np{np}_r{r}.txt"))
                mpi_t.append(next(iter(mpi.values()), {}).get(size))
                if gloo:
                    g = read_peer_rows(os.path.join(a.out, f"gloo_np{np}_r{r}.txt"))
                    times = [rows[size] for rows in g.values() if size in rows]
                    gloo_t.append(min(times) if times else None)
            ct, mt = median(chorus_t), median(mpi_t)
            row = (f"| {size_str(size)} | {fmt_bw(busbw(size, ct, np))} | "
                   f"{fmt_bw(busbw(size, mt, np))} | {fmt_ratio(mt, ct)} | {fmt_us(ct)} | "
                   f"{fmt_us(mt)} |")
            if gloo:
                gt = median(gloo_t)
                row += f" {fmt_bw(busbw(size, gt, np))} | {fmt_ratio(gt, ct)} |"
            if notes:
                row += " " + "; ".join(n[:120] for n in notes)
            print(row)
    print("\nratio = peer time / Chorus time (> 1: Chorus faster); busbw = size/time * 2(n-1)/n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
