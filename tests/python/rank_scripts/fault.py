"""A rank dies (SIGKILL) or stops (SIGSTOP) in the middle of a run of all_reduces.

One rank of a world of 3; run by tests/python/test_fault.py:
    fault.py --backend B --kill-rank K --kill-after N --timeout T
Every rank loops on all_reduce (checking the result). Before iteration N rank K
kills itself with SIGKILL, leaving the others inside that iteration's all_reduce.
A survivor must get a Python RuntimeError within the process group's timeout T:
it prints one line
    SURVIVOR {"rank": .., "iteration": .., "elapsed": .., "type": .., "message": ..}
and exits 0 (without destroy_process_group: a program that caught a
communication error just exits). Anything else (a wrong result, no error after
many iterations) prints FAIL and exits non-zero; a hang is cut by the watchdog.

With --signal stop the rank stops itself instead (a hung process: its sockets and shared
memory stay open, so only the deadline can tell); it first leaves its pid in the Store, and
the survivors SIGKILL it once they have reported, so that the world ends.
"""

import faulthandler
import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from rankutil import arg_parser, init


VICTIM_KEY = "chorus_test/stopped_pid"


def store():
    return dist.distributed_c10d._get_default_store()


def end_stopped_victim():
    """SIGKILL the stopped rank (its pid is in the Store); any survivor may, more than once."""
    try:
        os.kill(int(store().get(VICTIM_KEY)), signal.SIGKILL)
    except ProcessLookupError:
        pass


def main():
    p = arg_parser(__doc__)
    p.add_argument("--kill-rank", type=int, default=1)
    p.add_argument("--kill-after", type=int, default=5)
    p.add_argument("--signal", choices=("kill", "stop"), default="kill")
    args = p.parse_args()
    rank, world = init(args, watchdog=False)
    # A survivor stuck past 3x the timeout dumps its stacks and exits 1.
    faulthandler.dump_traceback_later(3 * args.timeout + 20, exit=True)
    for it in range(2000):
        if rank == args.kill_rank and it == args.kill_after:
            if args.signal == "stop":
                store().set(VICTIM_KEY, str(os.getpid()))
                print(f"rank {rank}: stopping myself (SIGSTOP) before iteration {it}", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)
            print(f"rank {rank}: killing myself (SIGKILL) before iteration {it}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        t = torch.full((1024,), float(rank + 1))
        start = time.monotonic()
        try:
            dist.all_reduce(t)
        except Exception as e:  # noqa: BLE001 - the test judges the type
            elapsed = time.monotonic() - start
            print("SURVIVOR " + json.dumps({
                "rank": rank, "iteration": it, "elapsed": round(elapsed, 3),
                "type": type(e).__name__, "message": str(e)}), flush=True)
            sys.stdout.flush()
            if args.signal == "stop":
                end_stopped_victim()
            sys.exit(0)
        expected = world * (world + 1) / 2
        if not torch.all(t == expected):
            print(f"FAIL rank {rank} iteration {it}: all_reduce gave {t[:4].tolist()}..., "
                  f"expected {expected}", flush=True)
            sys.exit(2)
    print(f"FAIL rank {rank}: no error after 2000 all_reduces; rank {args.kill_rank} "
          f"should have died at iteration {args.kill_after}", flush=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
