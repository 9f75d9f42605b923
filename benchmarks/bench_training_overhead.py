"""Overhead of per-step logging on a real (small) PyTorch training loop, A/B in one invocation.

    python benchmarks/bench_training_overhead.py [--blocks 10] [--steps 50]

A CPU MLP is trained with steps of roughly 10 ms or more, in blocks of steps of three kinds taken
in turn (the order rotates every round, so no kind always follows another):

- A, the same loop reading the values (`loss.item()`, the names formatted) and handing them to
  a function that does nothing: what any logger's caller pays, so A and B differ by `run.log`
  alone;
- B, `run.log` of 10 scalars per step to a fresh topic of the broker in
  RUNSTREAM_BOOTSTRAP_SERVERS (the local stack's): the producer's whole cost on the training
  machine, its courier and Kafka's work included; nothing else reads the topic, as where the
  consumers run on machines of their own;
- C, the same to the stack's topic, which the stack's persist, export and watchdog services
  consume on this same 2-core machine: their work competes with training as well.

Prints the median step time of each kind and, for B and C, the overhead over A: over all steps,
and per round (the round's median B over its median A) with quartiles and the 95 % interval of
their mean: a wide spread means a noisy machine, not runstream. Then CPU time per step: of the
whole training process, of the training thread alone, of the producer's background threads, and
of the courier processes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import torch
from torch import nn

from runstream._config import KafkaConfig, ProducerConfig
from runstream._settings import Settings
from runstream.consumers._topics import delete_topics, ensure_topics
from runstream.producer import Run, RunContext


def make_model(width: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """An MLP big enough that one step takes ~10 ms on this machine's CPU."""
    model = nn.Sequential(
        nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def discard(name: str, value: float, step: int) -> None:
    """The logger of kind A: takes the values and does nothing."""


def block(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    log: Callable[[str, float, int], None],
    first_step: int,
) -> tuple[list[float], float]:
    """Train `steps` steps, handing 10 scalars per step to `log`.

    Returns each step's seconds and the seconds spent reading and logging the values.
    """
    x, y = torch.randn(512, 256), torch.randint(0, 10, (512,))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    logging = 0.0
    for i in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        trained = time.perf_counter()
        value = loss.item()
        for k in range(10):
            log(f"scalar_{k}", value + k, first_step + i)
        end = time.perf_counter()
        logging += end - trained
        times.append(end - start)
    return times, logging


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10, help="rounds of one block of each kind")
    parser.add_argument("--steps", type=int, default=50, help="steps per block")
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, optimizer = make_model(args.width)
    block(model, optimizer, 5, discard, 0)  # warm-up
    settings = Settings()
    suffix = uuid.uuid4().hex[:8]
    own = KafkaConfig(
        bootstrap_servers=settings.bootstrap_servers,
        topic=f"runstream.overhead.{suffix}",
        dlq_topic=f"runstream.overhead.{suffix}.dlq",
    )
    asyncio.run(ensure_topics(own))
    stack = KafkaConfig(bootstrap_servers=settings.bootstrap_servers)
    times: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    cpu = dict.fromkeys(times, 0.0)  # CPU seconds of this process (every thread) per kind
    main = dict.fromkeys(times, 0.0)  # CPU seconds of the training thread alone per kind
    reading = dict.fromkeys(times, 0.0)  # seconds spent reading and logging the values per kind
    pairs: dict[str, list[float]] = {"B": [], "C": []}
    with tempfile.TemporaryDirectory() as spool:
        runs = {
            kind: Run(
                RunContext(run_id=f"overhead-{kind}-{suffix}", experiment="bench"),
                ProducerConfig(kafka=kafka, spool_dir=Path(spool) / kind),
            )
            for kind, kafka in (("B", own), ("C", stack))
        }
        kinds = ["A", "B", "C"]
        for r in range(args.blocks):
            medians = {}
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                cpu_start, main_start = time.process_time(), time.thread_time()
                log = runs[kind].log if kind in runs else discard
                steps, spent = block(model, optimizer, args.steps, log, r * args.steps)
                reading[kind] += spent
                cpu[kind] += time.process_time() - cpu_start
                main[kind] += time.thread_time() - main_start
                times[kind] += steps
                medians[kind] = statistics.median(steps)
            for kind, ratios in pairs.items():
                ratios.append(medians[kind] / medians["A"] - 1)
        couriers = sum(
            sum(child.cpu_times()[:2]) for child in psutil.Process().children(recursive=True)
        )
        shippers = sum(
            time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            for thread in threading.enumerate()
            if thread.name == "runstream-shipper" and thread.ident is not None
        )
        for run in runs.values():
            run.complete(timeout=60)
    asyncio.run(delete_topics(own, [own.topic, own.dlq_topic]))
    report(args, times, pairs)
    per_step = {kind: cpu[kind] / len(steps) * 1000 for kind, steps in times.items()}
    print(
        "CPU of the training process per step (all its threads; steal-proof, unlike the wall "
        f"clock): A {per_step['A']:.3f} ms, B {per_step['B']:.3f} ms "
        f"({(per_step['B'] / per_step['A'] - 1) * 100:+.2f} %), C {per_step['C']:.3f} ms "
        f"({(per_step['C'] / per_step['A'] - 1) * 100:+.2f} %)"
    )
    thread = {kind: main[kind] / len(steps) * 1000 for kind, steps in times.items()}
    print(
        f"CPU of the training thread alone per step: A {thread['A']:.3f} ms, "
        f"B {thread['B']:.3f} ms ({(thread['B'] / thread['A'] - 1) * 100:+.2f} %), "
        f"C {thread['C']:.3f} ms ({(thread['C'] / thread['A'] - 1) * 100:+.2f} %)"
    )
    per_read = {kind: reading[kind] / len(steps) * 1e6 for kind, steps in times.items()}
    print(
        "reading and logging the 10 values, per step (wall): "
        f"A {per_read['A']:.1f} µs (loss.item(), names, a no-op), B {per_read['B']:.1f} µs, "
        f"C {per_read['C']:.1f} µs: run.log's share {per_read['B'] - per_read['A']:.1f} µs (B), "
        f"{per_read['C'] - per_read['A']:.1f} µs (C)"
    )
    logged = len(times["B"]) + len(times["C"])
    print(
        "shipper threads (beside training, in its process): "
        f"{shippers / logged * 1e6:.1f} µs CPU per logged step"
    )
    each = couriers / logged * 1000
    print(f"courier processes (nice 10, beside training): {each:.3f} ms CPU per logged step")


