#!/usr/bin/env python3
"""A tiny checkpointing job for `wattwise slurm submit --policy ...` (the chain-mode contract, docs/scheduling.md).

It does JOB_UNITS units of work of JOB_UNIT_S seconds each after a startup of JOB_STARTUP_S seconds (paid again at
every resume), appends "unit <i>" to output.txt in the checkpoint folder after each unit and checkpoints its
progress. A segment does the work planned for it (WATTWISE_WORK_S), or stops early on USR1/TERM; the last segment
finishes the work, writes `done` and cancels the segments still waiting. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

UNITS = int(os.environ.get("JOB_UNITS", "6"))
UNIT_S = float(os.environ.get("JOB_UNIT_S", "5"))
STARTUP_S = float(os.environ.get("JOB_STARTUP_S", "5"))

folder = Path(os.environ.get("WATTWISE_CHECKPOINT_DIR", "."))
segment = int(os.environ.get("WATTWISE_SEGMENT", "0"))
last_segment = segment == int(os.environ.get("WATTWISE_SEGMENTS", "1")) - 1
checkpoint = folder / "checkpoint.json"
stop_requested = False


def request_stop(signum: int, frame: object) -> None:
    global stop_requested
    stop_requested = True


signal.signal(signal.SIGUSR1, request_stop)
signal.signal(signal.SIGTERM, request_stop)

if (folder / "done").exists():
    print(f"segment {segment}: the work is already done")
    sys.exit(0)
state = {"next_unit": 0}
if os.environ.get("WATTWISE_RESUME") == "1" and checkpoint.exists():
    state = json.loads(checkpoint.read_text())
print(f"segment {segment}: starting at unit {state['next_unit']}", flush=True)

STEP_S = 0.05  # work advances in short steps, so that a suspended job (SIGSTOP) makes no progress meanwhile


def busy(seconds: float) -> None:
    """`seconds` of running time: time while the job was suspended (a gap longer than a step) does not count."""
    done, last = 0.0, time.monotonic()
    while done < seconds and not stop_requested:
        time.sleep(min(STEP_S, seconds - done))
        now = time.monotonic()
        done += min(now - last, 2 * STEP_S)
        last = now


def note(text: str) -> None:
    """A phase starts: `<unix time ns> <phase name>`, which `wattwise measure --read-notes-stdout` stores."""
    print(f"{time.time_ns()} {text}", flush=True)


note("startup")
busy(STARTUP_S)  # the startup: imports, loading data, warm-up (paid again at every resume)

planned_units = math.inf if last_segment else round(float(os.environ.get("WATTWISE_WORK_S", "inf")) / UNIT_S)
done_here = 0
while state["next_unit"] < UNITS and done_here < planned_units and not stop_requested:
    note(f"unit {state['next_unit']}")
    busy(UNIT_S)  # the work of one unit
    if stop_requested:
        break  # an interrupted unit is not counted: it is done again after the resume
    with (folder / "output.txt").open("a") as out:
        out.write(f"unit {state['next_unit']}\n")
    state["next_unit"] += 1
    done_here += 1
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(checkpoint)  # atomic: a segment killed mid-write never leaves half a checkpoint

if state["next_unit"] >= UNITS:
    (folder / "done").touch()
    chain = Path(os.environ.get("WATTWISE_CHAIN_FILE", folder / "chain.json"))
    if chain.exists():  # the rest of the chain is not needed: cancel the segments still waiting
        later = json.loads(chain.read_text())["jobs"][segment + 1:]
        if later:
            subprocess.run(["scancel", *map(str, later)], check=False)
    print(f"segment {segment}: all {UNITS} units done")
else:
    print(f"segment {segment}: checkpointed at unit {state['next_unit']}")
