import tempfile
from pathlib import Path

from runstream.compat import mlflow

mlflow.set_experiment("compat-mlflow")
mlflow.autolog()
with mlflow.start_run(run_name="baseline") as run:
    mlflow.log_params({"lr": 0.01, "epochs": 3})
    mlflow.log_param("optimizer", "sgd")
    mlflow.set_tag("team", "vision")
    mlflow.set_tags({"stage": "dev"})
    for epoch in range(3):
        mlflow.log_metric("loss", 1 / (epoch + 1), step=epoch)
    mlflow.log_metric("final", 0.5)
    mlflow.log_metrics({"precision": 0.7, "recall": 0.6}, step=2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.txt"
        path.write_text("weights: 1 2 3")
        mlflow.log_artifact(str(path))
        mlflow.log_artifact(str(path), artifact_path="checkpoints")
    print(run.info.run_id)
    assert mlflow.active_run() is run
assert mlflow.active_run() is None
