"""Subgroups (dist.new_group) used interleaved with the world.

One world per size runs rank_scripts/subgroups.py; each test reports one section:
group membership queries, rounds interleaving world/evens/odds/first/solo
collectives (non-members do not call), the other operations on a subgroup
(roots given as global ranks), async ops across groups, and a group created late
then destroyed while the rest keep working.
"""

import sys

import pytest

pytest.importorskip("torch")

from conftest import RANK_SCRIPTS, cached_sections  # noqa: E402

sys.path.insert(0, RANK_SCRIPTS)
import subgroups  # noqa: E402

SECTIONS = list(subgroups.SECTIONS)


@pytest.mark.parametrize("world_size", [3, 4])
@pytest.mark.parametrize("section", SECTIONS + ["teardown"])
def test_subgroups(backend, section, world_size):
    report = cached_sections(("subgroups", backend, world_size), world_size,
                             "subgroups.py", SECTIONS, backend, timeout=120)
    report[section].check()
