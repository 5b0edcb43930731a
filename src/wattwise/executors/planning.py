"""Choose when to start one job: the start in [earliest, latest] with the least carbon for its power profile.

carbon(start) = Σ_segments power_w × ∫_{start+a}^{start+b} intensity dt / 3.6e6, evaluated exactly on the
piecewise-constant trace for every candidate start on a grid of `step_s` (the trace's cumulative integral
makes each candidate O(segments)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.units import J_PER_KWH


@dataclass(frozen=True)
class StartPlan:
    start_s: float
    carbon_g: float
    immediate_carbon_g: float
    energy_j: float
    candidates: int

    @property
    def saving_g(self) -> float:
        return self.immediate_carbon_g - self.carbon_g

    @property
    def saving_ratio(self) -> float:
        return self.saving_g / self.immediate_carbon_g if self.immediate_carbon_g > 0 else 0.0


def carbon_for_starts(
    trace: CarbonTrace, segments: list[tuple[float, float, float]], starts_s: np.ndarray
) -> np.ndarray:
    """Grams CO2e of a job with `segments` (start_s, end_s, power_w relative to its start) for each start."""
    total = np.zeros(len(starts_s))
    for begin_s, end_s, power_w in segments:
        if power_w == 0 or end_s <= begin_s:
            continue
        integral = trace.integral(starts_s + end_s) - trace.integral(starts_s + begin_s)
        total += power_w * integral / J_PER_KWH
    return total


def plan_start(
    trace: CarbonTrace,
    segments: list[tuple[float, float, float]],
    earliest_s: float,
    wait_s: float,
    step_s: float = 300.0,
) -> StartPlan:
    """The least-carbon start between `earliest_s` and `earliest_s + wait_s` (ties: the earliest)."""
    if wait_s < 0:
        raise WattwiseError(f"the waiting time must not be negative, got {wait_s:g} s")
    if step_s <= 0:
        raise WattwiseError(f"the planning step must be positive, got {step_s:g} s")
    duration_s = max((end for _, end, _ in segments), default=0.0)
    if duration_s <= 0:
        raise WattwiseError("the job has no duration: give --length or a model with phases")
    latest_s = earliest_s + wait_s
    if earliest_s < trace.start_s or latest_s + duration_s > trace.end_s:
        raise WattwiseError(
            f"the carbon trace {trace.source} covers {_iso(trace.start_s)} to {_iso(trace.end_s)}, but the job may "
            f"run from {_iso(earliest_s)} to {_iso(latest_s + duration_s)}: use a forecast that covers the "
            "waiting time plus the job's length, or wait less"
        )
    starts = earliest_s + np.arange(0.0, wait_s + 1e-9, step_s)
    carbon = carbon_for_starts(trace, segments, starts)
    best = int(np.argmin(carbon))
    energy_j = sum(p * (b - a) for a, b, p in segments)
    return StartPlan(float(starts[best]), float(carbon[best]), float(carbon[0]), energy_j, len(starts))


def _iso(t_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
