"""`wattwise simulate` and `wattwise sweep` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wattwise.cli import app
from wattwise.errors import ConfigError
from wattwise.schedule.sweep import load_grid, run_sweep

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "schedule"
CARBON = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
PAI = ROOT / "data" / "jobs" / "alibaba-pai-1k.csv"
REQUIRED = ["id", "arrival_s", "start_s", "exit_s", "waiting_s", "energy_j", "carbon_g", "interruptions"]

runner = CliRunner()


def invoke(*args: str) -> None:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_simulate_pai_slice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    invoke("simulate", "--jobs", PAI, "--carbon", CARBON, "--policy", "suspend-resume", "--wait-hours", 6,
           "--limit", 40, "--out", out)
    with (out / "jobs.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header[:8] == REQUIRED
    rows = read_csv(out / "jobs.csv")
    assert len(rows) == 40
    assert all(float(r["exit_s"]) <= float(r["deadline_s"]) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "suspend-resume"
    assert summary["totals"]["jobs"] == 40
    assert summary["totals"]["carbon_g"] == pytest.approx(sum(float(r["carbon_g"]) for r in rows), rel=1e-6)
    assert summary["agnostic"]["carbon_g"] > summary["totals"]["carbon_g"]
    assert summary["savings"]["carbon_pct"] > 0
    for name in ("schedule.png", "savings_by_length.png"):
        assert (out / name).stat().st_size > 10_000


def test_simulate_carbs_trace_with_options(tmp_path: Path) -> None:
    out = tmp_path / "out"
    invoke("simulate", "--jobs", FIXTURES / "carbs-mixed.csv", "--carbon", FIXTURES / "em-api-de-24h.csv",
           "--policy", "threshold", "--wait-hours", 4, "--resolution", "5min", "--capacity", 3,
           "--forecast-error", 0.2, "--seed", 3, "--out", out)
    rows = read_csv(out / "jobs.csv")
    assert len(rows) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["capacity"] == 3
    assert summary["options"]["resolution_s"] == 300


def test_simulate_with_model_and_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "out"
    invoke("simulate", "--jobs", FIXTURES / "gaia-small.csv", "--carbon", FIXTURES / "em-api-de-24h.csv",
           "--model", FIXTURES / "job-model.json", "--policy", "suspend-resume", "--checkpoint-only",
           "--max-resumes", 2, "--wait-hours", 8, "--no-plots", "--out", out)
    rows = read_csv(out / "jobs.csv")
    assert all(float(r["startup_s"]) == 300 for r in rows)
    assert all(int(r["interruptions"]) <= 2 for r in rows)
    # every start pays the 300 s × 120 W startup
    for r in rows:
        assert float(r["energy_j"]) >= int(r["starts"]) * 300 * 120
    assert not (out / "schedule.png").exists()


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    code = ("import sys; from wattwise.cli import main; sys.argv = ['wattwise', 'simulate', '--jobs', "
            f"{str(FIXTURES / 'gaia-small.csv')!r}, '--carbon', {str(FIXTURES / 'bad-time.csv')!r}, "
            f"'--out', {str(tmp_path / 'o')!r}]; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "bad-time.csv:3" in done.stderr
    assert "Traceback" not in done.stderr


def test_sweep_tiny_grid(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    invoke("sweep", FIXTURES / "tiny-grid.yml", "--workers", 2, "--out", out)
    rows = read_csv(out / "results.csv")
    assert len(rows) == 3 * 2 * 2 * 2 * 2 * 2
    assert {r["policy"] for r in rows} == {"suspend-resume", "oracle", "agnostic"}
    for r in rows:
        assert r["arrivals"] == "2" and r["jobs"] == "2"
        saving = float(r["saving_pct"])
        if r["policy"] == "agnostic":
            assert saving == 0
        assert r["optimal"] == ("true" if r["policy"] != "agnostic" else "false")
    # suspend-resume never worse than the oracle in the same configuration
    key = ("length_h", "wait_h", "startup_min", "startup_w", "averaged")
    oracle = {tuple(r[k] for k in key): float(r["carbon_g"]) for r in rows if r["policy"] == "oracle"}
    for r in rows:
        if r["policy"] == "suspend-resume":
            assert float(r["carbon_g"]) <= oracle[tuple(r[k] for k in key)] * (1 + 1e-9)
    # startup 0 min: the startup power does not matter
    zero = [r for r in rows if float(r["startup_min"]) == 0 and r["policy"] == "suspend-resume"]
    assert len({(r["length_h"], r["wait_h"], r["averaged"], r["carbon_g"]) for r in zero}) == len(zero) // 2
    for name in ("saving_by_length_h.png", "saving_by_wait_h.png", "saving_wait_length.png"):
        assert (out / name).exists()
    serial = run_sweep(load_grid(FIXTURES / "tiny-grid.yml"), workers=1)
    assert [round(r["carbon_g"], 9) for r in serial] == [round(float(r["carbon_g"]), 9) for r in rows]


def test_sweep_grid_errors(tmp_path: Path) -> None:
    grid = tmp_path / "g.yml"
    grid.write_text(f"carbon: {CARBON}\ngrid:\n  policy: [oracle, best]\n")
    with pytest.raises(ConfigError, match=r"grid.policy: unknown policy 'best'"):
        load_grid(grid)
    grid.write_text(f"carbon: {CARBON}\ngrid:\n  speed: [1]\n")
    with pytest.raises(ConfigError, match=r"grid: unknown parameter 'speed'"):
        load_grid(grid)
    grid.write_text("grid: {}\n")
    with pytest.raises(ConfigError, match=r"missing key 'carbon'"):
        load_grid(grid)
    grid.write_text(f"carbon: {CARBON}\ngrid:\n  phases: [nope]\n")
    with pytest.raises(ConfigError, match=r"unknown pattern 'nope'"):
        load_grid(grid)


def test_sweep_with_a_job_trace(tmp_path: Path) -> None:
    grid = tmp_path / "g.yml"
    grid.write_text(
        f"carbon: {CARBON}\njobs: {FIXTURES / 'gaia-small.csv'}\nresolution: 5min\n"
        "grid:\n  policy: [oracle, wait-awhile]\n  wait_h: [2, 6]\n  startup_min: [0, 10]\n  startup_w: 50\n")
    rows = run_sweep(load_grid(grid), workers=1)
    assert len(rows) == 8
    assert all(r["jobs"] == 4 for r in rows)
    by = {(r["policy"], r["wait_h"], r["startup_min"]): r for r in rows}
    # a startup costs energy on top of the work
    assert by[("oracle", 2.0, 10.0)]["energy_j"] > by[("oracle", 2.0, 0.0)]["energy_j"]
