from __future__ import annotations

import numpy as np
import pytest

from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.executors.planning import carbon_for_starts, plan_start

HOUR = 3600.0


def hourly(values: list[float], start_s: float = 0.0) -> CarbonTrace:
    times = start_s + HOUR * np.arange(len(values))
    return CarbonTrace.from_samples(times, values, source="test")


def test_constant_job_starts_in_the_cleanest_window() -> None:
    trace = hourly([400, 300, 100, 100, 350, 400, 400, 400])
    plan = plan_start(trace, [(0.0, 2 * HOUR, 1000.0)], 0.0, 5 * HOUR, step_s=HOUR)
    assert plan.start_s == 2 * HOUR
    assert plan.carbon_g == pytest.approx(1000 * 2 * HOUR * 100 / 3.6e6)  # 2 kWh at 100 g/kWh
    assert plan.immediate_carbon_g == pytest.approx(1000 * HOUR * (400 + 300) / 3.6e6)
    assert plan.saving_ratio == pytest.approx(1 - 200 / 700)
    assert plan.candidates == 6


def test_phased_job_aligns_its_high_power_phase_with_clean_hours() -> None:
    # a 1 h low-power startup then 1 h at high power: the work hour should fall on the clean hour
    trace = hourly([100, 500, 500, 100, 500, 500])
    segments = [(0.0, HOUR, 10.0), (HOUR, 2 * HOUR, 1000.0)]
    plan = plan_start(trace, segments, 0.0, 3 * HOUR, step_s=HOUR)
    assert plan.start_s == 2 * HOUR  # startup on a dirty hour, work on the clean one
    starts = np.array([0.0, HOUR, 2 * HOUR])
    assert np.argmin(carbon_for_starts(trace, segments, starts)) == 2


def test_ties_pick_the_earliest_and_fine_steps_are_exact() -> None:
    trace = hourly([200] * 6)
    plan = plan_start(trace, [(0.0, 1800.0, 50.0)], 600.0, 2 * HOUR, step_s=60.0)
    assert plan.start_s == 600.0 and plan.saving_g == 0


def test_trace_must_cover_the_wait_and_the_job() -> None:
    trace = hourly([200] * 4)
    with pytest.raises(WattwiseError, match=r"covers .* but the job may run"):
        plan_start(trace, [(0.0, 2 * HOUR, 1.0)], 0.0, 3 * HOUR)
    with pytest.raises(WattwiseError, match="no duration"):
        plan_start(trace, [], 0.0, HOUR)
