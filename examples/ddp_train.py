# torch is an optional extra ([ddp]): where it is not installed, mypy sees its names as Any.
# mypy: disable-error-code="import-not-found, unused-ignore"
"""PyTorch DistributedDataParallel on CPU (gloo), every rank logging into one run.

    pip install 'runstream[ddp]'
    runstream run --experiment ddp --show-output -- \\
        torchrun --standalone --nproc_per_node 2 examples/ddp_train.py --steps 100
    runstream plot <run id> --metric loss        # one curve per rank

torchrun hands `runstream run`'s environment to every rank it spawns, so `get_run()` in each one
joins the same run, as rank RANK of WORLD_SIZE. Each rank logs its own loss and accuracy at every
step; at the end every rank logs the accuracy of the shared model on the whole data set (all
ranks agree: DDP keeps their weights equal). `runstream run` records how the whole job ended.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from runstream.producer import get_run


def spirals(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals, `n` points each, with a little noise."""
    t = torch.sqrt(torch.rand(n, generator=generator) * 0.95 + 0.05) * 3 * math.pi
    arm = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10
    x = torch.cat([arm, -arm]) + torch.randn(2 * n, 2, generator=generator) * 0.03
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128, help="examples per rank and step")
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()

    torch.set_num_threads(1)  # ranks share the machine's cores
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    run = get_run()
    if rank == 0:
        run.log_params({"steps": args.steps, "batch": args.batch, "lr": args.lr, "world": world})

    x, y = spirals(2048, torch.Generator().manual_seed(0))
    shard_x, shard_y = x[rank::world], y[rank::world]  # each rank trains on its own slice
    torch.manual_seed(0)  # equal initial weights (DDP also broadcasts rank 0's)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2)))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    batches = torch.Generator().manual_seed(1 + rank)

    for step in range(args.steps):
        index = torch.randint(len(shard_x), (args.batch,), generator=batches)
        logits = model(shard_x[index])
        loss = F.cross_entropy(logits, shard_y[index])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # DDP averages all ranks' gradients
        optimizer.step()
        accuracy = (logits.argmax(dim=1) == shard_y[index]).float().mean().item()
        run.log_metrics({"loss": loss.item(), "accuracy": accuracy}, step=step)
        if step % 20 == 0 or step == args.steps - 1:
            print(f"rank {rank} step {step}: loss {loss.item():.4f} accuracy {accuracy:.3f}")

    with torch.no_grad():
        final = (model(x).argmax(dim=1) == y).float().mean().item()
    run.log("final_accuracy", final)
    if rank == 0:
        print(f"final accuracy on all {len(x)} points: {final:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
