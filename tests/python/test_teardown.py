"""Ending cleanly: a group destroyed right after its last call (barrier,
all_reduce, broadcast) must not make a peer that is still finishing that call
fail, also when the group earlier refused a call, and
"dist.barrier(); dist.destroy_process_group()" ends every rank with status 0.
Twenty create/call/destroy rounds per world (rank_scripts/teardown.py) make the
race between the first rank to leave and the last likely.
"""

import pytest

pytest.importorskip("torch")

from conftest import run_world  # noqa: E402


@pytest.mark.parametrize("world_size", [3, 4])
def test_destroy_right_after_last_call(backend, world_size):
    world = run_world(world_size, "teardown.py", ["--rounds", 20, "--timeout", 30], backend,
                      timeout=120, check=False)
    errors = [line for r in world.ranks for line in r.output.splitlines()
              if line.startswith("TEARDOWN_ERROR")]
    if errors or not world.ok:
        pytest.fail("\n".join(errors[:10]) + "\n\n" + world.describe(), pytrace=False)
