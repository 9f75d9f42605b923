# ruff: noqa: PLC0415 - each framework is imported only by the round that trains with it
"""Per-step overhead of each framework integration against the framework's own run without it.

    python benchmarks/bench_integrations.py [--rounds 5] [--steps 200] [--only lightning,...]

For each framework, rounds of two kinds taken in turn in one invocation (the order alternates
every round): the same small CPU training without runstream, and with its integration logging
every step to a run through the broker in RUNSTREAM_BOOTSTRAP_SERVERS (the local stack's topic,
whose consumers run on this machine too). A round times the framework's training call alone;
the run is opened before it (and its first event flushed, so its courier process is up) and
completed after it (handed in with `run=`); that fixed cost per run (a producer session with
its courier process, then a flush that waits for Kafka) is timed on its own. Prints per
framework the median step time without runstream, the median of the rounds' per-step
differences with their range, and the median open + close of a run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runstream._settings import Settings
from runstream.producer import Run, RunContext

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.disable(logging.WARNING)

ROWS = np.random.default_rng(0).normal(size=(4096, 16)).astype(np.float32)
TARGET = (ROWS @ np.linspace(-1, 1, 16)).astype(np.float32)
Trainer = Callable[[int, Any], float]  # (steps, the run or None) -> seconds of training


def lightning_round(steps: int, run: Any) -> float:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from runstream.producer.integrations.lightning import RunstreamLogger

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Linear(64, 1))

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = DataLoader(TensorDataset(torch.from_numpy(ROWS), torch.from_numpy(TARGET)), 16)
    logger = RunstreamLogger(run=run) if run else False
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=logger, log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    return _timed(lambda: trainer.fit(Module(), data))


def transformers_round(steps: int, run: Any) -> float:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from runstream.producer.integrations.transformers import RunstreamCallback

    ids = torch.randint(1, 50, (512, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": i, "labels": int(i.sum()) % 2} for i in ids]
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArguments(
            output_dir=folder, max_steps=steps, per_device_train_batch_size=8, logging_steps=1,
            save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        callbacks: list[Any] = [RunstreamCallback(run=run)] if run else []
        trainer = Trainer(
            model=BertForSequenceClassification(config), args=args, train_dataset=data,
            callbacks=callbacks,
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # the log lines printed with tqdm off
        return _timed(trainer.train)


def keras_round(steps: int, run: Any) -> float:
    import keras

    from runstream.producer.integrations.keras import RunstreamCallback

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callbacks = [RunstreamCallback(run=run)] if run else []
    batch = len(ROWS) // steps
    return _timed(
        lambda: model.fit(ROWS, TARGET, epochs=1, batch_size=batch, verbose=0, callbacks=callbacks)
    )


def xgboost_round(steps: int, run: Any) -> float:
    import xgboost as xgb

    from runstream.producer.integrations.xgboost import RunstreamCallback

    train = xgb.DMatrix(ROWS[:3000], label=TARGET[:3000])
    valid = xgb.DMatrix(ROWS[3000:], label=TARGET[3000:])
    params = {"max_depth": 3, "eta": 0.1, "nthread": 1}
    callbacks = [RunstreamCallback(run=run)] if run else []
    return _timed(
        lambda: xgb.train(
            params, train, steps, evals=[(train, "train"), (valid, "valid")],
            verbose_eval=False, callbacks=callbacks,
        )
    )  # fmt: skip


def lightgbm_round(steps: int, run: Any) -> float:
    import lightgbm as lgb

    from runstream.producer.integrations.lightgbm import RunstreamCallback

    train = lgb.Dataset(ROWS[:3000], label=TARGET[:3000], free_raw_data=False)
    valid = lgb.Dataset(ROWS[3000:], label=TARGET[3000:], reference=train)
    params = {"num_leaves": 8, "verbose": -1, "num_threads": 1}
    callbacks: list[Any] = [RunstreamCallback(run=run)] if run else []
    return _timed(
        lambda: lgb.train(
            params, train, steps, valid_sets=[train, valid], valid_names=["train", "valid"],
            callbacks=callbacks,
        )
    )  # fmt: skip


FRAMEWORKS: dict[str, Trainer] = {
    "lightning": lightning_round,
    "transformers": transformers_round,
    "keras": keras_round,
    "xgboost": xgboost_round,
    "lightgbm": lightgbm_round,
}


def open_run(name: str) -> Run:
    context = RunContext(f"bench-{uuid.uuid4().hex[:12]}", f"bench-{name}")
    return Run(context, Settings().producer())


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def logged_round(name: str, train: Trainer, steps: int) -> tuple[float, float]:
    """(seconds of training with the integration, seconds to open and complete its run)."""
    start = time.perf_counter()
    run = open_run(name)
    run.flush(timeout=30)  # its courier is up and connected: the steady state is measured
    opened = time.perf_counter() - start
    seconds = train(steps, run)
    start = time.perf_counter()
    run.complete(timeout=30)
    return seconds, opened + time.perf_counter() - start


def measure(name: str, train: Trainer, rounds: int, steps: int) -> None:
    train(min(steps, 20), None)  # imports and first-call costs outside the figures
    logged_round(name, train, min(steps, 20))
    plain: list[float] = []
    extra: list[float] = []
    fixed: list[float] = []
    for index in range(rounds):
        if index % 2:
            with_run, cost = logged_round(name, train, steps)
            without = train(steps, None)
        else:
            without = train(steps, None)
            with_run, cost = logged_round(name, train, steps)
        plain.append(without / steps)
        extra.append((with_run - without) / steps)
        fixed.append(cost)
    step_time, per_step = statistics.median(plain), statistics.median(extra)
    print(
        f"{name:12s} step without runstream {step_time * 1e3:7.3f} ms   overhead per step "
        f"{per_step * 1e6:7.1f} µs ({per_step / step_time:+.1%}; rounds {min(extra) * 1e6:.0f}"
        f"..{max(extra) * 1e6:.0f} µs)   run open + close {statistics.median(fixed) * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    options = parser.parse_args()
    os.environ.setdefault("RUNSTREAM_SPOOL_DIR", str(Path(tempfile.mkdtemp()) / "spool"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; runs to the stack's topic")
    for name in options.only.split(","):
        measure(name, FRAMEWORKS[name], options.rounds, options.steps)


if __name__ == "__main__":
    main()
