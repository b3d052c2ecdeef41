"""Shared fixtures for the chorus_torch (PyTorch process-group backend) test suite.

The suite spawns real multi-process worlds on loopback: every rank is a separate
Python process running one of the programs in rank_scripts/, started with the
torch.distributed "env://" variables.  The helpers here

  * find the build directory (env CHORUS_BUILD_DIR, default <repo>/build) and
    the built chorus_torch package inside it (<build>/python/chorus_torch);
  * choose the backend(s) under test (env CHORUS_TEST_BACKEND, a comma-separated
    list, default "chorus"; "gloo" is PyTorch's reference CPU backend and is used
    to validate the harness itself and as the reference in the DDP comparison);
  * start a world (run_world), wait for it with a deadline, and never leave a
    process behind: each rank runs in its own session and on timeout (or shortly
    after the first rank fails) the whole process tree is SIGKILLed.

Running:  CHORUS_BUILD_DIR=build /usr/bin/python3 -m pytest tests/python -q   (ctest sets it)
"""

import dataclasses
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RANK_SCRIPTS = os.path.join(HERE, "rank_scripts")
DEFAULT_BUILD_DIR = os.path.join(HERE, os.pardir, os.pardir, "build")

# The interpreter the ranks run under: the one running pytest, unless told otherwise.
PYTHON = os.environ.get("CHORUS_TEST_PYTHON", sys.executable)

# Backends that ship with torch; anything else is a plugin that must be imported
# (chorus_torch registers "chorus" when imported).
BUILTIN_BACKENDS = ("gloo",)


def build_dir():
    return os.path.abspath(os.environ.get("CHORUS_BUILD_DIR", DEFAULT_BUILD_DIR))


def chorus_module_dir():
    return os.path.join(build_dir(), "python", "chorus_torch")


def chorus_module_problem():
    """None when the built chorus_torch package looks usable, else why not."""
    pkg = chorus_module_dir()
    if not os.path.isfile(os.path.join(pkg, "__init__.py")):
        return (
            f"chorus_torch is not built: {pkg}/__init__.py does not exist "
            f"(CHORUS_BUILD_DIR={build_dir()}); build the project with the Python "
            f"backend enabled, or point CHORUS_BUILD_DIR at such a build"
        )
    if not glob.glob(os.path.join(pkg, "_C*.so")):
        return f"chorus_torch is incomplete: no compiled _C*.so in {pkg}"
    return None


def backends_under_test():
    raw = os.environ.get("CHORUS_TEST_BACKEND", "chorus")
    names = [b.strip() for b in raw.split(",") if b.strip()]
    return names or ["chorus"]


def require_backend(backend):
    """Fail (never skip) when the backend under test cannot be loaded."""
    if backend not in BUILTIN_BACKENDS:
        problem = chorus_module_problem()
        if problem:
            pytest.fail(problem, pytrace=False)


def pytest_generate_tests(metafunc):
    # Every test that takes a `backend` argument runs once per backend under test.
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends_under_test())


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Process handling


def _children_of(pid):
    """Every live descendant of pid (from /proc), deepest last."""
    by_parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2:].split()
        by_parent.setdefault(int(fields[1]), []).append(int(entry))
    descendants, unvisited = [], [pid]
    while unvisited:
        for child in by_parent.get(unvisited.pop(), []):
            descendants.append(child)
            unvisited.append(child)
    return descendants


