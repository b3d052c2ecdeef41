#!/usr/bin/python3
"""torch.distributed.all_reduce throughput from Python, one backend, one world size.

    /usr/bin/python3 perf/torch/allreduce_bench.py --backend gloo --np 2 -b 4K -e 256M -f 4
    PYTHONPATH=build/python /usr/bin/python3 perf/torch/allreduce_bench.py --backend chorus --np 4

Starts --np ranks on 127.0.0.1 itself (see bench_common.py; under torchrun each rank prints raw
lines, combined afterwards with --combine). Float32 sum, in place (torch's all_reduce is in
place), blocking: `dist.all_reduce(t)` returns when the result is there (it waits on the Work).

Per size, on every rank:
  1. one checked call: rank r holds ((i + 3r) mod 13) + r at index i; the result must equal the
     exact sum over ranks (small integers: exact in float32). `wrong` counts the elements that
     differ (0 = ok);
  2. the tensor is zeroed (so the timed calls keep finite values), ranks line up (barrier),
     `warmup` untimed calls, barrier;
  3. `iters` timed calls in `blocks` consecutive blocks, each timed as a whole (no clock read
     per call): block time / calls in it = the per-call time of that block.
Reported (one JSON line per size on stdout):
  time_us   median over blocks of the slowest rank's per-call time in that block (ranks run the
            same blocks in lock step, since each call is a blocking collective). This is the
            headline figure: the median resists the machine's drift within a run.
  mean_us   max over ranks of (all timed calls' time / iters): the statistic of
            `all_reduce_perf -a 3` and of the peer baselines' benchmarks (used for the binding
            overhead, where the C figure is that statistic).
  algbw_GBps = bytes / time_us / 1e3, busbw_GBps = algbw * 2(n-1)/n (nccl-tests), 1 GB = 1e9 B.
iters = clamp(iter_bytes / size, min_iters, max_iters) unless --iters; warmup =
clamp(iters / 10, 1, 20) unless --warmup (as tools/bench_lib.sh's bench_iters/bench_warmup).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    bc.common_args(p, timeout_default=600)
    p.add_argument("-b", "--minbytes", type=bc.to_bytes, default=bc.to_bytes("4K"), help="[4K]")
    p.add_argument("-e", "--maxbytes", type=bc.to_bytes, default=bc.to_bytes("256M"), help="[256M]")
    p.add_argument("-f", "--stepfactor", type=int, default=4, help="[4]")
    p.add_argument("--sizes", help="comma-separated sizes instead of -b/-e/-f, e.g. 4K,1M,16M")
    p.add_argument("--iter-bytes", type=bc.to_bytes, default=bc.to_bytes("256M"),
                   help="iters = clamp(iter_bytes / size, min, max) [256M]")
    p.add_argument("--min-iters", type=int, default=3, help="[3]")
    p.add_argument("--max-iters", type=int, default=1000, help="[1000]")
    p.add_argument("-n", "--iters", type=int, help="timed calls per size (overrides the clamp)")
    p.add_argument("-w", "--warmup", type=int, help="untimed calls per size [clamp(iters/10,1,20)]")
    p.add_argument("--blocks", type=int, default=10, help="timed blocks per size (<= iters) [10]")
    p.add_argument("-c", "--check", type=int, default=1, help="1: one checked call per size [1]")
    a = p.parse_args(argv)
    if a.sizes:
        a.size_list = [bc.to_bytes(s) for s in a.sizes.split(",") if s.strip()]
    else:
        a.size_list = bc.size_ladder(a.minbytes, a.maxbytes, a.stepfactor)
    if not a.size_list or min(a.size_list) < 4:
        p.error("sizes must be at least 4 bytes (one float32)")
    return a


def iters_for(a, size):
    n = a.iters if a.iters else min(max(a.iter_bytes // size, a.min_iters), a.max_iters)
    w = a.warmup if a.warmup is not None else min(max(n // 10, 1), 20)
    return max(n, 1), max(w, 0)


# ---------------------------------------------------------------- rank
def run_rank(a):
    import torch
    import torch.distributed as dist

    rank, n = bc.init_backend(a.backend, a.timeout, a.threads)
    sync = bc.Sync()
    for size in a.size_list:
        count = size // 4
        iters, warm = iters_for(a, size)
        wrong = -1
        if a.check:
            idx = torch.arange(count, dtype=torch.int32)
            t = ((idx + 3 * rank) % 13 + rank).to(torch.float32)
            dist.all_reduce(t)
            expect = torch.zeros(count, dtype=torch.int32)
            for r in range(n):
                expect += (idx + 3 * r) % 13 + r
            wrong = int((t != expect.to(torch.float32)).sum())
            del idx, expect
            t.zero_()
        else:
            t = torch.zeros(count, dtype=torch.float32)
        sync()
        for _ in range(warm):
            dist.all_reduce(t)
        sync()
        nb = max(1, min(a.blocks, iters))
        lens = [iters // nb + (1 if i < iters % nb else 0) for i in range(nb)]
        block_us = []
        pc = time.perf_counter
        start = pc()
        for m in lens:
            t0 = pc()
            for _ in range(m):
                dist.all_reduce(t)
            block_us.append((pc() - t0) * 1e6 / m)
        total = pc() - start
        bc.emit({"rank": rank, "np": n, "backend": a.backend, "size": count * 4,
                 "count": count, "iters": iters, "warmup": warm, "block_us": block_us,
                 "mean_us": total * 1e6 / iters, "wrong": wrong, "sync": sync.how})
        del t
    sync()
    dist.destroy_process_group()


# ---------------------------------------------------------------- launcher
def combine(a, per_rank):
    """One line per size from the ranks' raw lines."""
    np_ = len(per_rank)
    by_size = {}
    for recs in per_rank:
        for rec in recs:
            by_size.setdefault(rec["size"], []).append(rec)
    lines = []
    for size in sorted(by_size):
        recs = by_size[size]
        complete = len(recs) == np_
        nb = min(len(r["block_us"]) for r in recs)
        slowest = [max(r["block_us"][i] for r in recs) for i in range(nb)]
        t = bc.median(slowest)
        algbw = size / t / 1e3 if t else 0.0
        wrong = max(r["wrong"] for r in recs)
        lines.append({
            "bench": "allreduce", "backend": recs[0].get("backend", a.backend), "np": np_,
            "size": size,
            "count": recs[0]["count"], "dtype": "float32", "op": "sum", "inplace": True,
            "iters": recs[0]["iters"], "warmup": recs[0]["warmup"], "blocks": nb,
            "time_us": round(t, 3), "mean_us": round(max(r["mean_us"] for r in recs), 3),
            "min_block_us": round(min(slowest), 3), "max_block_us": round(max(slowest), 3),
            "algbw_GBps": round(algbw, 4),
            "busbw_GBps": round(algbw * 2 * (np_ - 1) / np_, 4),
            "wrong": wrong, "check": "skipped" if wrong < 0 else ("ok" if wrong == 0 else "WRONG"),
            "complete": complete, "sync": recs[0]["sync"]})
    return lines


