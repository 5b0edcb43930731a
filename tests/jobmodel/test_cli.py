from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wattwise.cli import app
from wattwise.jobmodel.model import load_model

WATTWISE = [sys.executable, "-m", "wattwise"]
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def wattwise(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([*WATTWISE, *args], capture_output=True, text=True, timeout=60, env=env)


def test_fit_writes_a_model_file(tmp_path: Path, run_folders: list[Path]) -> None:
    out = tmp_path / "model.json"
    text = invoke("model", "fit", *map(str, run_folders), "-o", str(out), "--before", "10s", "--after", "10s")
    assert "Fitted model from 4 run(s)" in text and "energy first→last event" in text
    data = json.loads(out.read_text())
    assert set(data) == {"startup", "work"}
    assert [p["name"] for p in data["startup"]] == ["start", "prepare"]
    assert all(set(p) == {"name", "duration_s", "power_w", "is_checkpoint"} for p in data["work"])
    assert load_model(out).work[2].is_checkpoint


def test_fit_json_and_report(tmp_path: Path, runs_dir: Path) -> None:
    report = tmp_path / "report.json"
    data = json.loads(invoke("model", "fit", str(runs_dir), "-b", "10s", "-a", "10s", "--json",
                             "--report", str(report)))
    assert len(data["runs"]) == 4  # a folder of run folders is expanded
    assert {"run", "duration_s", "energy_events_j", "energy_job_j", "baseline_w"} <= set(data["runs"][0])
    assert data["model"]["work"][0]["name"] == "train"
    assert json.loads(report.read_text()) == data


def test_fit_without_windows_uses_the_default_phase_map(tmp_path: Path, run_folders: list[Path]) -> None:
    out = tmp_path / "m.yml"
    invoke("model", "fit", *map(str, run_folders), "-o", str(out))
    assert load_model(out).startup[0].name == "start"


def test_cv_json_shape(run_folders: list[Path]) -> None:
    data = json.loads(invoke("model", "cv", *map(str, run_folders), "--before", "10s", "--after", "10s",
                             "--json"))
    assert list(data) == ["folds", "mean_abs_energy_error_j", "mean_power_rmse_w"]
    assert [f["run"] for f in data["folds"]] == [str(f) for f in run_folders]
    for fold in data["folds"]:
        assert list(fold) == ["run", "measured_energy_j", "predicted_energy_j", "power_rmse_w"]
        assert all(isinstance(fold[k], float) for k in list(fold)[1:])
    assert data["mean_power_rmse_w"] < 15


def test_cv_table(run_folders: list[Path]) -> None:
    text = invoke("model", "cv", *map(str, run_folders[:2]))
    assert "Leave-one-out over 2 runs" in text and "flat model" in text


def test_plot_png_and_svg(tmp_path: Path, run_folders: list[Path]) -> None:
    model = tmp_path / "model.json"
    invoke("model", "fit", *map(str, run_folders), "-o", str(model), "-b", "10s", "-a", "10s")
    png = tmp_path / "one.png"
    invoke("model", "plot", str(run_folders[0]), "--model", str(model), "-b", "10s", "-a", "10s", "-o", str(png),
           "--sigma", "1.5s")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = tmp_path / "all.svg"
    invoke("model", "plot", *map(str, run_folders), "--fit", "-o", str(svg))
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    overlay = tmp_path / "overlay.svg"
    invoke("model", "plot", *map(str, run_folders), "--layout", "overlay", "-o", str(overlay))
    assert overlay.stat().st_size > 1000


def test_show_phasemap_schema_synth(tmp_path: Path) -> None:
    model = tmp_path / "carbs.yaml"
    model.write_text("startup:\n  - {name: start, duration: 10, power: 30}\n"
                     "work:\n  - {name: train, duration: 100, power: 90}\n"
                     "  - {name: save, duration: 5, power: 40, is_checkpoint: true}\n")
    text = invoke("model", "show", str(model))
    assert "resume cost" in text and "train" in text
    data = json.loads(invoke("model", "show", str(model), "--json", "--work", "250s"))
    assert data["work_s"] == pytest.approx(250) and data["resume_cost_j"] == 300
    assert "Start training".lower() in invoke("model", "phasemap").lower()
    schema = json.loads(invoke("model", "schema"))
    assert schema["required"] == ["work"]
    invoke("model", "synth", str(model), "-o", str(tmp_path / "s"), "--runs", "2", "--interval", "1s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["run-1", "run-2"]


def test_help_teaches() -> None:
    for command in (["model"], ["model", "fit"], ["model", "cv"], ["model", "plot"], ["experiment"]):
        text = invoke(*command, "--help")
        assert "wattwise" in text and "Example" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "fit", "nope"], "nope: run folder not found"),
        (["model", "show", "missing.json"], "missing.json: model file not found"),
        (["model", "fit", "RUN", "--before", "ten"], "--before: cannot read duration 'ten'"),
        (["model", "fit", "RUN", "--baseline", "lots"], "--baseline: use a power in W"),
        (["model", "plot", "RUN", "-o", "x.jpg"], "unknown plot format '.jpg'"),
        (["model", "cv", "RUN"], "leave-one-out needs at least 2 runs"),
    ],
)
def test_errors_exit_2_with_a_message(run_folders: list[Path], args: list[str], message: str,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The root CLI's main() (in this process: quicker than a subprocess) prints the error and exits 2."""
    from wattwise.cli import main

    args = [str(run_folders[0]) if a == "RUN" else a for a in args]
    monkeypatch.setattr(sys, "argv", ["wattwise", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_label_error_from_cli(tmp_path: Path, run_folders: list[Path]) -> None:
    events = run_folders[0] / "events.csv"
    events.write_text(events.read_text() + f"{1700000001.0}, warming up caches\n")
    result = wattwise("model", "fit", str(run_folders[0]))
    assert result.returncode == 2
    assert "warming up caches" in result.stderr and "--ignore-unknown" in result.stderr
    assert wattwise("model", "fit", str(run_folders[0]), "--ignore-unknown").returncode == 0
