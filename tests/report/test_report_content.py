"""Report content for issue 15: size, warnings after the summary, human charts, totals, SCI, carbon units."""

from __future__ import annotations

import re

import numpy as np

from wattwise.analysis.synthetic import T0, add_series, large_run, scenario_run
from wattwise.providers.base import Kind, MetricSpec
from wattwise.report.html import render_report
from wattwise.store import Store
from wattwise.web.pages import fmt_si, warning_groups
from wattwise.web.series import describe_metric


def test_report_of_a_one_minute_run_with_ten_metrics_is_under_1_mb(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = large_run(store, samples=600 * 10, metrics=10, interval_s=0.1)  # 60 s at 100 ms
    html = render_report(store, run_id)
    assert len(html.encode()) < 1_000_000
    assert html.count("<script>") == 2  # charts code and the call: no chart library copied in


def _rapl_run(store: Store) -> int:
    run_id = store.create_run("rapl", settings={"intensity_g_per_kwh": 400.0, "pue": 1.0, "interval_s": 1.0})
    t = np.arange(0, 21.0)
    for detail, watts in (("package-0", 30.0), ("package-0/dram", 5.0)):
        add_series(store, run_id, MetricSpec("rapl_energy_j", "J", Kind.COUNTER, detail), t, t * watts)
    add_series(store, run_id, MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine"), t, np.full_like(t, 80.0))
    add_series(store, run_id, MetricSpec("cgroup_memory_b", "B", Kind.GAUGE, "command"), t, np.full_like(t, 3.5e7))
    add_series(store, run_id, MetricSpec("gpu_power_w", "W", Kind.GAUGE, "0"), t, np.zeros_like(t))
    store.add_phase(run_id, "[BASELINE]", T0, T0 + 5_000_000)
    store.add_phase(run_id, "[RUNTIME]", T0 + 5_000_000, T0 + 20_000_000)
    store.add_phase(run_id, "blip", T0 + 19_000_000, T0 + 19_500_000)
    store.finish_run(run_id, "finished", warnings=["provider gpu: read failed: NVML gone"])
    return run_id


def test_report_sections_titles_and_totals(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = _rapl_run(store)
    html = render_report(store, run_id)
    # warnings come grouped and collapsed after the phase table, not before it
    assert '<details class="warnings"' in html
    assert html.index("<h2>Phases</h2>") < html.index('<details class="warnings"') < html.index("<h2>Measurements")
    assert "too few samples" in html and "NVML gone" in html
    # memory is a gauge: no total; RAPL energy is a counter: its total is shown in J
    stats = html[html.index("<h2>Per-metric statistics"):]
    row = re.search(r"cgroup_memory_b\[command\]</td><td>([^<]*)</td>", stats)
    assert row is not None and row.group(1) == "–"
    assert re.search(r"rapl_energy_j\[package-0\]</td><td>450 J</td>", stats)
    # no SCI block in the settings: no SCI section
    assert 'id="sci"' not in html


def test_report_has_sci_section_when_the_scenario_has_one(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store, sci={"TE": 1_000_000, "R_d": "request"})
    html = render_report(store, run_id)
    assert 'id="sci"' in html and "per request" in html
    assert not re.search(r"\d\.\d+e-\d+ ?[µm]?g", html)  # carbon in one unit family, no e-notation


def test_human_titles_stacked_power_and_zero_series() -> None:
    assert describe_metric("rapl_energy_j", "package-0", "J", "counter") == {
        "title": "CPU package 0 (RAPL) power", "unit": "W", "scale": 1.0, "group": "power", "stack": True}
    dram = describe_metric("rapl_energy_j", "package-0/dram", "J", "counter")
    assert dram["title"] == "CPU package 0 DRAM (RAPL) power" and dram["stack"]
    machine = describe_metric("ipmi_power_w", "machine", "W", "gauge")
    assert machine["group"] == "power" and not machine["stack"]
    assert describe_metric("rapl_energy_j", "package-0/core", "J", "counter")["group"] is None
    cpu = describe_metric("cpu_utilization_ratio", "machine", "ratio", "gauge")
    assert (cpu["title"], cpu["unit"], cpu["scale"]) == ("CPU utilisation", "%", 100.0)
    assert describe_metric("cgroup_cpu_time_s", "web", "s", "counter")["unit"] == "CPU cores"


def test_carbon_stays_in_one_unit_family_and_warnings_group() -> None:
    assert fmt_si(9.57e-7, "g") == "957 ng"
    assert fmt_si(3.2e-6, "g") == "3.2 µg"
    groups = warning_groups(
        ["provider gpu: read failed: x"],
        [{"warnings": ["phase a: only 2 sample(s) of x in 1 s (fewer than 5); sample faster"] * 2}],
    )
    assert [(g["title"], g["count"]) for g in groups] == [("provider", 1), ("too few samples", 1)]


def test_chart_series_marks_all_zero(sqlite_url: str) -> None:
    from wattwise.web.series import chart_series, run_metrics, run_version

    store = Store(sqlite_url)
    run_id = _rapl_run(store)
    series = {s["label"]: s for s in (chart_series(store, m, run_version(store.get_run(run_id)))
                                      for m in run_metrics(store, run_id))}
    assert series["gpu_power_w[0]"]["all_zero"] is True
    assert series["rapl_energy_j[package-0]"]["all_zero"] is False
    assert series["rapl_energy_j[package-0]"]["unit"] == "W"
