"""DDP training over the backend under test matches the same training over gloo.

A 3-layer MLP is trained for 200 SGD steps (fixed seeds, synthetic data sharded
by rank, small DDP buckets) once with gloo and once with the backend under test
(rank_scripts/ddp_train.py): plain DDP at world sizes 2 and 3, and at world 2 with
two communication hooks, fp16 compression and PowerSGD (its then() callbacks
issue all_reduces and wait for them). Proves: the per-step losses and final
weights agree with gloo's within float32 reduction-order tolerance (rtol 1e-5,
atol 1e-6), and every rank ends with the same weights.
"""

import json
import math
import os
import tempfile

import pytest

pytest.importorskip("torch")

from conftest import run_world  # noqa: E402

STEPS = 200
RTOL, ATOL = 1e-5, 1e-6
_RUNS = {}


def train(backend, world_size, hook="none"):
    """Per-rank {losses, params} of one DDP run (cached: gloo's serves every backend)."""
    key = (backend, world_size, hook)
    if key not in _RUNS:
        with tempfile.TemporaryDirectory(prefix="chorus_ddp_") as out:
            # --timeout 10: a hang is cut by the ranks' watchdog at 30 s.
            run_world(world_size, "ddp_train.py", ["--steps", STEPS, "--out", out,
                                                   "--hook", hook, "--timeout", 10],
                      backend, timeout=90)
            runs = []
            for r in range(world_size):
                with open(os.path.join(out, f"rank{r}.json")) as f:
                    runs.append(json.load(f))
        _RUNS[key] = runs
    return _RUNS[key]


def differences(a, b, what, limit=5):
    """Descriptions of the elements of lists a and b that are not close."""
    if len(a) != len(b):
        return [f"{what}: length {len(a)} vs {len(b)}"]
    bad = [i for i, (x, y) in enumerate(zip(a, b))
           if not math.isclose(x, y, rel_tol=RTOL, abs_tol=ATOL)]
    return [f"{what}[{i}]: {a[i]!r} vs {b[i]!r}" for i in bad[:limit]] + (
        [f"{what}: {len(bad) - limit} more"] if len(bad) > limit else [])


@pytest.mark.parametrize("world_size,hook", [(2, "none"), (3, "none"), (2, "fp16"),
                                             (2, "powersgd")])
def test_ddp_matches_gloo(backend, world_size, hook):
    mine = train(backend, world_size, hook)
    ref = train("gloo", world_size, hook)
    problems = []
    for r in range(world_size):
        problems += differences(mine[r]["losses"], ref[r]["losses"], f"rank {r} loss")
        for name in ref[r]["params"]:
            problems += differences(mine[r]["params"][name], ref[r]["params"][name],
                                    f"rank {r} {name}")
        # DDP keeps replicas identical: every rank's weights equal rank 0's, exactly.
        if mine[r]["params"] != mine[0]["params"]:
            problems.append(f"{backend}: rank {r}'s final weights differ from rank 0's")
    if not all(math.isfinite(v) for v in mine[0]["losses"]):
        problems.append("non-finite loss")
    if mine[0]["losses"][-1] >= mine[0]["losses"][0]:
        problems.append(f"training did not reduce the loss: {mine[0]['losses'][0]} -> "
                        f"{mine[0]['losses'][-1]}")
    if problems:
        pytest.fail(f"{backend} vs gloo, world {world_size}, hook {hook}:\n"
                    + "\n".join(problems[:40]),
                    pytrace=False)
