"""A tiny randomly initialised BERT classifier trained by a Transformers `Trainer` with
`RunstreamCallback` (no download: the model is built from a config); the Trainer's log history
goes to a JSON file.

python transformers_train.py RUN_ID OUT_DIR callback|none
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from runstream.producer.integrations.transformers import RunstreamCallback


class Pairs(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (count, 8), generator=generator)
        self.labels = (self.ids.sum(dim=1) % 2).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def main(run_id: str, out: Path, mode: str) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    callbacks: list[Any] = []
    if mode == "callback":
        callbacks.append(RunstreamCallback(experiment="transformers", run_id=run_id))
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=Pairs(64, 0),
        eval_dataset=Pairs(16, 1),
        callbacks=callbacks,
    )
    trainer.train()
    (out / "history.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
