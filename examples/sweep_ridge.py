"""An Azure-style hyperparameter sweep: Ridge regression over alphas, scikit-learn's diabetes data.

Azure ML's `train-on-local` sample, with runstream: the script is submitted as a run by
`runstream run`, which puts the run's context in the environment, so `get_run()` joins that run
(Azure's `Run.get_context()`). Each fit logs its alpha and its test mse; the sweep table, the best
alpha (as a metric and a tag) and the best model (a small pickle) go along.

    runstream run --experiment ridge-sweep --param dataset=diabetes --show-output -- \\
        python examples/sweep_ridge.py
    runstream plot <run id> --metric mse
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes  # type: ignore[import-untyped]
from sklearn.linear_model import Ridge  # type: ignore[import-untyped]
from sklearn.metrics import mean_squared_error  # type: ignore[import-untyped]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

from runstream.producer import get_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=float, default=0.0, help="first alpha")
    parser.add_argument("--stop", type=float, default=1.0, help="alphas stay below this")
    parser.add_argument("--by", type=float, default=0.05, help="distance between two alphas")
    args = parser.parse_args()

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    alphas = np.arange(args.start, args.stop, args.by)

    run = get_run()
    run.log_params({"test_size": 0.2, "alphas": len(alphas), "model": "Ridge"})
    fits: list[tuple[float, float, Ridge]] = []
    for step, alpha in enumerate(alphas):
        model = Ridge(alpha=float(alpha)).fit(x_train, y_train)
        mse = float(mean_squared_error(y_test, model.predict(x_test)))
        run.log("alpha", float(alpha), step=step)
        run.log("mse", mse, step=step)
        run.log_row("sweep", alpha=float(alpha), mse=mse)
        print(f"alpha={alpha:.2f} mse={mse:.2f}")
        fits.append((mse, float(alpha), model))

    best_mse, best_alpha, best_model = min(fits, key=lambda fit: fit[0])
    run.log("best_alpha", best_alpha)
    run.log("best_mse", best_mse)
    run.tag("best_alpha", f"{best_alpha:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pkl"
        path.write_bytes(pickle.dumps(best_model))
        run.upload_file("outputs/best_model.pkl", path)
    print(f"best alpha {best_alpha:.2f}: mse {best_mse:.2f}")


if __name__ == "__main__":
    main()
