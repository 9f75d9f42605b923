"""Overhead of per-step logging on a real (small) PyTorch training loop, A/B in one invocation.

    python benchmarks/bench_training_overhead.py [--blocks 10] [--steps 50]

A CPU MLP is trained with steps of roughly 10 ms or more; blocks of steps without logging (A)
and with `run.log` of 10 scalars per step (B) alternate, so both see the same machine noise.
Prints the median step time of each, the overhead of B over A, and the overhead's spread over
the A/B pairs (each pair's median B over median A) with the 95 % interval of their mean: a wide
spread means a noisy machine, not runstream. Events go to the broker in
RUNSTREAM_BOOTSTRAP_SERVERS (the local stack by default) and its topic, which the stack's services
consume on this same machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch
from torch import nn

from runstream._config import KafkaConfig, ProducerConfig
from runstream._settings import Settings
from runstream.producer import Run, RunContext


def make_model(width: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """An MLP big enough that one step takes ~10 ms on this machine's CPU."""
    model = nn.Sequential(
        nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def block(
    model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, run: Run | None, first_step: int
) -> list[float]:
    """Train `steps` steps; log 10 scalars per step when `run` is given. Returns step seconds."""
    x, y = torch.randn(512, 256), torch.randint(0, 10, (512,))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if run is not None:
            value = loss.item()
            for k in range(10):
                run.log(f"scalar_{k}", value + k, step=first_step + i)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, optimizer = make_model(args.width)
    block(model, optimizer, 5, None, 0)  # warm-up
    with tempfile.TemporaryDirectory() as spool:
        config = ProducerConfig(
            kafka=KafkaConfig(bootstrap_servers=Settings().bootstrap_servers), spool_dir=Path(spool)
        )
        run = Run(RunContext(run_id=f"overhead-{uuid.uuid4().hex[:8]}", experiment="bench"), config)
        plain: list[float] = []
        logged: list[float] = []
        pairs: list[float] = []
        for b in range(args.blocks):
            a_times = block(model, optimizer, args.steps, None, 0)
            b_times = block(model, optimizer, args.steps, run, b * args.steps)
            plain += a_times
            logged += b_times
            pairs.append(statistics.median(b_times) / statistics.median(a_times) - 1)
        run.complete(timeout=60)
    a, b_ = statistics.median(plain), statistics.median(logged)
    quartiles = statistics.quantiles(pairs, n=4)
    print(f"steps per case: {len(plain)}, torch threads: 1, width: {args.width}")
    print(f"A  no logging        median step {a * 1000:8.3f} ms")
    print(f"B  10 x run.log/step median step {b_ * 1000:8.3f} ms")
    print(f"overhead of B over A: {(b_ - a) / a * 100:+.2f} %")
    print(
        f"per A/B pair: median {statistics.median(pairs) * 100:+.2f} %, "
        f"quartiles {quartiles[0] * 100:+.2f} % .. {quartiles[2] * 100:+.2f} % ({len(pairs)} pairs)"
    )
    mean, spread = statistics.fmean(pairs), 1.96 * statistics.stdev(pairs) / len(pairs) ** 0.5
    print(f"mean of the pairs: {mean * 100:+.2f} % ± {spread * 100:.2f} % (95 % interval)")


if __name__ == "__main__":
    main()
