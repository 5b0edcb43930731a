"""Fitting a job model from measured runs.

Each run is cut into phases by its events (see phasemap.py). All runs must show the same sequence of
phases (same job, same number of epochs). Then, phase by phase:

- duration = mean of the phase's duration over the runs;
- power = mean of all samples (of all runs) whose time lies inside the phase, after subtracting the
  baseline when one is asked for (a fixed power, or each run's mean power in the meter's before/after
  windows). A phase with no sample inside (shorter than the sampling interval) takes the run's
  time-weighted mean over it instead. Powers below 0 after baseline subtraction are set to 0.

Phases that last 0 s in every run (e.g. ``exit`` when the program's end is not known) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wattwise.errors import FitError as FitError
from wattwise.jobmodel.model import JobModel, Phase
from wattwise.jobmodel.phasemap import PhaseMap, PhaseSpan, default_phasemap, phase_spans
from wattwise.jobmodel.pinpoint import PowerRun

Baseline = float | str | None  # W, "windows", or None


@dataclass
class RunSegments:
    run: PowerRun
    spans: list[PhaseSpan]
    baseline_w: float = 0.0

    @property
    def job_start_s(self) -> float:
        return self.spans[0].start_s

    @property
    def job_end_s(self) -> float:
        return self.spans[-1].end_s

    @property
    def keys(self) -> list[tuple[str, str, bool]]:
        return [s.key for s in self.spans]

    def energy_job_j(self) -> float:
        """Measured energy of the job (its window), minus the baseline."""
        return self.run.energy_between(self.job_start_s, self.job_end_s, self.baseline_w)

    def energy_events_j(self) -> float:
        """Measured energy between the first and the last event (raw, no baseline subtracted)."""
        events = self.run.events
        return self.run.energy_between(events[0].time_s, events[-1].time_s) if events else 0.0

    def job_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(job time of each sample in the job window, power minus baseline)."""
        mask = self.run.mask_between(self.job_start_s, self.job_end_s)
        return self.run.times_s[mask] - self.job_start_s, self.run.power_w[mask] - self.baseline_w


@dataclass(frozen=True)
class PhaseFit:
    name: str
    section: str
    is_checkpoint: bool
    duration_s: float
    duration_std_s: float
    power_w: float
    power_std_w: float  # across runs (std of the per-run means)
    samples: int


@dataclass
class RunReport:
    run: str
    duration_s: float
    energy_events_j: float
    energy_job_j: float
    baseline_w: float

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "duration_s": self.duration_s, "energy_events_j": self.energy_events_j,
                "energy_job_j": self.energy_job_j, "baseline_w": self.baseline_w}


@dataclass
class FitResult:
    model: JobModel
    phases: list[PhaseFit]
    runs: list[RunReport]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "model_energy_j": self.model.energy_j,
            "model_duration_s": self.model.duration_s,
            "phases": [
                {"name": p.name, "section": p.section, "is_checkpoint": p.is_checkpoint,
                 "duration_s": p.duration_s, "duration_std_s": p.duration_std_s, "power_w": p.power_w,
                 "power_std_w": p.power_std_w, "samples": p.samples}
                for p in self.phases
            ],
            "runs": [r.to_dict() for r in self.runs],
            "notes": self.notes,
        }


def _baseline_for(run: PowerRun, baseline: Baseline) -> float:
    if baseline is None:
        return 0.0
    if isinstance(baseline, str):
        if baseline != "windows":
            raise FitError(f"baseline must be a power in W or 'windows', got {baseline!r}")
        return run.window_baseline_w()
    return float(baseline)


def segment_runs(runs: Sequence[PowerRun], phasemap: PhaseMap | None = None, *, baseline: Baseline = None,
                 ignore_unknown: bool = False) -> list[RunSegments]:
    phasemap = phasemap or default_phasemap()
    return [RunSegments(run, phase_spans(run, phasemap, ignore_unknown=ignore_unknown),
                        _baseline_for(run, baseline)) for run in runs]


