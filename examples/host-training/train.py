"""A tiny training job with no dependencies: linear regression by stochastic gradient descent.

Prints GMT notes (`<unix time in µs> <text>`) per epoch and `<unix time in µs> SAMPLES <n>` lines,
which the scenario reads as its custom metric `samples` (the SCI functional unit).
"""

from __future__ import annotations

import argparse
import random
import time


def note(text: str) -> None:
    print(f"{time.time_ns() // 1000} {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    true_w, true_b = 3.0, -1.5
    data = [(x, true_w * x + true_b + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(args.samples))]
    w = b = 0.0
    rate = 0.05
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(data)
        loss = 0.0
        for x, y in data:
            error = w * x + b - y
            loss += error * error
            w -= rate * error * x
            b -= rate * error
        note(f"epoch {epoch} loss {loss / len(data):.5f}")
        note(f"SAMPLES {len(data)}")
    print(f"w={w:.3f} b={b:.3f}", flush=True)
    if abs(w - true_w) > 0.1 or abs(b - true_b) > 0.1:
        raise SystemExit("did not converge")


if __name__ == "__main__":
    main()