def print_table(lines):
    sys.stderr.write(f"{'size':>8} {'iters':>6} {'time_us':>11} {'mean_us':>11} "
                     f"{'algbw':>8} {'busbw':>8}  check\n")
    for ln in lines:
        sys.stderr.write(f"{bc.size_str(ln['size']):>8} {ln['iters']:>6} {ln['time_us']:>11.2f} "
                         f"{ln['mean_us']:>11.2f} {ln['algbw_GBps']:>8.3f} "
                         f"{ln['busbw_GBps']:>8.3f}  {ln['check']}\n")


def main():
    a = parse_args()
    if a.combine:
        per_rank = bc.combine_files(a.combine)
        rc = 0
    elif bc.is_rank():
        run_rank(a)
        return 0
    else:
        import torch

        bc.print_line({"bench": "allreduce", "kind": "meta", "backend": a.backend, "np": a.np,
                       "torch": torch.__version__, "threads": a.threads,
                       "sizes": a.size_list, "python": sys.version.split()[0]})
        rc, per_rank, log_dir = bc.launch(os.path.abspath(__file__), sys.argv[1:], a.np,
                                          a.timeout, a.log_dir)
        if a.raw:
            for recs in per_rank:
                for rec in recs:
                    bc.print_line(dict(rec, bench="allreduce-raw"))
    lines = combine(a, per_rank) if all(per_rank) else []
    for ln in lines:
        bc.print_line(ln)
    print_table(lines)
    if rc == 0 and len(lines) < len(a.size_list) and not a.combine:
        sys.stderr.write("allreduce_bench: some sizes have no result\n")
        rc = 1
    if any(ln["wrong"] > 0 for ln in lines):
        sys.stderr.write("allreduce_bench: WRONG results\n")
        rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
