#!/usr/bin/python3
"""DDP training-step time of a ~25M-parameter model, one backend, one world size, with and
without communication.

    /usr/bin/python3 perf/torch/ddp_bench.py --backend gloo --np 2
    PYTHONPATH=build/python /usr/bin/python3 perf/torch/ddp_bench.py --backend chorus --np 4

Starts --np ranks on 127.0.0.1 itself (see bench_common.py).

The model: an MLP of 7 layers, 1024 -> 2048 (x6) -> 1000 with ReLU between them, 25,129,960
parameters (about ResNet-50's 25.6M), batch 16 per rank, cross-entropy on synthetic data
(different on every rank), SGD with momentum 0.9. The layers are 1x1 convolutions on a
B x C x 1 x 1 input, which is exactly a Linear layer's arithmetic: Debian's torch 1.13 runs
nn.Linear through the reference (netlib) BLAS at ~1.4 GFLOP/s on one core, while Conv2d goes
through oneDNN at ~9-13 GFLOP/s, so a step takes ~0.5 s on one core instead of ~2 s and
communication is a measurable share of it (`--layer linear` uses nn.Linear instead).
Keep the batch at 16 or more: below 16, torch 1.13 runs single-threaded 1x1 convolutions
through the BLAS path again (batch 8 took 1.8 s a step, batch 16 0.49 s, batch 32 0.69 s).

DDP with its defaults (bucket_cap_mb 25, first bucket 1 MB, gradients copied into buckets).
Modes (--mode, default both):
  normal   DDP as is: gradients are all-reduced (averaged) through the backend, overlapped with
           the backward pass; backward() returns when every bucket is reduced.
  nocomm   the same model under its own DDP instance with a communication hook that returns an
           already-completed future holding the unreduced bucket: the step without any
           communication (`--nocomm` = `--mode nocomm`). The hook skips DDP's 1/n scaling,
           which without a hook is fused into the copy into the bucket, so the two do the same
           memory passes.
  both     both models in one process, timed in alternating blocks (normal, nocomm, nocomm,
           normal, ...), so the machine's drift hits both alike.
A step = zero_grad, forward, loss, backward, optimizer step, timed on each rank after a barrier
(outside the timed part), so every step starts with the ranks lined up.
Reported per mode: step_ms = median over steps of the slowest rank's step time; with both,
comm_share = (normal - nocomm) / normal.
After the normal steps, the ranks compare a float64 checksum of the parameters (an all_reduce
sum of it must be n times each rank's own): `in_sync` true means DDP kept the replicas equal.
torch.set_num_threads(1) per rank by default: with 2 ranks on 2 cores every rank has a core;
with 4 ranks the machine is oversubscribed 2x either way, and more threads would only add
contention (`--threads` changes it).
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
    bc.common_args(p, timeout_default=900)
    p.add_argument("--mode", choices=("both", "normal", "nocomm"), default="both", help="[both]")
    p.add_argument("--nocomm", action="store_const", const="nocomm", dest="mode",
                   help="= --mode nocomm")
    p.add_argument("--steps", type=int, default=15, help="timed steps per mode [15]")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first [2]")
    p.add_argument("--blocks", type=int, default=3,
                   help="with --mode both: alternating blocks the timed steps are split in [3]")
    p.add_argument("--batch", type=int, default=16, help="samples per rank [16]")
    p.add_argument("--in-features", type=int, default=1024, help="[1024]")
    p.add_argument("--width", type=int, default=2048, help="[2048]")
    p.add_argument("--hidden", type=int, default=5, help="width x width layers [5]")
    p.add_argument("--classes", type=int, default=1000, help="[1000]")
    p.add_argument("--layer", choices=("conv", "linear"), default="conv",
                   help="1x1 Conv2d (oneDNN) or nn.Linear (BLAS) [conv]")
    p.add_argument("--lr", type=float, default=0.01)
    return p.parse_args(argv)


def build_model(a):
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [a.in_features] + [a.width] * (a.hidden + 1) + [a.classes]
            mk = (lambda i, o: nn.Conv2d(i, o, 1)) if a.layer == "conv" else nn.Linear
            layers = []
            for i in range(len(dims) - 1):
                layers.append(mk(dims[i], dims[i + 1]))
                if i < len(dims) - 2:
                    layers.append(nn.ReLU(inplace=True))
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x).flatten(1)

    return Net()


def noop_hook(_state, bucket):
    import torch

    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


# ---------------------------------------------------------------- rank
def run_rank(a):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, n = bc.init_backend(a.backend, a.timeout, a.threads)
    sync = bc.Sync()
    modes = ["normal", "nocomm"] if a.mode == "both" else [a.mode]
    runs = {}
    for m in modes:
        torch.manual_seed(1234)  # same initial weights (DDP broadcasts rank 0's anyway)
        model = build_model(a)
        ddp = DDP(model)
        if m == "nocomm":
            ddp.register_comm_hook(None, noop_hook)
        opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=0.9)
        runs[m] = (ddp, opt)
    nparams = sum(p.numel() for p in runs[modes[0]][0].parameters())
    g = torch.Generator().manual_seed(1000 + rank)
    shape = (a.batch, a.in_features, 1, 1) if a.layer == "conv" else (a.batch, a.in_features)
    x = torch.randn(shape, generator=g)
    y = torch.randint(0, a.classes, (a.batch,), generator=g)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = {m: [] for m in modes}
    losses = {m: None for m in modes}

    def step(m, record):
        ddp, opt = runs[m]
        sync()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(ddp(x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if record:
            times[m].append(dt * 1e3)
        losses[m] = float(loss)

    for m in modes:
        for _ in range(a.warmup):
            step(m, False)
    nb = max(1, min(a.blocks, a.steps)) if len(modes) > 1 else 1
    lens = [a.steps // nb + (1 if i < a.steps % nb else 0) for i in range(nb)]
    for b, k in enumerate(lens):
        order = modes if b % 2 == 0 else modes[::-1]
        for m in order:
            for _ in range(k):
                step(m, True)

    in_sync = None
    if "normal" in runs:
        c = sum(float(p.detach().double().sum()) for p in runs["normal"][0].parameters())
        t = torch.tensor([c], dtype=torch.float64)
        dist.all_reduce(t)
        in_sync = abs(float(t) - n * c) <= 1e-9 * max(1.0, abs(n * c))
    for m in modes:
        bc.emit({"rank": rank, "np": n, "backend": a.backend, "mode": m, "step_ms": times[m],
                 "params": nparams,
                 "batch": a.batch, "layer": a.layer, "loss": losses[m],
                 "in_sync": in_sync if m == "normal" else None, "sync": sync.how})
    sync()
    dist.destroy_process_group()


# ---------------------------------------------------------------- launcher
def combine(a, per_rank):
    np_ = len(per_rank)
    by_mode = {}
    for recs in per_rank:
        for rec in recs:
            by_mode.setdefault(rec["mode"], []).append(rec)
    lines, med = [], {}
    for m in ("normal", "nocomm"):
        recs = by_mode.get(m)
        if not recs:
            continue
        k = min(len(r["step_ms"]) for r in recs)
        slowest = [max(r["step_ms"][i] for r in recs) for i in range(k)]
        med[m] = bc.median(slowest)
        in_sync = [r["in_sync"] for r in recs]
        lines.append({
            "bench": "ddp", "backend": recs[0].get("backend", a.backend), "np": np_,
            "mode": m,
            "step_ms": round(med[m], 3) if med[m] is not None else None,
            "min_step_ms": round(min(slowest), 3) if slowest else None,
            "max_step_ms": round(max(slowest), 3) if slowest else None,
            "steps": k, "params": recs[0]["params"], "batch": recs[0]["batch"],
            "layer": recs[0]["layer"], "threads": a.threads, "loss": recs[0]["loss"],
            "in_sync": (all(in_sync) if m == "normal" and None not in in_sync else None),
            "complete": len(recs) == np_, "sync": recs[0]["sync"]})
    if "normal" in med and "nocomm" in med and med["normal"]:
        lines.append({"bench": "ddp", "backend": a.backend, "np": np_, "mode": "share",
                      "comm_share": round((med["normal"] - med["nocomm"]) / med["normal"], 4)})
    return lines


def main():
    a = parse_args()
    if a.combine:
        rc, per_rank = 0, bc.combine_files(a.combine)
    elif bc.is_rank():
        run_rank(a)
        return 0
    else:
        import torch

        nparams = sum(p.numel() for p in build_model(a).parameters())
        bc.print_line({"bench": "ddp", "kind": "meta", "backend": a.backend, "np": a.np,
                       "torch": torch.__version__, "threads": a.threads, "params": nparams,
                       "batch": a.batch, "layer": a.layer, "steps": a.steps,
                       "warmup": a.warmup, "mode": a.mode})
        sys.stderr.write(f"ddp_bench: {a.backend} np={a.np}: model with {nparams:,} parameters "
                         f"({a.layer}), batch {a.batch}/rank, {a.steps} steps per mode\n")
        rc, per_rank, _ = bc.launch(os.path.abspath(__file__), sys.argv[1:], a.np,
                                    a.timeout, a.log_dir)
        if a.raw:
            for recs in per_rank:
                for rec in recs:
                    bc.print_line(dict(rec, bench="ddp-raw"))
    lines = combine(a, per_rank) if all(per_rank) else []
    for ln in lines:
        bc.print_line(ln)
        if "step_ms" in ln:
            sys.stderr.write(f"  {ln['mode']:>7}: step {ln['step_ms']:.1f} ms (min "
                             f"{ln['min_step_ms']:.1f}, max {ln['max_step_ms']:.1f}, "
                             f"{ln['steps']} steps)"
                             + (f", replicas in sync: {ln['in_sync']}" if ln["mode"] == "normal" else "")
                             + "\n")
        else:
            sys.stderr.write(f"  communication share: {ln['comm_share'] * 100:.1f}%\n")
    if rc == 0 and not lines:
        rc = 1
    if any(ln.get("in_sync") is False for ln in lines):
        sys.stderr.write("ddp_bench: the replicas' parameters differ after the normal steps\n")
        rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
