"""Cost of `run.log()` in the training loop, against MLflow and W&B in the same invocation.

    python benchmarks/bench_log.py [--calls 1000000] [--peers]

Cases, each a fresh run logging `--calls` values as fast as it can:
- broker up, own topic: the local stack's broker (RUNSTREAM_BOOTSTRAP_SERVERS) and a fresh topic
  no service reads (the trainer's cost without the consumers competing for these two cores, as on
  a cluster where they run elsewhere);
- broker down: a closed port, so everything goes to the spool;
- courier thread: own topic, Kafka sending in a thread of the trainer (RUNSTREAM_COURIER=thread),
  the in-process baseline the default courier process is compared with;
- broker up, stack's topic: the stack's persist and export services consume the events on this
  same machine while the loop runs;
then, with --peers, MLflow (`log_metric`, synchronous and `synchronous=False`, sqlite store) and
W&B (offline `wandb.log`). Prints mean and p99 per call in microseconds, and each case's ratio to
the first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from runstream._config import KafkaConfig, ProducerConfig
from runstream._settings import Settings
from runstream.consumers._topics import delete_topics, ensure_topics
from runstream.producer import Run, RunContext

Logger = Callable[[str, float, int], None]


def measure(log: Logger, calls: int) -> tuple[float, float]:
    """Time each call; return (mean µs, p99 µs). Timer overhead is subtracted."""
    clock = time.perf_counter_ns
    overhead = min(-(clock() - clock()) for _ in range(1000))
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        log("loss", 0.5, i)
        samples[i] = clock() - start - overhead
    samples.sort()
    return statistics.fmean(samples) / 1000, samples[int(calls * 0.99)] / 1000


def runstream_case(kafka: KafkaConfig, spool: Path, courier: str) -> tuple[Run, Logger]:
    """A run whose events go to `kafka` (or wait in the spool when nothing answers there)."""
    config = ProducerConfig(kafka=kafka, spool_dir=spool, courier=courier)
    context = RunContext(run_id=f"bench-{os.getpid()}-{spool.name}", experiment="bench")
    run = Run(context, config)
    return run, run.log


def mlflow_case(tmp: Path, synchronous: bool) -> Logger:
    """MLflow's `log_metric` against a sqlite store."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.start_run()

    def log(name: str, value: float, step: int) -> None:
        mlflow.log_metric(name, value, step=step, synchronous=synchronous)

    return log


def wandb_case(tmp: Path) -> Logger:
    """W&B offline `wandb.log`."""
    import wandb  # noqa: PLC0415

    run = wandb.init(mode="offline", dir=str(tmp), project="bench")

    def log(name: str, value: float, step: int) -> None:
        run.log({name: value}, step=step)

    return log


def peers(tmp: Path, calls: int) -> dict[str, tuple[float, float]]:
    """MLflow (sync and async) and W&B offline, each ended before the temporary folder goes."""
    try:
        import mlflow  # noqa: PLC0415
        import wandb  # noqa: PLC0415
    except ImportError as exc:
        sys.exit(f"--peers needs MLflow and W&B: pip install -e '.[peers]' ({exc})")

    results = {"mlflow sync": measure(mlflow_case(tmp, True), calls)}
    mlflow.end_run()
    results["mlflow async"] = measure(mlflow_case(tmp, False), calls)
    mlflow.end_run()
    results["wandb offline"] = measure(wandb_case(tmp), calls)
    wandb.finish()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--peer-calls", type=int, default=20_000)
    parser.add_argument("--peers", action="store_true", help="also measure MLflow and W&B")
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}
    stack = Settings().kafka()
    own = replace(
        stack,
        topic=f"runstream.bench.{os.getpid()}",
        dlq_topic=f"runstream.bench.{os.getpid()}.dlq",
    )
    asyncio.run(ensure_topics(own))
    cases = (  # the stack's topic last: its services then work through a million events
        ("broker up, own topic", own, "process"),
        ("broker down", replace(stack, bootstrap_servers="127.0.0.1:9"), "process"),
        ("courier thread, own topic", own, "thread"),
        ("broker up, stack's topic", stack, "process"),
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            for n, (label, kafka, courier) in enumerate(cases):
                run, log = runstream_case(kafka, tmp / f"case-{n}", courier)
                time.sleep(1)  # the courier process starts outside the measured loop
                results[f"runstream, {label}"] = measure(log, args.calls)
                run.close(timeout=1 if "down" in label else 120)
            if args.peers:
                results.update(peers(tmp, args.peer_calls))
    finally:
        asyncio.run(delete_topics(own, [own.topic, own.dlq_topic]))
    base_mean, base_p99 = next(iter(results.values()))
    print(f"{'case':38} {'mean µs':>9} {'p99 µs':>9} {'x mean':>8} {'x p99':>8}")
    for label, (mean, p99) in results.items():
        print(f"{label:38} {mean:9.2f} {p99:9.2f} {mean / base_mean:8.1f} {p99 / base_p99:8.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
