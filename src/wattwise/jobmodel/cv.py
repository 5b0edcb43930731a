"""Leave-one-out cross-validation of the fitted job model across runs.

For each run: fit the model on all other runs, then compare with the held-out run:

- ``measured_energy_j``: energy measured over the held-out run's job window (launch → end when the meter's
  windows are given, else first → last event), minus the baseline when one is subtracted;
- ``predicted_energy_j``: the fitted model's energy;
- ``power_rmse_w``: root mean square of (model power − measured power) over the held-out run's samples in
  its job window, the model's time 0 at the run's job start (the model is 0 W past its end).

Then ``mean_abs_energy_error_j`` = mean over folds of |predicted − measured| and ``mean_power_rmse_w`` =
mean of the folds' RMSEs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wattwise.jobmodel.fit import (
    Baseline,
    FitError,
    RunSegments,
    check_aligned,
    fit_segments,
    power_rmse_w,
    segment_runs,
)
from wattwise.jobmodel.model import constant_from_phases
from wattwise.jobmodel.phasemap import PhaseMap
from wattwise.jobmodel.pinpoint import PowerRun


@dataclass(frozen=True)
class Fold:
    run: str
    measured_energy_j: float
    predicted_energy_j: float
    power_rmse_w: float
    constant_power_rmse_w: float  # the same for a flat model of equal energy and length (for comparison)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "measured_energy_j": self.measured_energy_j,
                "predicted_energy_j": self.predicted_energy_j, "power_rmse_w": self.power_rmse_w}


@dataclass(frozen=True)
class CvResult:
    folds: list[Fold]

    @property
    def mean_abs_energy_error_j(self) -> float:
        return sum(abs(f.predicted_energy_j - f.measured_energy_j) for f in self.folds) / len(self.folds)

    @property
    def mean_power_rmse_w(self) -> float:
        return sum(f.power_rmse_w for f in self.folds) / len(self.folds)

    @property
    def mean_constant_power_rmse_w(self) -> float:
        return sum(f.constant_power_rmse_w for f in self.folds) / len(self.folds)

    def to_dict(self) -> dict[str, Any]:
        return {"folds": [f.to_dict() for f in self.folds],
                "mean_abs_energy_error_j": self.mean_abs_energy_error_j,
                "mean_power_rmse_w": self.mean_power_rmse_w}


def cross_validate_segments(segments: Sequence[RunSegments],
                            progress: Callable[[], None] | None = None) -> CvResult:
    if len(segments) < 2:
        raise FitError(f"leave-one-out needs at least 2 runs, got {len(segments)}")
    check_aligned(segments)
    folds: list[Fold] = []
    for i, held_out in enumerate(segments):
        model, _, _ = fit_segments([s for j, s in enumerate(segments) if j != i])
        folds.append(Fold(
            held_out.run.name, held_out.energy_job_j(), model.energy_j, power_rmse_w(model, held_out),
            power_rmse_w(constant_from_phases(model), held_out),
        ))
        if progress:
            progress()
    return CvResult(folds)


def cross_validate(runs: Sequence[PowerRun], phasemap: PhaseMap | None = None, *, baseline: Baseline = None,
                   ignore_unknown: bool = False) -> CvResult:
    segments = segment_runs(runs, phasemap, baseline=baseline, ignore_unknown=ignore_unknown)
    return cross_validate_segments(segments)
