"""A small demo training loop (pure Python, no GPU or torch needed).

Fits a logistic regression with mini-batch SGD on synthetic data and logs loss and accuracy, so
``tracklab run -- python -m tracklab.demo`` shows a run with both system and training metrics.
"""

from __future__ import annotations

import argparse
import math
import random

import tracklab


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--samples", type=int, default=32000)
    args = p.parse_args(argv)

    rng = random.Random(0)
    true_w = [rng.uniform(-2, 2) for _ in range(8)]
    data = []
    for _ in range(args.samples):
        x = [rng.gauss(0, 1) for _ in true_w]
        y = 1.0 if sum(a * b for a, b in zip(x, true_w)) + rng.gauss(0, 0.5) > 0 else 0.0
        data.append((x, y))

    run = tracklab.init(project="demo", config=vars(args))
    w = [0.0] * len(true_w)
    for epoch in range(args.epochs):
        rng.shuffle(data)
        total, correct = 0.0, 0
        for i in range(0, len(data), 64):
            batch = data[i:i + 64]
            grad = [0.0] * len(w)
            for x, y in batch:
                z = sum(a * b for a, b in zip(x, w))
                p_hat = 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
                total += -(y * math.log(p_hat + 1e-12) + (1 - y) * math.log(1 - p_hat + 1e-12))
                correct += (p_hat > 0.5) == (y > 0.5)
                for j, a in enumerate(x):
                    grad[j] += (p_hat - y) * a
            w = [wj - args.lr * g / len(batch) for wj, g in zip(w, grad)]
        tracklab.log({"loss": total / len(data), "accuracy": correct / len(data),
                      "epoch": epoch, "lr": args.lr})
        print(f"epoch {epoch:2d}  loss {total / len(data):.4f}  accuracy {correct / len(data):.3f}",
              flush=True)
    run.summary["final_accuracy"] = correct / len(data)
    run.finish()


if __name__ == "__main__":
    main()
