"""Helpers shared by the per-rank programs in this directory.

A rank program is started by tests/python/conftest.py:run_world with the env://
variables set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and
"--backend <name>" on its command line.  It

  * calls init(): imports the backend plugin (chorus_torch registers "chorus"),
    arms a watchdog that dumps every thread's Python stack and exits if the rank
    hangs, and joins the default process group;
  * records what it checked in a Reporter: one JSON object per line in
    <out>/rank<r>.jsonl, flushed at once so that a crash or a kill loses nothing
    already written.  The pytest side reads these files (see collective_report).

Reference values are computed locally: every rank can compute every other rank's
input (make_input is a pure function of rank, shape, dtype and a salt), so the
expected result of any collective is known without communication.
"""

import argparse
import contextlib
import datetime
import faulthandler
import json
import os
import sys
import time
import traceback

import torch
import torch.distributed as dist

BUILTIN_BACKENDS = ("gloo",)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16,
          torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

OPS = {"SUM": dist.ReduceOp.SUM, "PRODUCT": dist.ReduceOp.PRODUCT,
       "MIN": dist.ReduceOp.MIN, "MAX": dist.ReduceOp.MAX}

# Tolerances where the result is legitimately inexact (ReduceOp.AVG divides).
TOLERANCE = {torch.float32: (1e-6, 1e-6), torch.float64: (1e-12, 1e-12),
             torch.float16: (2e-3, 1e-3), torch.bfloat16: (1.6e-2, 1e-2)}

# What torch 1.13's gloo backend lacks (probed; gloo raises for these). The
# chorus backend must support all of them; the harness skips them for gloo only.
GLOO_UNSUPPORTED_DTYPES = (torch.bfloat16, torch.bool)   # p2p excepted
GLOO_UNSUPPORTED_FEATURES = {"AVG", "all_gather_base", "reduce_scatter",
                             "reduce_scatter_base", "all_to_all"}


def dname(dtype):
    return str(dtype).replace("torch.", "")


def arg_parser(description=""):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", required=True)
    p.add_argument("--out", default="", help="directory for rank<r>.jsonl")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="process-group timeout (s); the watchdog fires a bit later")
    return p


def log(msg):
    print(f"[rank {os.environ.get('RANK', '?')}] {msg}", flush=True)


def import_backend(backend):
    if backend not in BUILTIN_BACKENDS:
        import chorus_torch  # noqa: F401  (registers the "chorus" backend)


def init(args, watchdog=True, pg_timeout=None):
    """Join the default process group with args.backend; returns (rank, world)."""
    faulthandler.enable()  # a crash (SIGSEGV, abort) prints the Python stack
    if watchdog:
        # A hang is reported with every thread's stack, then the rank exits(1).
        faulthandler.dump_traceback_later(args.timeout + 20, exit=True)
    import_backend(args.backend)
    timeout = datetime.timedelta(seconds=pg_timeout or args.timeout)
    dist.init_process_group(args.backend, init_method="env://", timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def gloo_lacks(backend, feature=None, dtype=None, p2p=False):
    """True when torch 1.13's gloo cannot do this (so the case is skipped for gloo)."""
    if backend != "gloo":
        return False
    if feature in GLOO_UNSUPPORTED_FEATURES:
        return True
    return (not p2p) and dtype in GLOO_UNSUPPORTED_DTYPES


# ---------------------------------------------------------------------------
# Deterministic inputs and local references


def make_input(rank, shape, dtype, salt=0, nonzero=False):
    """Small integers (exact in every dtype, sums and products of <= 4 of them too).

    Signed/float: values in -1..3 (nonzero=True: -1, 1, 2, 3 for products).
    uint8: 0..3 (nonzero: 1..3).  bool: bit (rank % 8) of (index + salt), so that
    over 2^world consecutive elements every pattern of the ranks' bits occurs.
    """
    if isinstance(shape, int):
        shape = (shape,)
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    if dtype == torch.bool:
        return (((i + salt) >> (rank % 8)) & 1).bool().reshape(shape)
    k = (i * 7 + rank * 3 + salt)
    if nonzero:
        table = torch.tensor([1, 1, 2, 3] if dtype == torch.uint8 else [-1, 1, 2, 3])
        v = table[k % 4]
    elif dtype == torch.uint8:
        v = k % 4
    else:
        v = k % 5 - 1
    return v.to(dtype).reshape(shape)


def reference_reduce(tensors, op, dtype):
    """Reduce a list of tensors (one per rank) the way the collective should."""
    if dtype == torch.bool:
        stack = torch.stack([t.bool() for t in tensors])
        if op in ("SUM", "MAX", "BOR"):
            return stack.any(0)
        if op in ("PRODUCT", "MIN", "BAND"):
            return stack.all(0)
        if op == "BXOR":
            return (stack.to(torch.int64).sum(0) % 2).bool()
        raise ValueError(op)
    wide = torch.float64 if dtype.is_floating_point else torch.int64
    stack = torch.stack([t.to(wide) for t in tensors])
    if op == "SUM":
        r = stack.sum(0)
    elif op == "PRODUCT":
        r = stack.prod(0)
    elif op == "MIN":
        r = stack.amin(0)
    elif op == "MAX":
        r = stack.amax(0)
    elif op == "AVG":
        r = stack.sum(0) / len(tensors)
    elif op in ("BAND", "BOR", "BXOR"):
        r = stack[0].clone()
        for t in stack[1:]:
            r = {"BAND": r & t, "BOR": r | t, "BXOR": r ^ t}[op]
    else:
        raise ValueError(op)
    return r.to(dtype)


def mismatch(got, expected, tol=None, limit=5):
    """None when equal (exactly, or within tol=(rtol, atol)), else a description."""
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype}, expected {expected.dtype}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.numel() == 0:
        return None
    if tol is None:
        bad = got != expected
    else:
        rtol, atol = tol
        g, e = got.double(), expected.double()
        bad = (g - e).abs() > atol + rtol * e.abs()
    nbad = int(bad.sum())
    if nbad == 0:
        return None
    flat_bad = bad.reshape(-1).nonzero().reshape(-1)[:limit].tolist()
    g, e = got.reshape(-1), expected.reshape(-1)
    shown = ", ".join(f"[{i}] got {g[i].item()!r} expected {e[i].item()!r}"
                      for i in flat_bad)
    return f"{nbad} of {got.numel()} elements differ: {shown}"


