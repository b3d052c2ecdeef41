#!/usr/bin/env python3
"""The tables and results.json of a chorus-bench run (called by chorus-bench; stdlib only).

Usage: summarize.py OUT_DIR [--rounds N] [--quick 0|1]

Reads OUT_DIR/runs.tsv (one row per launch: section system np round coll size rc seconds raw),
OUT_DIR/systems.tsv (name kind label) and the raw outputs the rows name:
  Chorus    <raw>.json   the perf tool's -J output (out-of-place time)
  Open MPI  <raw>.txt    mpi_allreduce_bench rows (size_B count iters trials time_us ...) or
                         mpi_coll_bench rows (coll size_B count iters time_us algbw busbw check)
  Gloo      <raw>.txt    gloo_allreduce_bench rows, one block per algorithm (the best is taken)
  memory    <raw>.hwm    vmhwm_shim.c lines: pid ppid name VmHWM_kB
Prints one markdown table per section and writes OUT_DIR/results.json (chorus-plot draws it).
Ratio = peer / Chorus (time, or memory): above 1, Chorus is faster (smaller).
Exit status 1 when a launch failed or a result is wrong or missing, else 0.
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from bench_report import first_error  # noqa: E402  (tools/bench_report.py)
from summarize_compare import fmt_bw, fmt_us, read_chorus, read_peer_rows, size_str  # noqa: E402

# Chorus perf tool -> (the perf tools' JSON "collective", mpi_coll_bench's name, bus factor)
COLLS = {
    "all_reduce": ("allreduce", None, lambda n: 2.0 * (n - 1) / n),
    "all_gather": ("allgather", "allgather", lambda n: (n - 1) / n),
    "reduce_scatter": ("reducescatter", "reduce_scatter", lambda n: (n - 1) / n),
    "alltoall": ("alltoall", "alltoall", lambda n: (n - 1) / n),
    "broadcast": ("broadcast", "bcast", lambda n: 1.0),
}
MPI_COLL_TO_TOOL = {v[1]: k for k, v in COLLS.items() if v[1]}
SECTION_SYSTEMS = {
    "allreduce": ["chorus-shm", "mpi-vader", "mpi-ucx-sm"],
    "colls": ["chorus-shm", "mpi-vader", "mpi-ucx-sm"],
    "tcp": ["chorus-tcp", "mpi-tcp", "gloo"],
    "startup": ["chorus-shm", "mpi-vader"],
    "memory": ["chorus-shm", "mpi-vader"],
}
MEDIUM = {"allreduce": "shm", "colls": "shm", "tcp": "tcp"}
# Lines that say why a launch failed (not Open MPI's "to see all help / error messages").
WHY = r"cannot|unable|no components|failed|\berror\b(?! messages)|timed out|wrong|refus|abort"
TITLES = {
    "allreduce": "All-reduce over shared memory",
    "colls": "All-gather, reduce-scatter, alltoall, broadcast over shared memory",
    "tcp": "All-reduce over TCP loopback",
    "startup": "Start-up: wall time of the smallest job",
    "memory": "Memory: peak resident set (VmHWM) per process",
}


def read_tsv(path, ncols):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                w = line.rstrip("\n").split("\t")
                if len(w) == ncols:
                    rows.append(w)
    except OSError:
        pass
    return rows


def read_coll_rows(path):
    """{(tool coll, size): time_us or 'check X'} from mpi_coll_bench output."""
    out = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                w = line.split()
                if len(w) >= 8 and w[0] in MPI_COLL_TO_TOOL and w[1].isdigit():
                    key = (MPI_COLL_TO_TOOL[w[0]], int(w[1]))
                    out[key] = float(w[4]) if w[7] in ("ok", "-") else "check " + w[7]
    except (OSError, ValueError):
        pass
    return out


def read_hwm(path):
    """(rank kB list, launcher kB list) from the shim's lines, or None."""
    recs = []
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) == 4 and w[0].isdigit() and w[1].isdigit():
                    recs.append((int(w[0]), int(w[1]), w[2], int(w[3])))
    except (OSError, ValueError):
        return None
    pids = {r[0] for r in recs}
    ranks = [r[3] for r in recs if r[1] in pids]
    parents = {r[1] for r in recs}
    launchers = [r[3] for r in recs if r[0] in parents and r[1] not in pids]
    return ranks, launchers


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt_ratio(peer, chorus):
    if not peer or not chorus:
        return "-"
    r = peer / chorus
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


