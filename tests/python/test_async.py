"""Async semantics: Work.wait/is_completed/exception, get_future, then-chains,
in-order execution of several async ops waited in reverse order.

One world of 3 ranks runs rank_scripts/async_ops.py; each test reports one
section (see that file's docstring for what each proves).
"""

import sys

import pytest

pytest.importorskip("torch")

from conftest import RANK_SCRIPTS, cached_sections  # noqa: E402

sys.path.insert(0, RANK_SCRIPTS)
import async_ops  # noqa: E402

SECTIONS = list(async_ops.SECTIONS)


@pytest.mark.parametrize("section", SECTIONS + ["teardown"])
def test_async(backend, section):
    # Each section takes a few seconds at most: a hang is cut after 15 s.
    report = cached_sections(("async", backend), 3, "async_ops.py", SECTIONS, backend,
                             timeout=120, args=["--section-watchdog", 15])
    report[section].check()
