"""Analysis on runs written through the real Store (SQLite, and PostgreSQL where marked)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from wattwise.analysis import summarize_run
from wattwise.analysis.carbon import (
    DEFAULT_NETWORK_KWH_PER_GB,
    network_energy_j,
    network_kwh_per_gb,
    operational_carbon,
)
from wattwise.analysis.compare import compare_runs, describe, welch
from wattwise.analysis.containers import run_containers
from wattwise.analysis.phases import load_series
from wattwise.analysis.sci import SECONDS_PER_YEAR, SciParams, run_sci
from wattwise.analysis.stats import MIN_SAMPLES, run_stats
from wattwise.analysis.synthetic import T0, scenario_run, simple_run
from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.store import Store

ROOT = Path(__file__).resolve().parents[2]
DE_TRACE = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"


@pytest.fixture
def store(sqlite_url: str) -> Store:
    return Store(sqlite_url)


def test_phase_stats_per_metric_and_runtime_rebuilt(store: Store) -> None:
    run_id = scenario_run(store)
    phases = {p.name: p for p in run_stats(store, run_id)}
    runtime = phases["[RUNTIME]"]
    # hidden 'setup' (10–12 s) is left out: runtime = load + query = 18 s
    assert runtime.rebuilt_from == ["load", "query"]
    assert runtime.duration_s == pytest.approx(18.0)
    power = runtime.metric("ipmi_power_w")
    assert power is not None
    assert power.total == pytest.approx(100.0 * 18)  # W·s
    assert (power.mean, power.max, power.min) == (pytest.approx(100), pytest.approx(100), pytest.approx(100))
    web = runtime.metric("cgroup_cpu_time_s", "web")
    assert web is not None and web.total == pytest.approx(3 * 18) and web.mean == pytest.approx(3.0)
    assert web.rate_unit == "s/s"
    baseline = phases["[BASELINE]"].metric("ipmi_power_w")
    assert baseline is not None and baseline.mean == pytest.approx(50)
    # a gauge with a step: time-weighted mean, max and min across the step
    whole = next(p for p in run_stats(store, run_id) if p.name == "load")
    assert whole.metric("ipmi_power_w").samples == 21  # type: ignore[union-attr]
    assert not whole.warnings


def test_summarize_run_rebuilds_runtime_keeping_keys(store: Store) -> None:
    run_id = scenario_run(store)
    summary = summarize_run(store, run_id)
    runtime = next(p for p in summary["phases"] if p["name"] == "[RUNTIME]")
    assert runtime["rebuilt_from"] == ["load", "query"]
    assert runtime["duration_s"] == pytest.approx(18)
    assert runtime["energy_j"] == pytest.approx(1800)
    assert runtime["carbon_g"] == pytest.approx(1800 / 3.6e6 * 400)
    for key in ("run_id", "name", "status", "estimated", "intensity_g_per_kwh", "intensity_source", "pue",
                "phases", "warnings"):
        assert key in summary
    for key in ("name", "duration_s", "energy_j", "mean_power_w", "peak_power_w", "carbon_g", "estimated",
                "energy_source", "samples", "unit_cpu_time_s", "unit_energy_j", "network_rx_b", "parent",
                "hidden"):
        assert key in runtime


def test_too_few_samples_warns(store: Store) -> None:
    run_id = simple_run(store, 100.0, duration_s=10.0)
    store.add_phase(run_id, "blip", T0 + 1_000_000, T0 + 1_200_000)
    blip = next(p for p in run_stats(store, run_id) if p.name == "blip")
    assert any(f"fewer than {MIN_SAMPLES}" in w for w in blip.warnings)
    assert blip.metric("rapl_energy_j").total == pytest.approx(2.0)  # type: ignore[union-attr]


def test_sparse_sampling_warns(store: Store) -> None:
    run_id = simple_run(store, 100.0, duration_s=100.0)  # 21 samples every 5 s
    store.update_run(run_id, settings={"interval_s": 0.5, "intensity_g_per_kwh": 300.0})
    runtime = run_stats(store, run_id)[0]
    assert any("not every 0.5 s" in w for w in runtime.warnings)


def test_carbon_with_a_trace_weights_each_hour(store: Store) -> None:
    run_id = simple_run(store, 7200.0, duration_s=7200.0)  # 1 W for two hours
    series = load_series(store, run_id)
    start_s = T0 / 1e6
    trace = CarbonTrace.from_samples([start_s - 1800, start_s + 1800, start_s + 5400], [100.0, 300.0, 500.0])
    figure = operational_carbon(series, [(T0, T0 + 7_200_000_000)], trace, pue=1.5)
    # 0.5 h at 100, 1 h at 300, 0.5 h at 500, each 1 Wh per hour
    expected = (0.5 * 100 + 1 * 300 + 0.5 * 500) / 1000 * 1.5
    assert figure.energy_j == pytest.approx(7200)
    assert figure.carbon_g == pytest.approx(expected)
    assert figure.intensity_g_per_kwh == pytest.approx(300)
    static = operational_carbon(series, [(T0, T0 + 7_200_000_000)], 300.0, pue=1.5)
    assert static.carbon_g == pytest.approx(7200 / 3.6e6 * 300 * 1.5)


def test_carbon_with_the_shipped_electricity_maps_trace(store: Store) -> None:
    from wattwise.carbon.trace import read_trace

    trace = read_trace(DE_TRACE)
    run_id = scenario_run(store)
    result = run_sci(store, run_id, intensity=trace)
    # the run lies inside one hour of the trace: its intensity is that hour's
    assert result.intensity_g_per_kwh == pytest.approx(trace.at(T0 / 1e6))
    assert "DE" in result.intensity_source
    with pytest.raises(WattwiseError, match="outside the trace"):
        run_sci(store, run_id, intensity=trace, trace_shift_s=-10 * 365 * 86400)


def test_network_energy_constants() -> None:
    assert DEFAULT_NETWORK_KWH_PER_GB == 0.002652
    assert network_energy_j(1e9) == pytest.approx(0.002652 * 3.6e6)
    assert network_kwh_per_gb("aslan-2015") == 0.06
    assert network_kwh_per_gb("0.01") == 0.01
    with pytest.raises(WattwiseError, match="neither a number"):
        network_kwh_per_gb("lots")


def test_sci_with_embodied_and_functional_unit_metric(store: Store) -> None:
    sci = {"TE": 1_000_000, "EL": 4, "RS": 0.5, "R_d": "request"}
    run_id = scenario_run(store, sci=sci)
    result = run_sci(store, run_id)
    duration = 18.0
    operational = 1800 / 3.6e6 * 400
    net_bytes = 18 * 1e8  # rx grows 1e8 B/s
    network_g = net_bytes / 1e9 * 0.002652 * 400
    embodied = 1_000_000 * duration / (4 * SECONDS_PER_YEAR) * 0.5
    assert result.r == pytest.approx(40) and result.r_source == "metric sci_r"
    assert result.network_bytes == pytest.approx(net_bytes)
    assert result.operational_g == pytest.approx(operational + network_g)
    assert result.embodied_g == pytest.approx(embodied)
    assert result.sci_g_per_unit == pytest.approx((operational + network_g + embodied) / 40)
    assert result.r_d == "request"
    # overrides and validation
    assert run_sci(store, run_id, r=2).sci_g_per_unit == pytest.approx((operational + network_g + embodied) / 2)
    with pytest.raises(WattwiseError, match="RS"):
        SciParams.from_settings({"RS": 2})
    with pytest.raises(WattwiseError, match="no phase"):
        run_sci(store, run_id, phase="nope")


def test_sci_counts_gmt_r_lines(store: Store) -> None:
    run_id = simple_run(store, 100.0)
    store.add_log(run_id, "command", "stdout", "GMT_SCI_R=3", T0 + 1_000_000)
    store.add_notes(run_id, [(T0 + 2_000_000, "command", "GMT_SCI_R=2")])
    result = run_sci(store, run_id)
    assert result.r == 5 and result.r_source == "GMT_SCI_R lines"
    assert any("no TE" in w for w in result.warnings)


def test_containers_gross_and_surplus(store: Store) -> None:
    run_id = scenario_run(store)
    phases = {p.phase: p for p in run_containers(store, run_id)}
    runtime = phases["[RUNTIME]"]
    assert runtime.machine_energy_j == pytest.approx(1800)
    assert runtime.baseline_power_w == pytest.approx(50)
    assert runtime.surplus_energy_j == pytest.approx(1800 - 50 * 18)
    by_name = {c.name: c for c in runtime.containers}
    # shares are of the machine's busy CPU time (4.5 CPU-s/s), like the unit's (issue 15: one energy story)
    assert by_name["web"].share == pytest.approx(3 / 4.5) and by_name["db"].share == pytest.approx(1 / 4.5)
    assert by_name["web"].attributed_energy_j == pytest.approx(1200)
    assert by_name["db"].above_baseline_energy_j == pytest.approx(200)
    assert sum(c.attributed_energy_j for c in runtime.containers) == pytest.approx(1800 * 4 / 4.5)
    assert by_name["web"].cpu_share_of_machine == pytest.approx(3 / 4.5)
    assert by_name["web"].memory_peak_b == pytest.approx(3e8)
    assert "setup" not in phases  # hidden
    assert run_containers(store, run_id, baseline_power_w=200)[1].warnings  # below baseline: clipped


def test_describe_and_welch_match_scipy() -> None:
    a = [10.1, 10.4, 9.8, 10.0, 10.3]
    b = [11.0, 11.4, 10.9, 11.3]
    d = describe(a)
    assert d.mean == pytest.approx(np.mean(a)) and d.sd == pytest.approx(np.std(a, ddof=1))
    assert d.cv == pytest.approx(np.std(a, ddof=1) / np.mean(a))
    low, high = sps.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=sps.sem(a))
    assert (d.ci_low, d.ci_high) == (pytest.approx(low), pytest.approx(high))
    test = welch(a, b)
    reference = sps.ttest_ind(b, a, equal_var=False)
    assert test.t == pytest.approx(reference.statistic) and test.p == pytest.approx(reference.pvalue)
    assert test.significant and test.verdict.startswith("significant")
    same = welch(a, [x + 0.01 for x in a])
    assert same.significant is False and same.verdict.startswith("not significant")
    assert welch([1.0], [2.0, 3.0]).significant is None
    assert describe([5.0]).sd is None and math.isnan(float("nan"))


def test_compare_runs_groups(store: Store) -> None:
    a = [simple_run(store, e) for e in (100, 102, 98, 101)]
    b = [simple_run(store, e) for e in (120, 118, 123)]
    result = compare_runs(store, a, b, metrics=("energy_j",))
    (row,) = result["rows"]
    assert row["phase"] == "[RUNTIME]" and row["a"]["n"] == 4 and row["b"]["n"] == 3
    assert row["a"]["mean"] == pytest.approx(100.25)
    assert row["test"]["significant"] is True
    single = compare_runs(store, a)
    assert {r["metric"] for r in single["rows"]} == {"energy_j", "duration_s", "mean_power_w", "carbon_g"}
    assert all(r["b"] is None for r in single["rows"])


@pytest.mark.postgres
def test_analysis_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    run_id = scenario_run(store, sci={"TE": 1000, "RS": 1})
    assert run_sci(store, run_id).r == pytest.approx(40)
    assert run_containers(store, run_id)[1].containers[0].name == "web"


def test_cli_compare_stats_sci_containers(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    store = Store(f"sqlite:///{db}")
    runs = [simple_run(store, e) for e in (100, 101, 99, 130, 131, 129)]
    scenario = scenario_run(store, sci={"TE": 100000, "R_d": "request"})
    out = run_cli("compare", *map(str, runs[:3]), "--vs", str(runs[3]), "--vs", str(runs[4]), "--vs",
                  str(runs[5]), "--db", str(db), check=True).stdout
    assert "significant" in out and "energy_j" in out and "95 % CI" in out
    data = json.loads(run_cli("compare", *map(str, runs[:3]), "--json", "--db", str(db), check=True).stdout)
    assert data["rows"][0]["a"]["n"] == 3
    out = run_cli("stats", str(scenario), "--db", str(db), check=True).stdout
    assert "load + query" in out and "ipmi_power_w" in out
    data = json.loads(run_cli("stats", str(scenario), "--json", "--db", str(db), check=True).stdout)
    runtime = next(p for p in data["phases"] if p["name"] == "[RUNTIME]")
    assert "cgroup_cpu_time_s[web]" in {m["label"] for m in runtime["metrics"]}
    out = run_cli("sci", str(scenario), "--trace", str(DE_TRACE), "--db", str(db), check=True).stdout
    assert "per request" in out and "zone DE" in out
    data = json.loads(run_cli("containers", str(scenario), "--json", "--db", str(db), check=True).stdout)
    assert data["phases"][1]["containers"][0]["name"] == "web"
    bad = run_cli("sci", str(scenario), "--trace", str(tmp_path / "missing.csv"), "--db", str(db))
    assert bad.returncode == 2 and "not found" in bad.stderr
