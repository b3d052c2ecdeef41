"""A rank killed with SIGKILL mid-run: every survivor gets a RuntimeError (not a
hang, not a crash) within the process-group timeout, with a message that says
what failed, and can still exit cleanly.

World of 3, timeout=timedelta(seconds=10) given to init_process_group; rank 1
kills itself before its 6th all_reduce (rank_scripts/fault.py). For chorus it runs
twice: with the automatic transport (shared memory on one host) and over TCP.
"""

import json

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
    if world.timed_out:
        problems.append("the world timed out (a survivor hung)")
    killed = world.ranks[KILL_RANK]
    if killed.rc != -9:
        problems.append(f"rank {KILL_RANK} should have died of SIGKILL, rc={killed.rc}")
    for r in world.ranks:
        if r.rank == KILL_RANK:
            continue
        info = survivor_line(r.output)
        if info is None:
            problems.append(f"rank {r.rank} never reported the failure (rc={r.rc})")
            continue
        if r.rc != 0:
            problems.append(f"rank {r.rank} reported the failure but then exited with rc={r.rc}"
                            f"{' (' + r.killed_by_harness + ')' if r.killed_by_harness else ''}")
        if info["type"] != "RuntimeError":
            problems.append(f"rank {r.rank} got {info['type']}, expected RuntimeError: "
                            f"{info['message'][:300]}")
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
