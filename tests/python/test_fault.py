"""A rank killed with SIGKILL mid-run: every survivor gets a RuntimeError (not a
hang, not a crash) within the process-group timeout, with a message that says
what failed, and can still exit cleanly.

World of 3, timeout=timedelta(seconds=10) given to init_process_group; rank 1
kills itself before its 6th all_reduce (rank_scripts/fault.py). For chorus it runs
twice: with the automatic transport (shared memory on one host) and over TCP.
"""

import json
import re

import pytest

pytest.importorskip("torch")

from conftest import run_world  # noqa: E402

WORLD = 3
KILL_RANK = 1
PG_TIMEOUT = 10.0
SLACK = 10.0       # error detection + Python overhead on a loaded 2-core machine


def survivor_line(output):
    for line in output.splitlines():
        if line.startswith("SURVIVOR "):
            return json.loads(line[len("SURVIVOR "):])
    return None


def survivors(world, problems):
    """(rank result, SURVIVOR report) of every survivor that reported; what is missing (a hung
    world, a survivor without a report, an error that is not a RuntimeError) goes to problems."""
    if world.timed_out:
        problems.append("the world timed out (a survivor hung)")
    reported = []
    for r in world.ranks:
        if r.rank == KILL_RANK:
            continue
        info = survivor_line(r.output)
        if info is None:
            problems.append(f"rank {r.rank} never reported the failure (rc={r.rc})")
            continue
        if info["type"] != "RuntimeError":
            problems.append(f"rank {r.rank} got {info['type']}, expected RuntimeError: "
                            f"{info['message'][:300]}")
        reported.append((r, info))
    return reported


@pytest.mark.parametrize("transport", ["auto", "tcp"])
def test_killed_rank(backend, transport):
    """auto: ranks on one host talk over shared memory; tcp: CHORUS_TRANSPORT=tcp,
    so the death is seen on a socket instead."""
    if transport != "auto" and backend == "gloo":
        pytest.skip("CHORUS_TRANSPORT only applies to chorus")
    env = {"CHORUS_TRANSPORT": transport} if transport != "auto" else None
    world = run_world(WORLD, "fault.py",
                      ["--kill-rank", KILL_RANK, "--kill-after", 5, "--timeout", PG_TIMEOUT],
                      backend, timeout=3 * PG_TIMEOUT + 60, env=env, grace_after_failure=None,
                      check=False)
    problems = []
    killed = world.ranks[KILL_RANK]
    if killed.rc != -9:
        problems.append(f"rank {KILL_RANK} should have died of SIGKILL, rc={killed.rc}")
    for r, info in survivors(world, problems):
        if r.rc != 0:
            problems.append(f"rank {r.rank} reported the failure but then exited with rc={r.rc}"
                            f"{' (' + r.killed_by_harness + ')' if r.killed_by_harness else ''}")
        if info["elapsed"] >= PG_TIMEOUT + SLACK:
            problems.append(f"rank {r.rank} needed {info['elapsed']}s to see the failure "
                            f"(timeout {PG_TIMEOUT}s + {SLACK}s slack)")
        message = info["message"].strip()
        if not message:
            problems.append(f"rank {r.rank}: the error message is empty")
        elif backend == "chorus" and not any(w in message.lower() for w in ("rank", "peer")):
            problems.append(f"rank {r.rank}: the error names neither a rank nor a peer: "
                            f"{message[:300]}")
    if problems:
        pytest.fail("\n".join(problems) + "\n\n" + world.describe(), pytrace=False)


def test_stopped_rank(backend):
    """A rank that stops (SIGSTOP: alive, its connections open, silent) is found by the
    deadline: every survivor gets a RuntimeError after about the group's timeout, not before
    (nothing failed that could be seen sooner) and not much after. A survivor waiting on the
    stopped rank reports a timeout naming it; the first to time out aborts its connections, so
    the others may instead report that neighbour's abort (Chorus fails neighbours at once
    rather than at their own deadline): each message names a rank."""
    world = run_world(WORLD, "fault.py",
                      ["--kill-rank", KILL_RANK, "--kill-after", 5, "--timeout", PG_TIMEOUT,
                       "--signal", "stop"],
                      backend, timeout=3 * PG_TIMEOUT + 60, grace_after_failure=None, check=False)
    problems = []
    blamed = False
    for r, info in survivors(world, problems):
        if not PG_TIMEOUT * 0.9 <= info["elapsed"] < PG_TIMEOUT + SLACK:
            problems.append(f"rank {r.rank} saw the failure after {info['elapsed']}s "
                            f"(the group's timeout is {PG_TIMEOUT}s)")
        message = info["message"].lower()
        if backend == "chorus":
            if "rank" not in message:
                problems.append(f"rank {r.rank}: the error names no rank: {info['message'][:300]}")
            # "... no progress for 10.0 s; waiting on rank 0 (shm: ...), rank 1 (shm: ...)"
            blamed = blamed or bool(re.search(rf"timeout.*waiting on .*\brank {KILL_RANK} \(", message))
    if backend == "chorus" and not blamed:
        problems.append(f"no survivor reported a timeout waiting on rank {KILL_RANK}")
    if problems:
        pytest.fail("\n".join(problems) + "\n\n" + world.describe(), pytrace=False)
