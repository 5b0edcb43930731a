from __future__ import annotations

import numpy as np
import pytest

from wattwise.analysis import Series, machine_energy, summarize_phase


def series(
    name: str,
    unit: str,
    kind: str,
    t_s: list[float],
    values: list[float],
    detail: str = "",
    estimated: bool = False,
) -> Series:
    return Series(
        0,
        name,
        unit,
        kind,
        name.split("_")[0],
        detail,
        estimated,
        (np.array(t_s) * 1e6).astype(np.int64),
        np.array(values, dtype=float),
    )


def test_counter_is_interpolated_at_phase_boundaries() -> None:
    s = series("rapl_energy_j", "J", "counter", [0, 1, 2, 3], [0, 10, 20, 30], "package-0")
    assert s.delta(0.5e6, 2.5e6) == pytest.approx(20.0)
    # adjacent phases split the total exactly
    assert s.delta(0, 1.3e6) + s.delta(1.3e6, 3e6) == pytest.approx(30.0)


def test_gauge_is_integrated_time_weighted() -> None:
    # each reading covers the interval since the previous one: (0,1] 100 W, (1,2] 200 W, (2,4] 200 W
    s = series("ipmi_power_w", "W", "gauge", [0, 1, 2, 4], [100, 100, 200, 200])
    assert s.integral(0, 4e6) == pytest.approx(100 + 200 + 400)
    assert s.mean(0, 4e6) == pytest.approx(700 / 4)
    assert s.peak(0, 4e6) == pytest.approx(200)
    # a window inside an interval takes that interval's reading; before the first / after the last: held
    assert s.integral(1.25e6, 1.75e6) == pytest.approx(100)
    assert s.integral(-1e6, 0) == pytest.approx(100)
    assert s.integral(4e6, 6e6) == pytest.approx(400)
    # adjacent phases split the total exactly
    assert s.integral(0, 1.5e6) + s.integral(1.5e6, 4e6) == pytest.approx(700)


def test_source_precedence_and_no_double_counting() -> None:
    rapl = [
        series("rapl_energy_j", "J", "counter", [0, 10], [0, 500], "package-0"),
        series("rapl_energy_j", "J", "counter", [0, 10], [0, 400], "package-0/core"),
        series("rapl_energy_j", "J", "counter", [0, 10], [0, 100], "package-0/dram"),
    ]
    estimate = [series("estimated_power_w", "W", "gauge", [0, 10], [30, 30], "machine", estimated=True)]
    ipmi = [series("ipmi_power_w", "W", "gauge", [0, 10], [200, 200])]
    gpu = [series("gpu_power_w", "W", "gauge", [0, 10], [50, 50], "gpu0")]

    figure = machine_energy(estimate, 0, 10e6)
    assert (figure.energy_j, figure.source, figure.estimated) == (pytest.approx(300), "estimate", True)
    figure = machine_energy(rapl + estimate + gpu, 0, 10e6)
    assert figure.source == "rapl+gpu" and not figure.estimated
    assert figure.energy_j == pytest.approx(500 + 100 + 500)  # core is inside package
    figure = machine_energy(ipmi + rapl + estimate + gpu, 0, 10e6)
    assert (figure.source, figure.energy_j) == ("ipmi", pytest.approx(2000))


def test_phase_summary_unit_share_and_carbon() -> None:
    data = [
        series("estimated_power_w", "W", "gauge", [0, 10], [100, 100], "machine", estimated=True),
        series("cpu_busy_time_s", "s", "counter", [0, 10], [0, 8], "machine"),
        series("cgroup_cpu_time_s", "s", "counter", [5, 10], [0, 4], "command"),
    ]
    summary = summarize_phase(
        data, "[RUNTIME]", 5_000_000, 10_000_000, intensity_g_per_kwh=400, pue=1.5, unit_label="command"
    )
    assert summary.energy_j == pytest.approx(500)
    assert summary.carbon_g == pytest.approx(500 / 3.6e6 * 400 * 1.5)
    assert summary.unit_cpu_time_s == pytest.approx(4)
    assert summary.unit_cpu_share == pytest.approx(1.0)  # 4 of the 4 busy seconds in that window
    before = summarize_phase(data, "[BASELINE]", 0, 4_000_000, intensity_g_per_kwh=400, unit_label="command")
    assert before.unit_cpu_time_s is None  # the unit did not exist yet