def _describe(keys: list[tuple[str, str, bool]]) -> str:
    names = [k[0] for k in keys]
    if len(names) > 12:
        return " → ".join(names[:6]) + f" → … ({len(names) - 10} more) … → " + " → ".join(names[-4:])
    return " → ".join(names)


def check_aligned(segments: Sequence[RunSegments]) -> None:
    """All runs must have the same sequence of phases."""
    if not segments:
        raise FitError("no runs to fit")
    reference = segments[0]
    for other in segments[1:]:
        if other.keys == reference.keys:
            continue
        a, b = reference.keys, other.keys
        differing = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        position = next(differing, min(len(a), len(b)))
        first = a[position][0] if position < len(a) else "(end)"
        second = b[position][0] if position < len(b) else "(end)"
        raise FitError(
            f"runs {reference.run.name} and {other.run.name} have different phase sequences "
            f"({len(a)} vs {len(b)} phases); first difference at phase {position + 1}: {first!r} vs "
            f"{second!r}. {reference.run.name}: {_describe(a)}; {other.run.name}: {_describe(b)}. "
            f"Fit runs of the same job (same epochs) together, and check for missing events."
        )


def fit_segments(segments: Sequence[RunSegments]) -> tuple[JobModel, list[PhaseFit], list[str]]:
    check_aligned(segments)
    notes: list[str] = []
    fits: list[PhaseFit] = []
    for position, key in enumerate(segments[0].keys):
        durations = np.array([s.spans[position].duration_s for s in segments])
        if np.all(durations <= 1e-9):
            notes.append(f"phase {position + 1} ({key[0]}) lasts 0 s in every run and is left out")
            continue
        pooled: list[np.ndarray] = []
        run_means: list[float] = []
        for seg in segments:
            span = seg.spans[position]
            values = seg.run.power_w[seg.run.slice_between(span.start_s, span.end_s)] - seg.baseline_w
            if len(values):
                pooled.append(values)
                run_means.append(float(values.mean()))
            elif span.duration_s > 0:
                run_means.append(seg.run.energy_between(span.start_s, span.end_s, seg.baseline_w)
                                 / span.duration_s)
        samples = int(sum(len(v) for v in pooled))
        if samples:
            power = float(np.concatenate(pooled).mean())
        elif run_means:
            power = float(np.mean(run_means))
        else:
            power = 0.0
        if power < 0:
            notes.append(f"phase {position + 1} ({key[0]}): power {power:.3g} W after baseline subtraction "
                         f"set to 0")
            power = 0.0
        fits.append(PhaseFit(
            key[0], key[1], key[2], float(durations.mean()),
            float(durations.std(ddof=1)) if len(durations) > 1 else 0.0, power,
            float(np.std(run_means, ddof=1)) if len(run_means) > 1 else 0.0, samples,
        ))
    startup = tuple(Phase(f.name, f.duration_s, f.power_w, f.is_checkpoint) for f in fits
                    if f.section == "startup")
    work = tuple(Phase(f.name, f.duration_s, f.power_w, f.is_checkpoint) for f in fits if f.section == "work")
    return JobModel(startup, work), fits, notes


def fit_runs(runs: Sequence[PowerRun], phasemap: PhaseMap | None = None, *, baseline: Baseline = None,
             ignore_unknown: bool = False) -> FitResult:
    """Fit a job model from runs of the same job."""
    segments = segment_runs(runs, phasemap, baseline=baseline, ignore_unknown=ignore_unknown)
    model, fits, notes = fit_segments(segments)
    reports = [
        RunReport(seg.run.name, seg.job_end_s - seg.job_start_s, seg.energy_events_j(), seg.energy_job_j(),
                  seg.baseline_w)
        for seg in segments
    ]
    return FitResult(model, fits, reports, notes)


def power_rmse_w(model: JobModel, segment: RunSegments) -> float:
    """RMSE between the model's power and the run's samples over the run's job window."""
    times, power = segment.job_samples()
    if not len(times):
        return math.nan
    predicted = model.power_series(times)
    return float(np.sqrt(np.mean((predicted - power) ** 2)))
