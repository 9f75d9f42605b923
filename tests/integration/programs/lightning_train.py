"""A tiny Lightning job logging through `RunstreamLogger`; what it logged goes to a JSON file.

python lightning_train.py RUN_ID|- OUT_DIR plain|ddp|raise|none

With `-` the logger picks the run id (and every DDP rank must find the same one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from runstream.producer.integrations.lightning import RunstreamLogger

RAISE_AT = 3


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 4, fail: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))
        self.logged: list[tuple[str, int, float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.hparams["fail"] and self.global_step == RAISE_AT:
            raise RuntimeError(f"exploding gradient at step {self.global_step}")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        self.logged.append(("train_loss", self.global_step, float(loss)))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def loader(seed: int) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)


def main(run_id: str, out: Path, mode: str) -> None:
    given = None if run_id == "-" else run_id
    logger = None if mode == "none" else RunstreamLogger(experiment="lightning", run_id=given)
    ddp = {"strategy": "ddp", "devices": 2} if mode == "ddp" else {"devices": 1}
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=logger or False,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **ddp,
    )
    model = Tiny(fail=mode == "raise")
    try:
        trainer.fit(model, loader(0), loader(1))
    finally:
        path = out / f"rank{trainer.global_rank}.json"
        version = logger.version if logger else None
        path.write_text(json.dumps({"run_id": version, "logged": model.logged}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
