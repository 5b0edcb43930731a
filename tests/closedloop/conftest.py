"""Shared set-up of the closed-loop tests: the real one-node Slurm, a job model and carbon traces of 4 s slots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "slurm-checkpoint"
SLURM_CONF = Path(os.environ.get("WATTWISE_TEST_SLURM_DIR", "/var/lib/wattwise-test/slurm")) / "slurm.conf"
SLOT_S = 4
LOW, HIGH = 10.0, 1000.0
FINISHED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "GONE")


@pytest.fixture
def slurm_env(tmp_path: Path) -> dict[str, str]:
    if shutil.which("sbatch") is None or not SLURM_CONF.exists():
        if os.environ.get("CI"):
            pytest.fail("Slurm is not set up: scripts/services.d/slurm.sh should have started it")
        pytest.skip("Slurm is not installed here (scripts/test.sh installs and starts it)")
    return dict(os.environ, SLURM_CONF=str(SLURM_CONF), JOB_PY=str(EXAMPLE / "job.py"), JOB_UNITS="6",
                WATTWISE_BIN=str(Path(sys.executable).parent / "wattwise"),
                JOB_UNIT_S=str(SLOT_S), JOB_STARTUP_S=str(SLOT_S), WATTWISE_DATA_DIR=str(tmp_path / "data"))


@pytest.fixture
def write_model(tmp_path: Path) -> Callable[..., Path]:
    def write(checkpoints: bool = True) -> Path:
        model = {"startup": [{"name": "startup", "duration_s": SLOT_S, "power_w": 60}],
                 "work": [{"name": f"unit {i}", "duration_s": SLOT_S, "power_w": 100, "is_checkpoint": checkpoints}
                          for i in range(6)]}
        path = tmp_path / ("model.json" if checkpoints else "model-no-checkpoints.json")
        path.write_text(json.dumps(model))
        return path

    return write


@pytest.fixture
def write_trace(tmp_path: Path) -> Callable[[int, list[float]], Path]:
    def write(start_s: int, pattern: list[float]) -> Path:
        lines = ["timestamp,g_per_kwh"] + [f"{start_s + SLOT_S * i},{v}" for i, v in enumerate(pattern)]
        path = tmp_path / "carbon.csv"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)  # a reader never sees half a forecast
        return path

    return write


def job_state(job_id: int, env: dict[str, str]) -> str:
    out = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True, env=env,
                         timeout=30).stdout
    return out.split("JobState=")[1].split()[0] if "JobState=" in out else "GONE"


@pytest.fixture
def wait_until() -> Callable[..., None]:
    def wait(condition: Callable[[], bool], what: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s  # a hang guard, not a timing assertion
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(0.5)

    return wait


@pytest.fixture
def states(slurm_env: dict[str, str]) -> Callable[[list[int]], list[str]]:
    return lambda ids: [job_state(i, slurm_env) for i in ids]
