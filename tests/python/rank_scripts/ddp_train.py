"""DistributedDataParallel training of a small MLP, for comparing backends.

One rank; run by tests/python/test_ddp.py (and by torchrun_job.py's DDP part):
    ddp_train.py --backend B --steps 200 --out DIR [--hook none|fp16|powersgd]
Fixed seeds: the model starts identical everywhere, each rank trains on its own
synthetic shard (seeded by rank). Small buckets (bucket_cap_mb) make DDP issue
several all_reduces per step that overlap with the backward pass. --hook adds a
DDP communication hook: fp16 compression (all_reduce in float16 then a then()
callback), or PowerSGD (whose then() callbacks start all_reduces and wait for
them). Writes
DIR/rank<r>.json with the per-step local losses and the final parameters.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from rankutil import arg_parser, init


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, 4))


def shard(rank, steps, batch=8):
    g = torch.Generator().manual_seed(1000 + rank)
    x = torch.randn(steps, batch, 16, generator=g)
    w_true = torch.randn(16, 4, generator=torch.Generator().manual_seed(7))
    y = torch.tanh(x @ w_true) + 0.05 * torch.randn(steps, batch, 4, generator=g)
    return x, y


def add_hook(model, hook):
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    if hook == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif hook == "powersgd":
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                            start_powerSGD_iter=2, min_compression_rate=0.5,
                                            random_seed=0)
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    elif hook != "none":
        raise ValueError(hook)


def train(rank, steps, hook="none"):
    model = DDP(make_model(), bucket_cap_mb=0.002)   # ~2 KB buckets: several per step
    add_hook(model, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = shard(rank, steps)
    losses = []
    for i in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i]), y[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    params = {name: p.detach().reshape(-1).tolist() for name, p in model.module.named_parameters()}
    return losses, params


def main():
    p = arg_parser(__doc__)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--hook", default="none", choices=["none", "fp16", "powersgd"])
    args = p.parse_args()
    torch.set_num_threads(1)
    rank, world = init(args)
    losses, params = train(rank, args.steps, args.hook)
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump({"backend": args.backend, "world": world, "losses": losses, "params": params}, f)
    if args.backend == "gloo":
        # The reference only has to produce numbers: torch 1.13's gloo sometimes aborts at
        # exit after PowerSGD ("terminate called without an active exception").
        sys.stdout.flush()
        os._exit(0)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
