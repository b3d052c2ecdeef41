"""The backend works under torchrun (python -m torch.distributed.run): a world-2
job on this host does an all_reduce and a few DDP steps, and both ranks finish
with identical weights (rank_scripts/torchrun_job.py).

torchrun 1.13 under Python 3.11 breaks with its default --redirects/--tee, hence
--redirects 2 --tee 2.
"""

import os
import re

import pytest

pytest.importorskip("torch")

from conftest import PYTHON, RANK_SCRIPTS, free_port, rank_env, require_backend, run_command  # noqa: E402


def test_torchrun_world2(backend, tmp_path):
    require_backend(backend)
    port = free_port()
    env = rank_env(backend, 0, 2, port)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k)                       # torchrun sets these for its workers
    cmd = [PYTHON, "-m", "torch.distributed.run", "--redirects", "2", "--tee", "2",
           "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           "--max_restarts", "0", "--monitor_interval", "0.5",
           "--log_dir", str(tmp_path / "torchelastic"),     # not a new /tmp/torchelastic_*
           os.path.join(RANK_SCRIPTS, "torchrun_job.py"), "--backend", backend]
    result = run_command(cmd, timeout=120, env=env, what=f"torchrun world 2 [{backend}]")
    output = result.ranks[0].output
    oks = re.findall(r"TORCHRUN_OK rank=(\d) world=(\d) local_rank=(\d) checksum=(\S+)", output)
    problems = []
    if not result.ok:
        problems.append(f"torchrun exited with {result.ranks[0].rc}"
                        + (" (timed out)" if result.timed_out else ""))
    if sorted(o[0] for o in oks) != ["0", "1"] or any(o[1] != "2" for o in oks):
        problems.append(f"expected TORCHRUN_OK from ranks 0 and 1 of world 2, got {oks}")
    elif len({o[3] for o in oks}) != 1:
        problems.append(f"the ranks' weights differ after DDP: checksums {[o[3] for o in oks]}")
    if problems:
        pytest.fail("\n".join(problems) + "\n\n" + result.describe(), pytrace=False)
