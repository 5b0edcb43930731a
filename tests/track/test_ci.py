"""`wattwise ci start|mark|end` with the real background agent, and `wattwise runs import` of what it wrote."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from wattwise.store import Store


@pytest.fixture
def ci_env(tmp_path: Path) -> dict[str, str]:
    return {"WATTWISE_CI_DIR": str(tmp_path / "ci"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_REPOSITORY": "acme/shop", "GITHUB_JOB": "build"}


def test_steps_are_marked_summarised_and_importable(run_cli, ci_env: dict[str, str], tmp_path: Path) -> None:
    run_cli("ci", "start", "--intensity", "300", "--interval", "200ms", env=ci_env, check=True)
    sum(i * i for i in range(200_000))
    run_cli("ci", "mark", "install", env=ci_env, check=True)
    time.sleep(0.3)
    run_cli("ci", "mark", "unit | tests", env=ci_env, check=True)
    end = run_cli("ci", "end", "--label", "deploy", "--json", str(tmp_path / "energy.json"), env=ci_env, check=True)
    assert "| install |" in end.stdout and "| unit \\| tests |" in end.stdout and "| **total** |" in end.stdout
    assert Path(ci_env["GITHUB_STEP_SUMMARY"]).read_text() == end.stdout  # posted for the job's summary page
    document = json.loads((tmp_path / "energy.json").read_text())
    assert document["kind"] == "ci" and document["name"] == "acme/shop / build"
    assert document["settings"]["ci"]["GITHUB_JOB"] == "build"
    steps = [p for p in document["phases"] if p["parent"] == "[RUNTIME]"]
    assert [p["name"] for p in steps] == ["install", "unit | tests", "deploy"]
    total = next(p for p in document["phases"] if p["name"] == "[RUNTIME]")
    # the steps tile the run: their durations and energies add up to the total
    assert sum(p["duration_s"] for p in steps) == pytest.approx(total["duration_s"], abs=1e-6)
    assert sum(p["energy_j"] for p in steps) == pytest.approx(total["energy_j"], rel=1e-9)
    assert all(p["energy_j"] > 0 for p in steps)
    assert total["carbon_g"] == pytest.approx(total["energy_j"] / 3.6e6 * 300, rel=1e-9)

    db = tmp_path / "team.db"
    imported = run_cli("runs", "import", str(tmp_path / "energy.json"), "--db", str(db), "--json", check=True)
    run_id = json.loads(imported.stdout)["imported"][0]["run_id"]
    exported = run_cli("runs", "export", str(run_id), "--format", "json", "--db", str(db), check=True)
    again = json.loads(exported.stdout)
    # the same figures from the imported samples
    assert [(p["name"], p["energy_j"], p["duration_s"]) for p in again["phases"]] == [
        (p["name"], p["energy_j"], p["duration_s"]) for p in document["phases"]
    ]
    assert Store(f"sqlite:///{db}").get_run(run_id).status == "finished"


def test_a_mark_without_an_agent_is_a_clear_error(run_cli, ci_env: dict[str, str]) -> None:
    result = run_cli("ci", "mark", "x", env=ci_env)
    assert result.returncode == 2
    assert "no wattwise CI agent is running" in result.stderr and "Traceback" not in result.stderr


def test_a_stopped_agent_closes_its_run_as_interrupted(run_cli, ci_env: dict[str, str]) -> None:
    start = run_cli("ci", "start", env=ci_env, check=True)
    pid = int(start.stdout.split("agent pid ")[1].split(",")[0])
    os.kill(pid, signal.SIGTERM)
    result_file = Path(ci_env["WATTWISE_CI_DIR"]) / "wattwise-ci.json"
    deadline = time.monotonic() + 60  # hang guard only
    while not result_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    document = json.loads(result_file.read_text())
    assert document["status"] == "interrupted" and "stopped before" in document["error"]


def test_importing_something_else_is_a_clear_error(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "status": "finished", "phases": [], "metrics": [
        {"name": "power_w", "unit": "W", "kind": "gauge", "t_us": [1, 2], "values": [1.0]}]}))
    result = run_cli("runs", "import", str(bad), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert "metrics[0]: 2 times but 1 values" in result.stderr
    (tmp_path / "notjson.json").write_text("{")
    result = run_cli("runs", "import", str(tmp_path / "notjson.json"), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2 and "is not JSON" in result.stderr
