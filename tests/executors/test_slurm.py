"""Real carbon-aware submission to a one-node Slurm on loopback (scripts/services.d/slurm.sh starts it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SLURM_CONF = Path(os.environ.get("WATTWISE_TEST_SLURM_DIR", "/var/lib/wattwise-test/slurm")) / "slurm.conf"


@pytest.fixture
def slurm_env() -> dict[str, str]:
    if shutil.which("sbatch") is None or not SLURM_CONF.exists():
        if os.environ.get("CI"):
            pytest.fail("Slurm is not set up: scripts/services.d/slurm.sh should have started it")
        pytest.skip("Slurm is not installed here (scripts/test.sh installs and starts it)")
    env = dict(os.environ, SLURM_CONF=str(SLURM_CONF))
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env, timeout=30)
    if "UP" not in ping.stdout:
        pytest.fail(f"slurmctld does not answer: {ping.stdout} {ping.stderr}")
    return env


def scontrol_job(job_id: int, env: dict[str, str]) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, env=env,
                          timeout=30, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def write_forecast(path: Path, start_s: float, values: list[float]) -> Path:
    lines = ["timestamp,g_per_kwh"] + [f"{int(start_s + 3600 * i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slurm
def test_job_is_held_until_the_clean_hour(run_cli, slurm_env: dict[str, str], tmp_path: Path) -> None:
    hour0 = (int(time.time()) // 3600) * 3600
    forecast = write_forecast(tmp_path / "f.csv", hour0, [500, 450, 120, 480, 500, 500, 500, 500])
    result = run_cli("slurm", "submit", "--carbon", str(forecast), "--wait-hours", "4", "--length", "1h",
                     "--step", "15min", "--json", "--", "--wrap", "true", "-o", "/dev/null", env=slurm_env,
                     check=True)
    decision = json.loads(result.stdout)
    job_id = decision["job_id"]
    try:
        assert decision["start_s"] == pytest.approx(hour0 + 2 * 3600, abs=15 * 60)
        assert decision["saving_ratio"] > 0.4
        job = scontrol_job(job_id, slurm_env)
        assert job["JobState"] == "PENDING" and job["Reason"] == "BeginTime"
        assert job["EligibleTime"] == decision["begin"]
    finally:
        subprocess.run(["scancel", str(job_id)], env=slurm_env, timeout=30)


@pytest.mark.slurm
def test_job_starts_now_when_now_is_cleanest(run_cli, slurm_env: dict[str, str], tmp_path: Path) -> None:
    hour0 = (int(time.time()) // 3600) * 3600
    forecast = write_forecast(tmp_path / "f.csv", hour0 - 3600, [50, 50, 400, 400, 400, 400])
    marker = tmp_path / "ran.txt"
    result = run_cli("slurm", "submit", "-c", str(forecast), "-w", "2", "-l", "10min", "--json", "--",
                     "--wrap", f"echo ran > {marker}", "-o", "/dev/null", env=slurm_env, check=True)
    decision = json.loads(result.stdout)
    assert decision["saving_g"] == 0
    deadline = time.time() + 60
    while time.time() < deadline and scontrol_job(decision["job_id"], slurm_env)["JobState"] != "COMPLETED":
        time.sleep(0.5)
    assert scontrol_job(decision["job_id"], slurm_env)["JobState"] == "COMPLETED"
    assert marker.read_text().strip() == "ran"


def test_dry_run_and_refused_arguments(run_cli, tmp_path: Path) -> None:
    forecast = write_forecast(tmp_path / "f.csv", 1_700_000_000, [300, 100, 300, 300])
    result = run_cli("slurm", "submit", "-c", str(forecast), "-w", "2", "-l", "1h", "--now", "1700000000",
                     "--dry-run", "--json", "--", "job.sbatch", check=True)
    decision = json.loads(result.stdout)
    assert decision["job_id"] is None and decision["start_s"] == 1_700_003_600
    assert decision["sbatch"][0] == "sbatch" and decision["sbatch"][1].startswith("--begin=")
    assert decision["sbatch"][2:] == ["job.sbatch"]
    refused = run_cli("slurm", "submit", "-c", str(forecast), "-l", "1h", "-w", "1", "--now", "1700000000",
                      "--dry-run", "--", "--begin=now", "job.sbatch")
    assert refused.returncode == 2 and "do not pass --begin" in refused.stderr
    both = run_cli("slurm", "submit", "-c", str(forecast), "--dry-run", "--", "job.sbatch")
    assert both.returncode == 2 and "exactly one of --length and --model" in both.stderr