class Summary:
    def __init__(self, out):
        self.out = out
        self.systems = {r[0]: (r[1], r[2]) for r in read_tsv(os.path.join(out, "systems.tsv"), 3)}
        self.runs = read_tsv(os.path.join(out, "runs.tsv"), 9)
        self.notes = []
        self.series = []

    def label(self, sysname):
        return self.systems.get(sysname, ("?", sysname))[1]

    def why(self, raw, default):
        """The first line of a launch's output that says what went wrong."""
        for path in (raw + ".err", raw + ".txt"):
            line = first_error(path, WHY)
            if line:
                return line
        return default

    def fail(self, text):
        self.notes.append(text)

    # samples[(system, coll, np, size)] = [time_us per round]
    def collect_times(self, section):
        samples = {}
        for sec, sysname, np, rnd, coll, size, rc, _secs, raw in self.runs:
            if sec != section:
                continue
            np = int(np)
            kind = self.systems.get(sysname, ("?",))[0]
            where = f"{section} np={np} {self.label(sysname)} round {rnd}"
            if rc != "0":
                what = "all sizes" if size == "-" else size_str(int(size))
                self.fail(f"{where} {coll} {what}: rc {rc}: {self.why(raw, 'failed')}")
            if kind == "chorus":
                size = int(size)
                t, info = read_chorus(raw + ".json")
                key = (sysname, coll, np, size)
                samples.setdefault(key, [])
                if t is None:
                    if rc == "0":
                        self.fail(f"{where} {coll} {size_str(size)}: {self.why(raw, info)}")
                elif info:
                    self.fail(f"{where} {coll} {size_str(size)}: {info} wrong values")
                else:
                    samples[key].append(t)
            elif coll == "colls":
                for (c, s), t in read_coll_rows(raw + ".txt").items():
                    samples.setdefault((sysname, c, np, s), []).append(t)
            else:  # mpi_allreduce_bench or gloo (best algorithm per size)
                best = {}
                for rows in read_peer_rows(raw + ".txt").values():
                    for s, t in rows.items():
                        best[s] = min(t, best.get(s, t))
                for s, t in best.items():
                    samples.setdefault((sysname, coll, np, s), []).append(t)
        return samples

    def time_section(self, section):
        """One table: coll | np | size | time per system | busbw per system | ratio per peer."""
        systems = SECTION_SYSTEMS[section]
        chorus = systems[0]
        samples = self.collect_times(section)
        rounds = {r[3] for r in self.runs if r[0] == section}
        colls = sorted({k[1] for k in samples if k[0] == chorus}, key=list(COLLS).index)
        lab = [self.label(s) for s in systems]
        print(f"\n### {TITLES[section]} (median of {len(rounds)} round(s))\n")
        head = ["coll", "np", "size"] + [f"{x} us" for x in lab] + [f"{x} busbw GB/s" for x in lab]
        head += [f"{x} / {lab[0]}" for x in lab[1:]]
        print("| " + " | ".join(head) + " |")
        print("|---|---:|---:|" + "---:|" * (len(head) - 3))
        for coll in colls:
            name, _, factor = COLLS[coll]
            for np in sorted({k[2] for k in samples if k[1] == coll}):
                sizes = sorted({k[3] for k in samples if k[1] == coll and k[2] == np and k[0] == chorus})
                meds = {}
                for sysname in systems:
                    pts = []
                    for s in sizes:
                        ts = samples.get((sysname, coll, np, s), [])
                        bad = [t for t in ts if isinstance(t, str)]
                        for b in bad:
                            self.fail(f"{section} np={np} {self.label(sysname)} {coll} {size_str(s)}: {b}")
                        good = [t for t in ts if not isinstance(t, str)]
                        skipped = s < 4 * np and coll not in ("all_reduce", "broadcast")  # count 0
                        if not good and sysname != chorus and not skipped:
                            self.fail(f"{section} np={np} {self.label(sysname)} {coll} {size_str(s)}: no result")
                        m = med(good)
                        meds[sysname, s] = m
                        if m is not None:
                            pts.append({"size": s, "time_us": m,
                                        "busbw_GBps": s / (m * 1e-6) / 1e9 * factor(np),
                                        "samples_us": good})
                    for p in pts:
                        c = meds.get((chorus, p["size"]))
                        p["ratio_vs_chorus"] = (p["time_us"] / c) if c and sysname != chorus else None
                    self.series.append({"section": MEDIUM[section], "collective": name, "nranks": np,
                                        "system": sysname, "label": self.label(sysname),
                                        "chorus": sysname == chorus, "points": pts})
                for s in sizes:
                    ms = [meds[x, s] for x in systems]
                    bws = [None if m is None else s / (m * 1e-6) / 1e9 * factor(np) for m in ms]
                    cells = [coll, str(np), size_str(s)] + [fmt_us(m) for m in ms] + [fmt_bw(b) for b in bws]
                    cells += [fmt_ratio(m, ms[0]) for m in ms[1:]]
                    print("| " + " | ".join(cells) + " |")

    def startup(self):
        by = {}
        for sec, sysname, np, _rnd, _coll, _size, rc, secs, _raw in self.runs:
            if sec == "startup" and rc == "0":
                by.setdefault((int(np), sysname), []).append(float(secs))
        if not by:
            return None
        systems = SECTION_SYSTEMS["startup"]
        lab = [self.label(s) for s in systems]
        n = max(len(v) for v in by.values())
        print(f"\n### {TITLES['startup']} (median of {n} alternating runs)\n")
        print(f"| np | {lab[0]} ms | {lab[1]} ms | {lab[1]} / {lab[0]} | {lab[0]} min-max ms | {lab[1]} min-max ms |")
        print("|---:|---:|---:|---:|---:|---:|")
        res = []
        for np in sorted({k[0] for k in by}):
            ts = [by.get((np, s), []) for s in systems]
            ms = [med(t) for t in ts]
            rng = [f"{min(t) * 1e3:.0f}-{max(t) * 1e3:.0f}" if t else "-" for t in ts]
            print(f"| {np} | " + " | ".join("-" if m is None else f"{m * 1e3:.0f}" for m in ms)
                  + f" | {fmt_ratio(ms[1], ms[0])} | {rng[0]} | {rng[1]} |")
            res.append({"nranks": np, "ratio": (ms[1] / ms[0]) if ms[0] and ms[1] else None,
                        "systems": [{"system": s, "label": self.label(s), "median_s": m, "samples_s": t}
                                    for s, m, t in zip(systems, ms, ts)]})
        print(f"\n{lab[0]}: all_reduce_perf -np N -b 8 -e 8 -n 1 (start, one 8-byte all-reduce, "
              f"check, exit); {lab[1]}: mpirun -np N mpi_init_bench (MPI_Init, MPI_Barrier, MPI_Finalize)")
        return res

    def memory(self):
        by = {}
        for sec, sysname, np, rnd, _coll, _size, rc, _secs, raw in self.runs:
            if sec != "memory":
                continue
            np = int(np)
            got = read_hwm(raw + ".hwm") if rc == "0" else None
            if got is None or len(got[0]) != np:
                n = 0 if got is None else len(got[0])
                self.fail(f"memory np={np} {self.label(sysname)} round {rnd}: {n} of {np} ranks reported"
                          + ("" if rc == "0" else f" (rc {rc}: {self.why(raw, 'failed')})"))
                continue
            ranks, launchers = got
            d = by.setdefault((np, sysname), {"rank_max": [], "rank_mean": [], "launcher": [], "total": []})
            d["rank_max"].append(max(ranks) / 1024)
            d["rank_mean"].append(sum(ranks) / len(ranks) / 1024)
            d["launcher"].append(sum(launchers) / 1024)
            d["total"].append((sum(ranks) + sum(launchers)) / 1024)
        if not by:
            return None
        systems = SECTION_SYSTEMS["memory"]
        lab = [self.label(s) for s in systems]
        print(f"\n### {TITLES['memory']}, MiB (median over rounds)\n")
        print(f"| np | {lab[0]} per rank (max) | {lab[1]} per rank (max) | {lab[1]} / {lab[0]} | "
              f"{lab[0]} launcher | mpirun | {lab[0]} all processes | {lab[1]} all processes |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")

        def f(x):
            return "-" if x is None else f"{x:.1f}"
        res = []
        for np in sorted({k[0] for k in by}):
            d = [by.get((np, s), {}) for s in systems]
            m = [{k: med(v) for k, v in x.items()} for x in d]
            c, p = m
            print(f"| {np} | {f(c.get('rank_max'))} | {f(p.get('rank_max'))} | "
                  f"{fmt_ratio(p.get('rank_max'), c.get('rank_max'))} | {f(c.get('launcher'))} | "
                  f"{f(p.get('launcher'))} | {f(c.get('total'))} | {f(p.get('total'))} |")
            res.append({"nranks": np, "systems": [
                {"system": s, "label": self.label(s), "rank_max_MiB": mi.get("rank_max"),
                 "rank_mean_MiB": mi.get("rank_mean"), "launcher_MiB": mi.get("launcher"),
                 "total_MiB": mi.get("total"), "samples": di} for s, mi, di in zip(systems, m, d)]})
        print(f"\n{lab[0]}: all_reduce_perf -np N -b 8 -e 8 -n 1 (its launcher forks the ranks); "
              f"{lab[1]}: mpirun -np N mpi_init_bench. VmHWM at exit, shared pages counted in every process.")
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--quick", default="0")
    a = ap.parse_args()
    s = Summary(a.out)
    if not s.runs:
        print(f"summarize.py: no runs recorded in {os.path.join(a.out, 'runs.tsv')}", file=sys.stderr)
        return 1
    sections = []
    for r in s.runs:
        if r[0] not in sections:
            sections.append(r[0])
    startup = memory = None
    for sec in sections:
        if sec in ("allreduce", "colls", "tcp"):
            s.time_section(sec)
        elif sec == "startup":
            startup = s.startup()
        elif sec == "memory":
            memory = s.memory()
    print("\nratio = peer / Chorus (median time, or memory): above 1, Chorus is faster (smaller)")
    if s.series:
        print("busbw = size / time x bus factor (all-reduce 2(n-1)/n; all-gather, reduce-scatter, "
              "alltoall (n-1)/n; broadcast 1), 1 GB = 1e9 B; time = max over ranks, out of place")
    if s.notes:
        print("\nfailed or missing:")
        for n in s.notes:
            print(f"- {n[:400]}")
    try:
        with open(os.path.join(a.out, "header.txt")) as f:
            header = [line.rstrip("\n") for line in f]
    except OSError:
        header = []
    doc = {"tool": "chorus-bench", "format": 1,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "host": socket.gethostname(), "cores": os.cpu_count(), "rounds": a.rounds,
           "quick": a.quick == "1", "header": header, "series": s.series,
           "startup": startup, "memory": memory, "failures": s.notes, "ok": not s.notes}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return 1 if s.notes else 0


if __name__ == "__main__":
    sys.exit(main())