# ---------------------------------------------------------------------------
# Reporting


class Reporter:
    """Writes <out>/rank<r>.jsonl and keeps the ranks in step after an exception.

    Events (one JSON object per line, each with "rank"): begin/end of a section
    ("end" carries how many cases ran), and fail / skip / note (an acceptable
    alternative outcome, shown as a pytest warning) / info / abort, each with
    "section", "case" and "msg".

    A case that raises on one rank only leaves the others waiting inside a
    collective, so after an unexpected exception the rank asks (through the
    process group's store) whether every rank raised in that same case: if so the
    world is still in step and the run goes on, otherwise the rank records
    "abort" and exits; the harness then resumes with the next section.
    """

    def __init__(self, out_dir, rank, world, backend, section_watchdog=None):
        self.rank, self.world, self.backend = rank, world, backend
        # Seconds one section may take before the rank dumps its stacks and exits.
        self.section_watchdog = section_watchdog
        self.path = os.path.join(out_dir, f"rank{rank}.jsonl") if out_dir else None
        self.file = open(self.path, "a") if self.path else None
        self.section_name = None
        self.store = default_store()  # kept: it outlives destroy_process_group()
        self.failures = 0
        self.cases = 0

    def event(self, **kw):
        kw["rank"] = self.rank
        line = json.dumps(kw)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()
        if kw["event"] in ("fail", "abort"):
            log(f"FAIL {kw.get('section')} / {kw.get('case')}: {kw.get('msg')}")

    @contextlib.contextmanager
    def section(self, name):
        self.section_name = name
        if self.section_watchdog:
            faulthandler.dump_traceback_later(self.section_watchdog, exit=True)
        self.event(event="begin", section=name)
        t0 = time.monotonic()
        self.cases = 0
        self._inject(name)
        yield
        self.event(event="end", section=name, cases=self.cases,
                   seconds=round(time.monotonic() - t0, 3))
        self.section_name = None

    def _inject(self, section):
        """Harness self-check: CHORUS_TEST_INJECT=<section>:<rank>:<crash|hang|raise>
        makes that rank misbehave at the start of that section."""
        spec = os.environ.get("CHORUS_TEST_INJECT", "")
        if spec.count(":") != 2:
            return
        sec, rank, what = spec.split(":")
        if sec != section or int(rank) != self.rank:
            return
        if what == "crash":
            os.abort()
        if what == "hang":
            while True:
                time.sleep(1)
        if what == "raise":
            with self.case("injected exception"):
                raise RuntimeError("injected by CHORUS_TEST_INJECT")

    def fail(self, case, msg):
        self.failures += 1
        self.event(event="fail", section=self.section_name, case=case, msg=msg)

    def skip(self, case, msg):
        self.event(event="skip", section=self.section_name, case=case, msg=msg)

    def note(self, case, msg):
        """Something acceptable worth showing (e.g. a documented refusal)."""
        self.event(event="note", section=self.section_name, case=case, msg=msg)

    def info(self, case, msg):
        """For the record only (e.g. the text of an expected error)."""
        self.event(event="info", section=self.section_name, case=case, msg=msg)

    def check(self, case, got, expected, tol=None):
        """Record a failure unless got matches expected; returns True when it does."""
        why = mismatch(got, expected, tol)
        if why:
            self.fail(case, why)
            return False
        return True

    @contextlib.contextmanager
    def case(self, name, participants=None, counted=True):
        """Run one case; an exception becomes a failure (and maybe an abort).

        participants: how many ranks run this case (default: the whole world);
        case names must be unique within a run (they key the agreement);
        counted=False for a wrapper that is not a check of its own."""
        self.cases += counted
        try:
            yield
        except Exception as e:  # noqa: BLE001 - we report everything
            text = f"{type(e).__name__}: {e}".strip()
            self.fail(name, f"raised {text}\n{short_traceback()}")
            self.agree_or_abort(name, participants or self.world)

    def agree_or_abort(self, name, participants, wait_s=15.0):
        store = self.store
        key = f"chorus_test/exception/{self.section_name}/{name}"
        store.add(key, 1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if store.add(key, 0) >= participants:
                return  # every rank raised here: still in step
            time.sleep(0.05)
        self.event(event="abort", section=self.section_name, case=name,
                   msg="the other ranks did not raise in this case; stopping this rank")
        self.finish(abort=True)

    def finish(self, abort=False):
        if self.file:
            self.file.close()
            self.file = None
        sys.stdout.flush()
        sys.stderr.flush()
        if abort:
            os._exit(3)


def default_store():
    return dist.distributed_c10d._get_default_store()


def short_traceback(limit=4):
    return "".join(traceback.format_exc(limit=-limit).splitlines(True)[-2 * limit - 2:]).rstrip()


# ---------------------------------------------------------------------------
# The main() of a sectioned rank program


class Ctx:
    """What a section function gets: rank, world, backend, the Reporter, and a
    salt counter for distinct inputs per case. Every rank must draw the same salts
    in the same order: call next_salt() before any rank-dependent early return."""

    def __init__(self, rank, world, backend, rep):
        self.rank, self.world, self.backend, self.rep = rank, world, backend, rep
        self.salt = 0
        self.extra = {}

    def next_salt(self):
        self.salt += 1
        return self.salt


def sectioned_main(sections, description="", setup=None, add_args=None):
    """Run the named sections (all by default) in their order in `sections`, then
    tear down.

    sections: {name: fn(ctx)}; setup(ctx) runs once after init on every rank
    (e.g. to create subgroups). The rank exits 0 when it got to the end: failures
    are in the report, so a non-zero status always means a crash or an abort.
    """
    p = arg_parser(description)
    p.add_argument("--sections", default="all", help="comma-separated, in this order")
    p.add_argument("--section-watchdog", type=float, default=30.0)
    if add_args:
        add_args(p)
    args = p.parse_args()
    names = list(sections) if args.sections == "all" else args.sections.split(",")
    unknown = [n for n in names if n not in sections]
    if unknown:
        sys.exit(f"unknown sections {unknown}; known: {list(sections)}")
    faulthandler.dump_traceback_later(args.timeout + 30, exit=True)  # init + setup
    rank, world = init(args, watchdog=False)
    rep = Reporter(args.out, rank, world, args.backend, section_watchdog=args.section_watchdog)
    c = Ctx(rank, world, args.backend, rep)
    c.args = args
    if setup:
        setup(c)
    for index, name in enumerate(sections):
        if name not in names:
            continue
        # Salts restart per section: a section's inputs do not depend on which
        # sections ran before it (the harness may resume after a crash).
        c.salt = 100000 * index
        with rep.section(name):
            with rep.case(f"{name} (outside any case)", counted=False):
                sections[name](c)
    with rep.section("teardown"):
        with rep.case("destroy_process_group", counted=False):
            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
    rep.finish()
