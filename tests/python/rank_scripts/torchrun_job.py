"""A job started by torchrun: rank, world and rendezvous come from torchrun's
environment (init_process_group with no rank/world arguments).

Run by tests/python/test_torchrun.py as
    python -m torch.distributed.run ... torchrun_job.py --backend B
Checks an all_reduce, trains a few DDP steps, and prints
    TORCHRUN_OK rank=<r> world=<w> local_rank=<l> checksum=<sum of the weights>
"""

import datetime
import faulthandler
import os

import torch
import torch.distributed as dist

from ddp_train import train
from rankutil import arg_parser, import_backend


def main():
    args = arg_parser(__doc__).parse_args()
    faulthandler.enable()
    faulthandler.dump_traceback_later(args.timeout + 20, exit=True)
    import_backend(args.backend)
    dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
    t = torch.arange(10, dtype=torch.float32) * (rank + 1)
    dist.all_reduce(t)
    expected = torch.arange(10, dtype=torch.float32) * (world * (world + 1) / 2)
    assert torch.equal(t, expected), f"all_reduce gave {t.tolist()}, expected {expected.tolist()}"
    losses, params = train(rank, steps=5)
    checksum = sum(sum(v) for v in params.values())
    dist.destroy_process_group()
    # One write() per line: both workers share torchrun's stdout.
    os.write(1, (f"TORCHRUN_OK rank={rank} world={world} local_rank={os.environ['LOCAL_RANK']} "
                 f"checksum={checksum!r}\n").encode())


if __name__ == "__main__":
    main()
