"""Shared fixtures: a known ML-shaped job model and synthetic pinpoint runs generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.jobmodel.model import JobModel, Phase
from wattwise.jobmodel.synth import SynthOptions, synth_runs

BEFORE_S = 10.0
AFTER_S = 10.0


def truth_model(epochs: int = 2) -> JobModel:
    epoch = (Phase("train", 40.0, 95.0), Phase("evaluate", 8.0, 60.0), Phase("save", 4.0, 40.0, True))
    return JobModel(
        (Phase("start", 20.0, 30.0), Phase("prepare", 10.0, 45.0)),
        epoch * epochs + (Phase("train", 0.0, 95.0), Phase("finish", 5.0, 35.0), Phase("exit", 2.0, 25.0)),
    )


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns when not on a terminal; tests read whole lines."""
    from wattwise import clitools

    monkeypatch.setattr(clitools.console, "width", 400)
    monkeypatch.setattr(clitools.err_console, "width", 400)


@pytest.fixture
def truth() -> JobModel:
    return truth_model()


@pytest.fixture
def synth_options() -> SynthOptions:
    return SynthOptions(noise_w=2.0, duration_jitter=0.02, interval_s=0.5, before_s=BEFORE_S, after_s=AFTER_S,
                        idle_w=15.0)


@pytest.fixture
def runs_dir(tmp_path: Path, truth: JobModel, synth_options: SynthOptions) -> Path:
    out = tmp_path / "runs"
    synth_runs(truth, out, 4, synth_options, seed=7)
    return out


@pytest.fixture
def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(runs_dir.iterdir())
