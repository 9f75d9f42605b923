"""The interactive logging session of Azure ML's logging notebook, with runstream.

Azure's `exp.start_logging()` … `run.complete()` is `start_run(experiment)` … `run.complete()`:
strings, numbers, a list, repeated logs, rows, a table, a matplotlib image, a file, tags. Paste it
into a notebook cell by cell, or run it whole with the local stack up:

    python examples/logging_api.py --experiment logging-api
    runstream show <run id>
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; a notebook keeps its own backend

import matplotlib.pyplot as plt
import numpy as np

from runstream.producer import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="logging-api")
    args = parser.parse_args()

    # Start an interactive logging session (Azure: run = exp.start_logging()).
    run = start_run(experiment=args.experiment, name="logging-api")
    print(f"run {run.run_id}")

    # Strings and numbers.
    run.log(name="message", value="Hello from run!")
    run.log("a number", 1.2)

    # A list: one value per step (Azure: run.log_list).
    run.log_list("Fibonacci numbers", [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55])

    # Repeated logs of one name make a curve; rows make a table, one row at a time.
    for i in range(-10, 10):
        run.log(name="Sigmoid", value=1 / (1 + np.exp(-i)))
        angle = i / 2.0
        run.log_row("Cosine Wave", angle=angle, cos=float(np.cos(angle)))

    # A whole table, given as columns (Azure: run.log_table(name, {col: [values]})).
    angles = np.linspace(-np.pi, np.pi, 50)
    run.log_table("Sine Wave", {"angle": angles.tolist(), "sine": np.sin(angles).tolist()})

    # A matplotlib image.
    mean, sigma = 0.0, 0.5
    samples = np.random.default_rng(0).normal(mean, sigma, 1000)
    plt.hist(samples, 30, density=True)
    plt.title("Gaussian distribution")
    run.log_image(name="Gaussian Plot", plot=plt)
    plt.close()

    # A file.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "myfile.txt"
        path.write_text("Hello from runstream!\n")
        run.upload_file(name="outputs/myfile.txt", path=path)

    # Tags: with and without a value.
    run.tag("Fibonacci numbers", "logged as a list")
    run.tag("notebook")

    # End the session: the run is completed (Azure: run.complete()).
    run.complete()
    print(f"completed run {run.run_id}: `runstream show {run.run_id}`")


if __name__ == "__main__":
    main()
