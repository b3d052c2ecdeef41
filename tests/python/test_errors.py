"""Misuse raises clear Python exceptions (never a crash or hang), the group keeps
working afterwards, and calls after destroy_process_group() raise.

One world of 2 ranks runs rank_scripts/errors.py; each test reports one section
(see that file's docstring).
"""

import sys

import pytest

pytest.importorskip("torch")

from conftest import RANK_SCRIPTS, cached_sections  # noqa: E402

sys.path.insert(0, RANK_SCRIPTS)
import errors  # noqa: E402

SECTIONS = list(errors.SECTIONS)   # after_destroy is last: it destroys the group


@pytest.mark.parametrize("section", SECTIONS + ["teardown"])
def test_errors(backend, section):
    report = cached_sections(("errors", backend), 2, "errors.py", SECTIONS, backend,
                             timeout=120, args=["--timeout", "30"])
    report[section].check()
