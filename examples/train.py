"""A real (small) training job streaming into runstream.

A two-layer neural network learns to separate two interleaved spirals, with plain NumPy and full-
batch gradient descent. Every step logs loss and accuracy; params, tags and a final decision-
boundary image go along. Run it with the local stack up (`runstream stack up`), then look at
Prometheus (`runstream_metric_value{metric="loss"}`) or PostgreSQL (`SELECT … FROM metrics`).

    python examples/train.py --steps 300 --experiment spirals
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.typing import NDArray

from runstream.producer import start_run

Array = NDArray[np.float64]


def spirals(n: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Two interleaved spirals, `n` points each, with a little noise."""
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 10
    x = np.concatenate([arm, -arm]) + rng.normal(0, 0.03, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)])
    return x, y


class TwoLayerNet:
    """tanh hidden layer, sigmoid output, cross-entropy loss."""

    def __init__(self, hidden: int, rng: np.random.Generator) -> None:
        self.w1 = rng.normal(0, 1.0, (2, hidden))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(0, 1.0 / np.sqrt(hidden), hidden)
        self.b2 = 0.0

    def forward(self, x: Array) -> tuple[Array, Array]:
        hidden = np.tanh(x @ self.w1 + self.b1)
        return hidden, 1 / (1 + np.exp(-(hidden @ self.w2 + self.b2)))

    def step(self, x: Array, y: Array, lr: float) -> tuple[float, float]:
        """One gradient step; returns (loss, accuracy) before the update."""
        hidden, p = self.forward(x)
        eps = 1e-9
        loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        accuracy = float(np.mean((p > 0.5) == y))
        grad_out = (p - y) / len(y)
        grad_hidden = np.outer(grad_out, self.w2) * (1 - hidden**2)
        self.w2 -= lr * hidden.T @ grad_out
        self.b2 -= lr * float(grad_out.sum())
        self.w1 -= lr * x.T @ grad_hidden
        self.b1 -= lr * grad_hidden.sum(axis=0)
        return loss, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="spirals")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    x, y = spirals(400, rng)
    net = TwoLayerNet(args.hidden, rng)
    params = {"hidden": args.hidden, "lr": args.lr, "steps": args.steps, "seed": args.seed}
    with start_run(experiment=args.experiment, name="two-layer-net", params=params) as run:
        run.set_tags({"model": "mlp", "dataset": "spirals"})
        for step in range(args.steps):
            loss, accuracy = net.step(x, y, args.lr)
            run.log_metrics({"loss": loss, "accuracy": accuracy}, step=step)
            if step % 50 == 0:
                run.report_progress(expect_next_in=30)
        run.log("final_accuracy", accuracy)
        print(f"run {run.run_id}: final loss {loss:.4f}, accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
