"""Shared parts of the torch.distributed benchmarks in perf/torch (allreduce_bench.py,
ddp_bench.py): the local launcher, process-group set-up, sizes, and result lines.

Each benchmark is one script with two roles:
  * launcher (no RANK in the environment, `--np N`): starts N copies of itself as ranks
    (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT set), waits for them under a
    deadline, kills the rest as soon as one fails, reads the ranks' result lines and prints the
    combined results as JSON lines on stdout;
  * rank (RANK set, by this launcher or by torchrun): runs the measurement and prints one
    `RESULT {json}` line per measurement on stdout with its own raw timings. Under torchrun, save
    each rank's output and combine them with `--combine FILE...`.

The ranks gather nothing through torch.distributed (no all_gather_object): the backend under test
only has to do what the measurement needs (all_reduce, barrier; broadcast and all_gather for DDP).
"""
import argparse
import ctypes
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RESULT_PREFIX = "RESULT "
BUILTIN_BACKENDS = ("gloo", "mpi", "nccl", "ucc")


# ---------------------------------------------------------------- sizes and formatting
def to_bytes(s):
    """'64K' -> 65536 (K/M/G are powers of 1024)."""
    s = str(s).strip()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1:].lower(), 1)
    num = s[:-1] if mult != 1 else s
    if not num.isdigit():
        raise argparse.ArgumentTypeError(f"bad size '{s}'")
    return int(num) * mult


# The size column's form (1K, 4M, 1G) is tools/bench_report.py's, shared by every bench script.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "tools"))
from bench_report import sz as size_str  # noqa: E402,F401


def size_ladder(first, last, factor):
    out, s = [], first
    while s <= last:
        out.append(s)
        if factor <= 1:
            break
        s *= factor
    return out


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- rank side
def is_rank():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def emit(record):
    """One result line of this rank (the launcher collects these)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(msg):
    sys.stderr.write(f"[rank {os.environ.get('RANK', '?')}] {msg}\n")
    sys.stderr.flush()


def init_backend(backend, timeout_s, threads):
    """Sets the thread count, imports the backend's module if it is not built in, and
    creates the default process group from the environment (env://)."""
    import torch
    import torch.distributed as dist

    if threads > 0:
        torch.set_num_threads(threads)
    if backend not in BUILTIN_BACKENDS:
        module = "chorus_torch" if backend == "chorus" else backend
        try:
            __import__(module)
        except ImportError as e:
            raise SystemExit(
                f"backend '{backend}': cannot import {module} ({e}); "
                f"put its directory on PYTHONPATH (for chorus: <build>/python)")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return rank, world


class Sync:
    """Lines the ranks up: dist.barrier() through the backend under test, or, if the backend
    does not implement barrier, an all_reduce of one float (which is what Gloo's barrier is)."""

    def __init__(self):
        import torch

        self.how = None
        self._one = torch.zeros(1)

    def __call__(self):
        import torch.distributed as dist

        if self.how in (None, "barrier"):
            try:
                dist.barrier()
                self.how = "barrier"
                return
            except (RuntimeError, NotImplementedError) as e:
                if self.how == "barrier":
                    raise
                log(f"dist.barrier() failed ({str(e).splitlines()[0][:200]}); "
                    f"using a 1-float all_reduce as the barrier")
                self.how = "all_reduce"
        dist.all_reduce(self._one)


# ---------------------------------------------------------------- launcher side
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # The ranks get SIGKILL if the launcher dies (even by SIGKILL), so none is left behind.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise _Interrupted(f"signal {signum}")


def launch(script, args, np, timeout_s, log_dir=None, env_extra=None):
    """Runs `python3 script args...` as ranks 0..np-1 on 127.0.0.1. Returns
    (rc, per-rank lists of result dicts, log_dir). rc: 0 all ok, 124 deadline, else the first
    failing rank's status. Every rank is gone when this returns."""
    log_dir = log_dir or tempfile.mkdtemp(prefix="chorus-torch-bench.")
    os.makedirs(log_dir, exist_ok=True)
    env = dict(os.environ)
    env.update(env_extra or {})
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env["MASTER_PORT"] = str(free_port())
    env["WORLD_SIZE"] = str(np)
    env["LOCAL_WORLD_SIZE"] = str(np)
    env.setdefault("OMP_NUM_THREADS", "1")
    procs, files = [], []
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    rc = 0
    try:
        for r in range(np):
            renv = dict(env, RANK=str(r), LOCAL_RANK=str(r), GROUP_RANK="0")
            out = open(os.path.join(log_dir, f"rank{r}.out"), "w")
            err = open(os.path.join(log_dir, f"rank{r}.err"), "w")
            files += [out, err]
            procs.append(subprocess.Popen([sys.executable, script] + list(args), env=renv,
                                          stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent))
        deadline = time.monotonic() + timeout_s
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                r, c = bad[0]
                rc = c if c > 0 else 128 - c
                sys.stderr.write(f"launcher: rank {r} exited with status {c}; stopping the others\n")
                break
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                rc = 124
                sys.stderr.write(f"launcher: ranks still running after {timeout_s} s "
                                 f"(hung?); killing them\n")
                break
            time.sleep(0.05)
    except _Interrupted as e:
        rc = 130
        sys.stderr.write(f"launcher: {e}; killing the ranks\n")
    finally:
        _stop(procs)
        for f in files:
            f.close()
        for s, h in old.items():
            signal.signal(s, h)
    if rc != 0:
        for r in range(np):
            tail = _tail(os.path.join(log_dir, f"rank{r}.err"), 6)
            if tail:
                sys.stderr.write(f"--- rank {r} stderr (last lines; {log_dir}/rank{r}.err)\n{tail}\n")
    return rc, [read_results(os.path.join(log_dir, f"rank{r}.out")) for r in range(np)], log_dir


def _stop(procs):
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.terminate()
    end = time.monotonic() + 5
    for p in live:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path, n):
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if ln.strip()]
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def read_results(path):
    res = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(RESULT_PREFIX):
                    try:
                        res.append(json.loads(line[len(RESULT_PREFIX):]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return res


def combine_files(paths):
    """Per-rank result lists from saved rank outputs (e.g. torchrun --tee logs), ordered by the
    rank recorded in each line."""
    by_rank = {}
    for p in paths:
        for rec in read_results(p):
            by_rank.setdefault(rec["rank"], []).append(rec)
    return [by_rank[r] for r in sorted(by_rank)]


def print_line(record):
    sys.stdout.write(json.dumps(record, separators=(", ", ": ")) + "\n")
    sys.stdout.flush()


def common_args(p, timeout_default):
    p.add_argument("--backend", default="gloo",
                   help="process-group backend; 'chorus' imports chorus_torch first [gloo]")
    p.add_argument("--np", type=int, default=2, help="ranks to start (launcher role) [2]")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads per rank; 0 leaves torch's default [1]")
    p.add_argument("--timeout", type=float, default=timeout_default,
                   help=f"seconds before the launcher kills the ranks; also the process "
                        f"group's timeout [{timeout_default}]")
    p.add_argument("--log-dir", help="where the ranks' stdout/stderr go [a new /tmp dir]")
    p.add_argument("--combine", nargs="+", metavar="FILE",
                   help="do not run: combine saved per-rank outputs (torchrun logs)")
    p.add_argument("--raw", action="store_true", help="also print every rank's raw lines")
