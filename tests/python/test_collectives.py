"""Every torch.distributed operation against a locally computed reference.

For each world size (1-4) ONE world runs rank_scripts/collectives.py, which goes
through every operation family ("section") with every dtype (float32/64, fp16,
bf16, int8, uint8, int32, int64, bool), sizes 0/1/7/4099/3x5 (and 2**20+3 for
all_reduce), every op and every root. Each test below reports one section of that
run: it proves that operation gives exactly the reference result (floats hold small
integers, so sums are exact; AVG is compared with fp16/bf16-appropriate
tolerances). A crash or hang inside a section fails that section only: the world
is restarted with the sections after it.
"""

import os
import sys

import pytest

pytest.importorskip("torch")

from conftest import RANK_SCRIPTS, cached_sections  # noqa: E402

sys.path.insert(0, RANK_SCRIPTS)
import collectives  # noqa: E402  (the rank program; defines the sections)

SECTIONS = list(collectives.SECTIONS)
WORLD_SIZES = [1, 2, 3, 4]
# One attempt's deadline; every section also has a 30 s watchdog inside the ranks.
TIMEOUT = float(os.environ.get("CHORUS_TEST_COLLECTIVES_TIMEOUT", 150))


def world_report(backend, world_size):
    return cached_sections(("collectives", backend, world_size), world_size,
                           "collectives.py", SECTIONS, backend, TIMEOUT)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("section", SECTIONS)
def test_collective(backend, section, world_size):
    """The operation family `section` matches the reference on every case."""
    world_report(backend, world_size)[section].check()


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_teardown(backend, world_size):
    """After all of that, destroy_process_group() works and every rank exits 0."""
    world_report(backend, world_size)["teardown"].check()