def report(
    args: argparse.Namespace, times: dict[str, list[float]], pairs: dict[str, list[float]]
) -> None:
    """Print the figures."""
    print(f"steps per kind: {len(times['A'])}, torch threads: 1, width: {args.width}")
    a = statistics.median(times["A"])
    print(f"A  values read, no-op logger            median step {a * 1000:8.3f} ms")
    labels = {"B": "own topic (producer's cost)", "C": "stack's topic (+ consumers here)"}
    for kind, label in labels.items():
        median = statistics.median(times[kind])
        ratios = pairs[kind]
        quartiles = statistics.quantiles(ratios, n=4)
        mean = statistics.fmean(ratios)
        spread = 1.96 * statistics.stdev(ratios) / len(ratios) ** 0.5
        print(
            f"{kind}  10 x run.log/step, {label:33s} median step {median * 1000:8.3f} ms, "
            f"overhead {(median - a) / a * 100:+.2f} %"
        )
        print(
            f"   per round: median {statistics.median(ratios) * 100:+.2f} %, quartiles "
            f"{quartiles[0] * 100:+.2f} % .. {quartiles[2] * 100:+.2f} %, mean "
            f"{mean * 100:+.2f} % ± {spread * 100:.2f} % (95 % interval, {len(ratios)} rounds)"
        )


if __name__ == "__main__":
    main()