def kill_tree(proc):
    """SIGKILL a process started with start_new_session=True, its process group
    and every descendant, then reap it."""
    if proc.poll() is None:
        victims = _children_of(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in [proc.pid] + victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@dataclasses.dataclass
class RankResult:
    rank: int
    rc: int            # exit status; negative = killed by that signal
    output: str        # stdout and stderr together
    killed_by_harness: str = ""   # why the harness killed it, if it did


@dataclasses.dataclass
class WorldResult:
    ranks: list
    timed_out: bool
    elapsed: float
    what: str          # a description, for messages

    @property
    def ok(self):
        return not self.timed_out and all(r.rc == 0 for r in self.ranks)

    def describe(self, tail=6000):
        lines = [f"{self.what}: "
                 + ("TIMED OUT" if self.timed_out else "finished")
                 + f" after {self.elapsed:.1f}s"]
        for r in self.ranks:
            note = f" ({r.killed_by_harness})" if r.killed_by_harness else ""
            lines.append(f"---- rank {r.rank}: rc={r.rc}{note} ----")
            out = r.output
            if len(out) > tail:
                out = f"[... {len(out) - tail} characters cut ...]\n" + out[-tail:]
            lines.append(out.rstrip())
        return "\n".join(lines)

    def check(self):
        """pytest.fail with every rank's output unless all ranks exited 0."""
        if not self.ok:
            pytest.fail(self.describe(), pytrace=False)
        return self


def rank_env(backend, rank, world_size, port, extra=None):
    env = dict(os.environ)
    pythonpath = [os.path.join(build_dir(), "python"), RANK_SCRIPTS]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        CHORUS_SOCKET_IFNAME="lo",
        PYTHONPATH=os.pathsep.join(pythonpath),
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore::UserWarning",  # torch's deprecation notices
        OMP_NUM_THREADS="1",
        CHORUS_TEST_BACKEND_NAME=backend,
    )
    env.pop("TORCHELASTIC_RUN_ID", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_all(procs, logs, deadline_s, what, grace_after_failure=None, start=None):
    """Wait for every process in procs until deadline_s seconds have passed.

    grace_after_failure: once one process exits non-zero, the rest get this many
    seconds to finish before they are killed (a failed rank usually leaves the
    others blocked in a collective). None waits for the full deadline.
    Returns a WorldResult; kills whatever is still alive at the end.
    """
    start = start or time.monotonic()
    killed = {}
    timed_out = False
    first_failure = None
    try:
        while True:
            now = time.monotonic()
            alive = [p for p in procs if p.poll() is None]
            if not alive:
                break
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed and first_failure is None:
                first_failure = (now, procs.index(failed[0]), failed[0].returncode)
            if (grace_after_failure is not None and first_failure is not None
                    and now - first_failure[0] > grace_after_failure):
                for p in alive:
                    killed[procs.index(p)] = (
                        f"killed by the harness {grace_after_failure}s after rank "
                        f"{first_failure[1]} exited with {first_failure[2]}")
                    kill_tree(p)
                break
            if now - start > deadline_s:
                timed_out = True
                for p in alive:
                    killed[procs.index(p)] = f"killed by the harness: {deadline_s}s timeout"
                    kill_tree(p)
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            kill_tree(p)
    elapsed = time.monotonic() - start
    ranks = []
    for i, (p, log) in enumerate(zip(procs, logs)):
        log.flush()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        log.close()
        ranks.append(RankResult(i, p.returncode, text, killed.get(i, "")))
    return WorldResult(ranks, timed_out, elapsed, what)


def run_world(n, script, args=(), backend="chorus", timeout=60, env=None,
              grace_after_failure=10, check=True):
    """Run rank_scripts/<script> as an n-rank world with the given backend.

    Every rank gets RANK/WORLD_SIZE/MASTER_ADDR=127.0.0.1/MASTER_PORT (a fresh free
    port)/CHORUS_SOCKET_IFNAME=lo/PYTHONPATH=<build>/python and is invoked as
        python <script> --backend <backend> <args...>
    Returns a WorldResult (per rank: rc, output). With check=True the test fails,
    showing every rank's output, unless every rank exited 0 within the timeout.
    """
    require_backend(backend)
    path = os.path.join(RANK_SCRIPTS, script)
    port = free_port()
    procs, logs = [], []
    start = time.monotonic()
    try:
        for rank in range(n):
            log = tempfile.TemporaryFile()
            logs.append(log)
            procs.append(subprocess.Popen(
                [PYTHON, path, "--backend", backend, *map(str, args)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=rank_env(backend, rank, n, port, env),
                start_new_session=True, cwd=RANK_SCRIPTS))
    except BaseException:
        for p in procs:
            kill_tree(p)
        raise
    result = wait_all(procs, logs, timeout,
                      f"{script} {' '.join(map(str, args))} [{backend}, world {n}]",
                      grace_after_failure, start)
    return result.check() if check else result


def run_command(cmd, timeout, env, what):
    """Run one command (e.g. torchrun) in its own session with a deadline; returns
    a WorldResult with a single entry. Kills the whole process tree on timeout."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, cwd=RANK_SCRIPTS)
    return wait_all([proc], [log], timeout, what)


@pytest.fixture(scope="session")
def chorus_build_dir():
    return build_dir()


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def world_runner():
    """The run_world helper as a fixture."""
    return run_world


# ---------------------------------------------------------------------------
# Sectioned rank programs (rank_scripts using rankutil.Reporter)
#
# A sectioned program runs named sections in order and logs begin/fail/skip/
# note/abort/end events per rank. run_sections() turns those logs into one
# SectionReport per section. When a section crashes or hangs (a rank dies, the
# watchdog fires, or ranks fall out of step), the world is started again with
# the sections after it, so one bad operation does not hide the others.


MAX_RESTARTS = 5


@dataclasses.dataclass
class SectionReport:
    name: str
    status: str                     # passed, failed, skipped, crashed
    failures: list = dataclasses.field(default_factory=list)
    skips: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)   # (case, message)
    detail: str = ""                # the world's output, for crashes

    def check(self, max_lines=40):
        """Make the calling test fail/skip according to this report."""
        if self.status in ("failed", "crashed"):
            lines = [f"section {self.name!r} {self.status}:"]
            lines += self.failures[:max_lines]
            if len(self.failures) > max_lines:
                lines.append(f"... and {len(self.failures) - max_lines} more")
            if self.detail:
                lines.append(self.detail)
            pytest.fail("\n".join(lines), pytrace=False)
        if self.status == "skipped":
            pytest.skip("; ".join(sorted(set(self.skips)))[:500])
        # Acceptable outcomes worth seeing (a documented refusal, an unverifiable
        # check) appear in pytest's warnings summary, one line per distinct message.
        by_message = {}
        for case, msg in self.notes:
            by_message.setdefault(msg, set()).add(case)
        for msg, cases in sorted(by_message.items()):
            cases = sorted(cases)
            shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
            warnings.warn(f"{self.name}: {msg} [{shown}]", UserWarning)


def _read_events(out_dir, n):
    events = {r: [] for r in range(n)}
    for r in range(n):
        path = os.path.join(out_dir, f"rank{r}.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                try:
                    events[r].append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
    return events


def run_sections(n, script, sections, backend, timeout, args=(), env=None):
    """Run a sectioned rank program; returns {section: SectionReport}, with an
    extra "teardown" entry (destroy_process_group and process exit)."""
    require_backend(backend)
    reports = {}
    remaining = list(sections)
    restarts = 0
    while True:
        out_dir = tempfile.mkdtemp(prefix="chorus_pytest_")
        try:
            world = run_world(n, script, ["--out", out_dir, "--sections", ",".join(remaining),
                                          *args], backend, timeout, env=env, check=False)
            events = _read_events(out_dir, n)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        names = remaining + ["teardown"]
        crashed_at = None
        for idx, name in enumerate(names):
            mine = {r: [e for e in events[r] if e.get("section") == name] for r in range(n)}
            flat = [e for r in range(n) for e in mine[r]]
            failures = [f"rank {e['rank']}: {e.get('case')}: {e.get('msg')}"
                        for e in flat if e["event"] in ("fail", "abort")]
            skips = [e.get("msg", "") for e in flat if e["event"] == "skip"]
            notes = [(e.get("case"), e.get("msg")) for e in flat if e["event"] == "note"]
            ended = all(any(e["event"] == "end" for e in mine[r]) for r in range(n))
            if ended:
                ran = sum(e.get("cases", 0) for e in flat if e["event"] == "end")
                if failures:
                    status = "failed"
                elif ran == 0 and skips:
                    status = "skipped"
                else:
                    status = "passed"
                reports[name] = SectionReport(name, status, failures, skips, notes)
                continue
            crashed_at = idx
            begun = any(e["event"] == "begin" for e in flat)
            why = ("did not finish on every rank (crash, hang or ranks out of step)"
                   if begun else "was never reached: the world died before it")
            reports[name] = SectionReport(
                name, "crashed", [f"the section {why}"] + failures, skips, notes,
                detail=world.describe())
            break
        if crashed_at is None:
            # Every section ended; the ranks must also have exited cleanly.
            if not world.ok:
                reports["teardown"] = SectionReport(
                    "teardown", "crashed",
                    ["every section finished but a rank did not exit with status 0"],
                    detail=world.describe())
            return reports
        if names[crashed_at] == "teardown":
            return reports
        if not any(e["event"] == "begin" for r in range(n) for e in events[r]):
            # Nothing ran at all (init failed?): report it for every section.
            for name in names[crashed_at + 1:]:
                reports[name] = SectionReport(
                    name, "crashed", ["the world failed before running any section"],
                    detail=world.describe())
            return reports
        remaining = remaining[crashed_at + 1:]
        restarts += 1
        if not remaining or restarts > MAX_RESTARTS:
            for name in remaining + ["teardown"]:
                reports.setdefault(name, SectionReport(
                    name, "crashed", [f"not run: gave up after {restarts} crashed worlds"]))
            return reports


_SECTION_CACHE = {}


def cached_sections(key, n, script, sections, backend, timeout, args=(), env=None):
    """run_sections once per key for the whole pytest session."""
    if key not in _SECTION_CACHE:
        _SECTION_CACHE[key] = run_sections(n, script, sections, backend, timeout, args, env)
    return _SECTION_CACHE[key]
