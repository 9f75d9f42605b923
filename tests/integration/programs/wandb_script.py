import tempfile
from pathlib import Path

import numpy as np

from runstream.compat import wandb

run = wandb.init(
    project="compat-wandb",
    name="baseline",
    config={"lr": 0.01, "arch": {"layers": 2}},
    tags=["baseline"],
)
wandb.config.update({"batch_size": 32})
wandb.define_metric("val/*", step_metric="epoch")
for epoch in range(3):
    wandb.log({"loss": 1.0 / (epoch + 1), "acc": epoch / 10})
wandb.log({"val_loss": 0.5}, step=5)
wandb.log({"val_acc": 0.8}, step=5)
wandb.log({"late": 1.0}, step=4)
wandb.log({"lr": 0.001}, commit=False)
wandb.log({"loss": 0.1, "note": "halfway"})
table = wandb.Table(columns=["x", "y"], data=[[1, 2.0], [2, 4.0]])
table.add_data(3, 6.0)
wandb.log({"predictions": table, "sample": wandb.Image(np.zeros((8, 8, 3), dtype=np.uint8))})
wandb.log({"epoch": 2, "val/loss": 0.25})
wandb.watch(None)
wandb.watch(None)
with tempfile.TemporaryDirectory() as folder:
    notes = Path(folder) / "notes.txt"
    notes.write_text("seed 0")
    wandb.save(str(notes))
run.summary["best_acc"] = 0.9
print(run.id)
wandb.finish()
