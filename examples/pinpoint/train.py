"""A tiny 'training job' that logs the events of a pinpoint-style run (one `<unix time> <label>` per line).

It loads data (builds a list), trains for 3 epochs (CPU-bound loops), evaluates and saves after each epoch.
Used to record examples/pinpoint/run-*/ (see examples/pinpoint/README.md)."""

from __future__ import annotations

import time


def log(label: str) -> None:
    print(f"{time.time():.6f} {label}", flush=True)


def busy(seconds: float) -> int:
    end, total = time.time() + seconds, 0
    while time.time() < end:
        total += sum(i * i for i in range(20_000))
    return total


log("start program")
time.sleep(0.5)  # imports
log("after load data")
data = [i % 97 for i in range(2_000_000)]
time.sleep(0.5)
log("Start training")
for epoch in range(1, 4):
    busy(2.0)
    log(f"Epoch {epoch}.0 ended. Steps: {epoch * 12}")
    log("Evaluate")
    busy(0.5)
    time.sleep(0.3)  # writing the checkpoint
    log(f"Epoch {epoch}.0. Saved. Steps: {epoch * 12}")
log("End training")
time.sleep(0.3)
log("Exit")
