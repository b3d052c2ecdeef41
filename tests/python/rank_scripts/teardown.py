"""Tearing groups down right after their last call must not break the peers.

One rank; run by tests/python/test_teardown.py:
    teardown.py --backend B --rounds N
Each round every rank creates a group of all ranks, runs one call on it (barrier,
all_reduce or broadcast, in turn) and destroys it at once, the way programs end
("dist.barrier(); dist.destroy_process_group()"). A rank that leaves the call
first must not disturb a peer that is still finishing it. Every other round the
group first gets a call the backend refuses (a refusal must not change that).
Then the default group ends the same way. Every error is printed as
    TEARDOWN_ERROR round=<i> op=<name>: <message>
and the rank exits 1 if there was one (0 otherwise).
"""

import gc
import sys

import torch
import torch.distributed as dist

from rankutil import arg_parser, init


def refused_call(group, world):
    """A call the backend may refuse (all_to_all_single with one tensor as input and
    output: chorus refuses the overlap). A refusal must leave the group usable and
    must not change how the group is torn down."""
    buf = torch.arange(4 * world, dtype=torch.float32)
    try:
        dist.all_to_all_single(buf, buf, group=group)
    except RuntimeError:
        pass


def main():
    p = arg_parser(__doc__)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    rank, world = init(args)
    errors = 0
    ops = {
        "barrier": lambda g: dist.barrier(group=g),
        "all_reduce": lambda g: dist.all_reduce(torch.ones(1000), group=g),
        "broadcast": lambda g: dist.broadcast(torch.ones(1000), src=0, group=g),
    }
    names = list(ops)
    for i in range(args.rounds):
        name = names[i % len(names)]
        try:
            g = dist.new_group(ranks=list(range(world)))
            if i % 2:
                refused_call(g, world)
            ops[name](g)
            dist.destroy_process_group(g)
            del g
            gc.collect()              # the backend object goes now, not at some later point
        except Exception as e:  # noqa: BLE001
            errors += 1
            print(f"TEARDOWN_ERROR round={i} op={name}: {type(e).__name__}: {e}", flush=True)
            break                     # the world is out of step now
    if not errors:
        try:
            dist.barrier()
            dist.destroy_process_group()
        except Exception as e:  # noqa: BLE001
            errors += 1
            print(f"TEARDOWN_ERROR round=final op=barrier+destroy: {type(e).__name__}: {e}",
                  flush=True)
    print(f"TEARDOWN_DONE rank={rank} errors={errors}", flush=True)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
