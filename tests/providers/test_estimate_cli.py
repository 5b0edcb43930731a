"""`wattwise estimate` and `wattwise calibrate` through the real executable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from wattwise.providers.machine_facts import described_facts, model_input
from wattwise.providers.powermodel import load_model

Run = Callable[..., CompletedProcess[str]]


def test_estimate_json_is_exactly_the_curve(run_cli: Run) -> None:
    result = run_cli("estimate", "--cpu", "Intel Xeon Gold 6248", "--chips", "2", "--threads", "80",
                     "--memory-gb", "384", "--json", check=True)
    data = json.loads(result.stdout)
    assert list(data) == ["curve"]
    curve = data["curve"]
    assert [p["utilization"] for p in curve] == [k / 10 for k in range(11)]
    for point in curve:
        assert list(point) == ["utilization", "power_w", "power_w_low", "power_w_high"]
        assert point["power_w_low"] < point["power_w"] < point["power_w_high"]
    assert [p["power_w"] for p in curve] == sorted(p["power_w"] for p in curve)
    # the same numbers as the model asked directly (TDP 150 W from the table)
    model = load_model()
    spec = model_input(described_facts("Intel Xeon Gold 6248", chips=2, threads=80, memory_gb=384), model,
                       tdp_w=150.0).spec
    expected = model.curve(spec)
    assert [p["power_w"] for p in curve] == [pytest.approx(p.power_w, abs=0.01) for p in expected]


def test_estimate_table_says_what_it_assumed(run_cli: Run) -> None:
    result = run_cli("estimate", "--cpu", "Imaginary CPU 9000", "--threads", "16", check=True)
    assert "≈" in result.stdout and "–" in result.stdout
    assert "assumed:" in result.stdout and "tdp" in result.stdout
    assert "covered" in result.stdout


def test_estimate_bad_values_are_clear_errors(run_cli: Run) -> None:
    result = run_cli("estimate", "--cpu", "Intel Xeon Gold 6248", "--tdp", "-3")
    assert result.returncode == 2 and "--tdp must be positive" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("estimate", "--cpu", "x", "--threads", "2", "--cores", "4")
    assert result.returncode == 2 and "--threads (2) must be at least --cores (4)" in result.stderr


def test_calibrate_without_a_sensor_says_why(run_cli: Run) -> None:
    result = run_cli("calibrate", "--sensor", "rapl", "--step", "3s", "--settle", "1s")
    if result.returncode == 0:
        pytest.skip("this machine has RAPL: calibration ran")
    assert result.returncode == 2
    assert "no power sensor to calibrate against" in result.stderr and "rapl:" in result.stderr


def test_measure_here_shows_the_estimate_with_its_interval(run_cli: Run, tmp_path: Path) -> None:
    env = {"WATTWISE_CALIBRATION_DIR": str(tmp_path / "none"), "WATTWISE_POWER_CURVE": "", "WATTWISE_TDP_W": ""}
    result = run_cli("measure", "--baseline", "0", "--provider", "cpu", "--provider", "estimate", "--json", "--",
                     "sleep", "0.5", env=env, check=True)
    summary = json.loads(result.stdout)
    assert summary["estimated"] is True
    assert "assumed:" in summary["estimate_source"]
    runtime = next(p for p in summary["phases"] if p["name"] == "[RUNTIME]")
    assert runtime["energy_j_low"] < runtime["energy_j"] < runtime["energy_j_high"]
    assert runtime["mean_power_w_low"] < runtime["mean_power_w"] < runtime["mean_power_w_high"]
    assert runtime["carbon_g_low"] < runtime["carbon_g"] < runtime["carbon_g_high"]
    # the table: ≈ value (low–high) and what was assumed
    table = run_cli("measure", "--baseline", "0", "--provider", "cpu", "--provider", "estimate", "--",
                    "sleep", "0.5", env=env, check=True).stdout
    assert re.search(r"≈ [\d.]+ (m|k)?W \([\d.]+–[\d.]+\)", table)
    assert "estimate: ≈ SPECpower model" in table and "assumed:" in table
