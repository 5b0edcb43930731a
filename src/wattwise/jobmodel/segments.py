"""Refit a job model from the measured segments of a plan run on Slurm (`wattwise model fit --plan ID --model M`).

Each segment of a plan that was measured (`wattwise slurm submit --measure`: the segment runs under
`wattwise measure`, which records the plan id and segment in the run's settings, `settings.slurm`) is a stored
run whose program printed a note when each phase of the model started: `<unix time> <phase name>` with the
phase names of the model (`--read-notes-stdout`). A resumed segment shows the startup phases again, then the work
phases it did. The refit keeps the template model's phases (names, order, sections, checkpoints) and takes, phase
by phase, the mean duration over the segments where the phase was seen, and the mean power over all samples inside
those spans; a phase seen in no segment keeps the template's figures. A phase ends where the next noted phase
starts, or at the end of the segment's [RUNTIME].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wattwise.jobmodel.model import JobModel, Phase
from wattwise.jobmodel.pinpoint import PowerRun, RunError

__all__ = ["SegmentSpan", "plan_segment_runs", "refit_from_segments", "segment_spans"]


@dataclass(frozen=True)
class SegmentSpan:
    phase: str
    start_s: float
    end_s: float
    power_w: float  # mean power over the span's samples


def plan_segment_runs(store: Any, plan_id: int, scan_limit: int = 100_000) -> list[tuple[int, int]]:
    """(segment index, run id) of the finished runs recorded as segments of `plan_id`, in segment order."""
    found = []
    for run in store.list_runs(limit=scan_limit, status="finished"):
        slurm = (run.settings or {}).get("slurm")
        if isinstance(slurm, dict) and str(slurm.get("plan_id")) == str(plan_id):
            found.append((int(slurm.get("segment") or 0), int(run.id)))
    return sorted(found)


def _mean_power(run: PowerRun, start_s: float, end_s: float) -> float:
    if end_s <= start_s:
        return 0.0
    return run.energy_between(start_s, end_s) / (end_s - start_s)


def segment_spans(run: PowerRun, model: JobModel) -> list[SegmentSpan]:
    """The run cut at its notes that name a phase of `model` (other notes are ignored)."""
    names = {p.name for p in model.phases}
    marks = sorted((e.time_s, e.label) for e in run.events if e.label in names)
    if not marks:
        raise RunError(f"{run.name}: no note names a phase of the model ({', '.join(sorted(names))}); the job "
                       "must print '<unix time> <phase name>' when each phase starts")
    end = run.exit_s if run.exit_s is not None else run.end_s
    spans = []
    for (t, name), nxt in zip(marks, [*marks[1:], (end, "")], strict=True):
        stop = min(nxt[0], end)
        if stop > t:
            spans.append(SegmentSpan(name, t, stop, _mean_power(run, t, stop)))
    return spans


def refit_from_segments(model: JobModel, runs: list[PowerRun]) -> tuple[JobModel, dict[str, Any]]:
    """The template `model` with each phase's duration and power from the segments; and a fit report."""
    seen: dict[str, list[SegmentSpan]] = {}
    for run in runs:
        for span in segment_spans(run, model):
            seen.setdefault(span.phase, []).append(span)
    report: dict[str, Any] = {"segments": len(runs), "phases": []}

    def refit(phase: Phase) -> Phase:
        spans = seen.get(phase.name, [])
        if not spans:
            report["phases"].append({"name": phase.name, "seen": 0, "kept": True})
            return phase
        durations = np.array([s.end_s - s.start_s for s in spans])
        energy = sum(s.power_w * (s.end_s - s.start_s) for s in spans)
        power = energy / float(durations.sum()) if durations.sum() > 0 else phase.power_w
        report["phases"].append({"name": phase.name, "seen": len(spans), "duration_s": float(durations.mean()),
                                 "power_w": power, "template_duration_s": phase.duration_s,
                                 "template_power_w": phase.power_w})
        return Phase(phase.name, float(durations.mean()), power, phase.is_checkpoint)

    return JobModel(tuple(refit(p) for p in model.startup), tuple(refit(p) for p in model.work)), report
