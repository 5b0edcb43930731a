from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.jobmodel.cv import cross_validate
from wattwise.jobmodel.fit import FitError, fit_runs
from wattwise.jobmodel.model import JobModel
from wattwise.jobmodel.pinpoint import read_pinpoint
from wattwise.jobmodel.synth import SynthOptions, synth_runs

from .conftest import AFTER_S, BEFORE_S, truth_model


def read_all(folders: list[Path], windows: bool = True) -> list:
    if windows:
        return [read_pinpoint(f, before_s=BEFORE_S, after_s=AFTER_S) for f in folders]
    return [read_pinpoint(f) for f in folders]


def test_fit_recovers_the_model(run_folders: list[Path], truth: JobModel) -> None:
    result = fit_runs(read_all(run_folders))
    fitted = result.model
    expected = [p for p in truth.phases if p.duration_s > 0]  # the 0 s train before "End training" is dropped
    assert [p.name for p in fitted.phases] == [p.name for p in expected]
    assert [p.is_checkpoint for p in fitted.phases] == [p.is_checkpoint for p in expected]
    assert len(fitted.startup) == 2
    for got, want in zip(fitted.phases, expected, strict=True):
        assert got.duration_s == pytest.approx(want.duration_s, rel=0.03, abs=0.3), got
        assert got.power_w == pytest.approx(want.power_w, abs=1.0), got
    assert fitted.energy_j == pytest.approx(truth.energy_j, rel=0.02)
    assert fitted.resume_cost_j == pytest.approx(truth.resume_cost_j, rel=0.03)
    assert any("lasts 0 s" in note for note in result.notes)
    for report in result.runs:
        assert report.energy_job_j == pytest.approx(truth.energy_j, rel=0.04)
        assert report.energy_events_j < report.energy_job_j  # launch→first event and Exit→end left out
        assert report.duration_s == pytest.approx(truth.duration_s, rel=0.04)


def test_without_windows_the_job_starts_at_the_first_event(run_folders: list[Path], truth: JobModel) -> None:
    result = fit_runs(read_all(run_folders, windows=False))
    start = result.model.startup[0]
    # the synthetic program logs "start program" after 30 % of its start phase (interpreter, imports)
    assert start.duration_s == pytest.approx(0.7 * truth.startup[0].duration_s, rel=0.05)
    assert [p.name for p in result.model.work][-1] == "finish"  # exit lasts 0 s without the after window
    for report in result.runs:
        assert report.energy_job_j == pytest.approx(report.energy_events_j)


def test_baseline_from_windows(run_folders: list[Path], truth: JobModel) -> None:
    result = fit_runs(read_all(run_folders), baseline="windows")
    for got, want in zip(result.model.phases, [p for p in truth.phases if p.duration_s > 0], strict=True):
        assert got.power_w == pytest.approx(want.power_w - 15.0, abs=1.0)
    assert all(r.baseline_w == pytest.approx(15.0, abs=1.0) for r in result.runs)
    fixed = fit_runs(read_all(run_folders), baseline=20.0)
    assert fixed.model.work[0].power_w == pytest.approx(75.0, abs=1.0)


def test_different_epochs_are_not_fitted_together(tmp_path: Path, run_folders: list[Path],
                                                  synth_options: SynthOptions) -> None:
    other = synth_runs(truth_model(epochs=3), tmp_path / "three", 1, synth_options, seed=1)
    with pytest.raises(FitError, match=r"different phase sequences.*first difference at phase 10: 'finish' vs "
                                       r"'evaluate'.*same epochs"):
        fit_runs(read_all([run_folders[0], *other]))


def test_missing_event_is_reported(run_folders: list[Path]) -> None:
    events = run_folders[1] / "events.csv"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(line for i, line in enumerate(lines) if not (i == 4 and "Evaluate" in line)))
    with pytest.raises(FitError, match=r"run-1 and .*run-2 have different phase sequences \(11 vs 10 phases\); "
                                       r"first difference at phase 5: 'save' vs 'train'"):
        fit_runs(read_all(run_folders))


def test_cross_validation(run_folders: list[Path], truth: JobModel) -> None:
    result = cross_validate(read_all(run_folders))
    data = result.to_dict()
    assert set(data) == {"folds", "mean_abs_energy_error_j", "mean_power_rmse_w"}
    assert len(data["folds"]) == 4
    for fold in data["folds"]:
        assert set(fold) == {"run", "measured_energy_j", "predicted_energy_j", "power_rmse_w"}
        assert fold["measured_energy_j"] == pytest.approx(truth.energy_j, rel=0.04)
        assert fold["predicted_energy_j"] == pytest.approx(truth.energy_j, rel=0.03)
        assert 1.5 < fold["power_rmse_w"] < 15  # noise is 2 W; phase boundaries drift by the jitter
    errors = [abs(f["predicted_energy_j"] - f["measured_energy_j"]) for f in data["folds"]]
    assert data["mean_abs_energy_error_j"] == pytest.approx(sum(errors) / 4)
    assert data["mean_power_rmse_w"] == pytest.approx(sum(f["power_rmse_w"] for f in data["folds"]) / 4)
    assert result.mean_constant_power_rmse_w > 2 * result.mean_power_rmse_w  # phases beat a flat model


def test_cv_without_noise_is_nearly_exact(tmp_path: Path, truth: JobModel) -> None:
    options = SynthOptions(noise_w=0.0, duration_jitter=0.0, interval_s=0.5, before_s=BEFORE_S, after_s=AFTER_S)
    folders = synth_runs(truth, tmp_path / "exact", 3, options, seed=0)
    result = cross_validate(read_all(folders))
    assert result.mean_power_rmse_w < 1.0
    assert result.mean_abs_energy_error_j < 0.005 * truth.energy_j


def test_cv_needs_two_runs(run_folders: list[Path]) -> None:
    with pytest.raises(FitError, match="at least 2 runs"):
        cross_validate(read_all(run_folders[:1]))
