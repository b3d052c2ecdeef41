#!/usr/bin/env python3
"""Markdown tables from the raw outputs of tools/compare_torch.sh (standard library only).

    python3 perf/torch/summarize.py OUT_DIR [--chorus-label chorus]

Reads, in OUT_DIR (R = round, N = ranks, B = gloo | chorus):
  ar_B_npN_rR.jsonl        allreduce_bench.py lines (one per size)
  ddp_B_npN_rR.jsonl       ddp_bench.py lines (normal, nocomm)
  bind_B_npN_rR.jsonl      allreduce_bench.py at 8 bytes (binding overhead)
  bind_c_npN_rR.json       all_reduce_perf -J at 8 bytes (the C library alone)
Every cell is the median over the rounds that produced it; ratios are ratios of medians;
spread = max / min over rounds.
Exit status 1 when a cell is missing or a check failed (the tables still show what ran).
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import size_str  # noqa: E402

NAME = re.compile(r"^(ar|ddp|bind)_([a-z0-9]+)_np(\d+)_r(\d+)\.jsonl?$")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x]
    return max(xs) / min(xs) if len(xs) > 1 else None


def f_us(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 1000 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def f_x(v):
    return "-" if v is None else f"{v:.2f}x"


def f_gb(v):
    return "-" if v is None else (f"{v:.2f}" if v >= 0.1 else f"{v:.4f}")


def f_ms(v):
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def f_pct(v):
    return "-" if v is None else f"{v * 100:.0f}%"


def read_jsonl(path):
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def load(out_dir):
    """{(kind, backend, np): {round: [records]}} and the C binding results."""
    data, cbind = {}, {}
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json*"))):
        m = NAME.match(os.path.basename(path))
        if not m:
            continue
        kind, backend, np_, rnd = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if kind == "bind" and backend == "c":
            try:
                with open(path) as f:
                    doc = json.load(f)
                ip = doc["results"][0]["in_place"]
                cbind.setdefault(np_, {})[rnd] = ip["time_us"] if ip and not ip.get("wrong") else None
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                cbind.setdefault(np_, {})[rnd] = None
            continue
        recs = [r for r in read_jsonl(path) if r.get("kind") != "meta"]
        data.setdefault((kind, backend, np_), {})[rnd] = recs
    return data, cbind


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--chorus-label", default="chorus",
                   help="what the chorus side is called in the headers")
    a = p.parse_args()
    data, cbind = load(a.out)
    cl = a.chorus_label
    bad = 0
    goals = []
    nps = sorted({k[2] for k in data if k[0] in ("ar", "ddp")})

    # ------------------------------------------------------------ all-reduce
    for np_ in nps:
        g, c = data.get(("ar", "gloo", np_), {}), data.get(("ar", "chorus", np_), {})
        if not g and not c:
            continue
        sizes = sorted({r["size"] for rs in list(g.values()) + list(c.values()) for r in rs})

        def cell(rounds, size, key):
            vals, wrong = [], False
            for rs in rounds.values():
                for r in rs:
                    if r["size"] == size:
                        vals.append(r[key])
                        wrong |= r.get("wrong", 0) > 0
            return vals, wrong

        print(f"### all_reduce from Python, np = {np_}")
        print(f"float32 sum, in place, blocking; time = median over rounds of each run's "
              f"median block time (slowest rank); ratio = gloo time / {cl} time (above 1: "
              f"{cl} is faster); spread = max/min over rounds.\n")
        print(f"| size | gloo us | {cl} us | gloo / {cl} | {cl} busbw GB/s | gloo busbw GB/s "
              f"| spread gloo | spread {cl} |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        short = []
        for size in sizes:
            gt, gw = cell(g, size, "time_us")
            ct, cw = cell(c, size, "time_us")
            gb, _ = cell(g, size, "busbw_GBps")
            cb, _ = cell(c, size, "busbw_GBps")
            gm, cm = med(gt), med(ct)
            ratio = gm / cm if gm and cm else None
            note = ""
            if gw or cw:
                note = " WRONG " + ("gloo" if gw else "") + (cl if cw else "")
                bad += 1
            if gm is None or cm is None:
                bad += 1
            print(f"| {size_str(size)} | {f_us(gm)} | {f_us(cm)} | {f_x(ratio)}{note} | "
                  f"{f_gb(med(cb))} | {f_gb(med(gb))} | {f_x(spread(gt))} | {f_x(spread(ct))} |")
            if size >= (1 << 20) and (ratio is None or ratio < 2.0):
                short.append(f"{size_str(size)} ({f_x(ratio)})")
        print()
        goals.append((f"all_reduce >= 2x gloo from 1 MiB, np={np_}",
                      "met" if not short else "NOT met at " + ", ".join(short)))

    # ------------------------------------------------------------ DDP
    ddp_rows = []
    meta = None
    for np_ in nps:
        gn = None
        for b in ("gloo", "chorus"):
            rounds = data.get(("ddp", b, np_), {})
            if not rounds:
                continue
            normal, nocomm, in_sync = [], [], []
            for rs in rounds.values():
                for r in rs:
                    if r.get("mode") == "normal":
                        normal.append(r["step_ms"])
                        in_sync.append(r.get("in_sync"))
                        meta = meta or r
                    elif r.get("mode") == "nocomm":
                        nocomm.append(r["step_ms"])
            n, z = med(normal), med(nocomm)
            if b == "gloo":
                gn = n
            ddp_rows.append((np_, b, n, z, normal, nocomm, in_sync, gn))
    if ddp_rows:
        desc = ""
        if meta:
            desc = (f"model {meta['params'] / 1e6:.1f}M parameters ({meta['layer']} layers), "
                    f"batch {meta['batch']} per rank, {meta['threads']} thread(s) per rank, "
                    f"SGD; ")
        print("### DDP training step")
        print(f"{desc}step = median over rounds of each run's median step (slowest rank); "
              f"no-comm = the same step with a no-op communication hook; comm share = "
              f"(step - no-comm) / step; vs gloo = gloo step / this step (above 1: faster); "
              f"bound = gloo step / this no-comm step (the most that removing all "
              f"communication could give).\n")
        print("| np | backend | step ms | no-comm ms | comm share | vs gloo | bound | spread step "
              "| replicas in sync |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for np_, b, n, z, normal, nocomm, in_sync, gn in ddp_rows:
            share = (n - z) / n if n and z else None
            vs = gn / n if gn and n else None
            bound = gn / z if gn and z else None
            sync_s = "yes" if in_sync and all(x is True for x in in_sync) else (
                "NO" if any(x is False for x in in_sync) else "-")
            if sync_s == "NO" or n is None or z is None:
                bad += 1
            label = cl if b == "chorus" else b
            print(f"| {np_} | {label} | {f_ms(n)} | {f_ms(z)} | {f_pct(share)} | {f_x(vs)} | "
                  f"{f_x(bound)} | {f_x(spread(normal))} | {sync_s} |")
            if b == "chorus":
                goals.append((f"DDP step not slower than gloo, np={np_}",
                               "-" if vs is None else
                               f"{'met' if vs >= 1.0 else 'NOT met'}: {f_x(vs)} (bound {f_x(bound)})"))
        print()

    # ------------------------------------------------------------ binding overhead
    bnps = sorted({k[2] for k in data if k[0] == "bind"} | set(cbind))
    if bnps:
        print("### Binding overhead: 8-byte all_reduce")
        print(f"torch = `dist.all_reduce` from Python, mean per call, slowest rank; C = "
              f"`all_reduce_perf -b 8 -e 8 -z 1 -a 3`, in-place column (the same statistic); "
              f"overhead = torch+{cl} - C (medians over rounds).\n")
        print(f"| np | torch + {cl} us | C library us | overhead us | torch + gloo us |")
        print("|---:|---:|---:|---:|---:|")
        for np_ in bnps:
            def mean_of(b):
                return med([r["mean_us"] for rs in data.get(("bind", b, np_), {}).values()
                            for r in rs if "mean_us" in r])
            tc, tg = mean_of("chorus"), mean_of("gloo")
            cc = med(list(cbind.get(np_, {}).values()))
            ov = tc - cc if tc is not None and cc is not None else None
            print(f"| {np_} | {f_us(tc)} | {f_us(cc)} | {f_us(ov)} | {f_us(tg)} |")
            if ov is not None:
                goals.append((f"binding overhead < 10 us, np={np_}",
                              f"{'met' if ov < 10 else 'NOT met'}: {ov:.1f} us"))
        print()

    if goals:
        print("### Goals")
        for k, v in goals:
            print(f"- {k}: {v}")
        print()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
