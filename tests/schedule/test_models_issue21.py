"""Issue 21's models against hand computations on tiny traces: restart accounting, the thesis conventions,
the forecast models (additive, AR(1) by lead time, issued forecasts re-read at each decision; decide on the
forecast, bill on the actual trace)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from wattwise.carbon.forecast import Forecast, read_issued
from wattwise.carbon.trace import CarbonTrace, TraceError
from wattwise.jobmodel import JobModel, Phase
from wattwise.schedule.jobs import make_job
from wattwise.schedule.simulate import Options, simulate, summary
from wattwise.schedule.sweep import config_jobs, load_grid

H = 3600.0


def hourly(values: list[float]) -> CarbonTrace:
    return CarbonTrace.from_samples([i * H for i in range(len(values))], values)


def test_restart_accounting_by_hand() -> None:
    # 1 h startup at 100 W, 2 h of work at 100 W, 2 h of waiting; intensity 100, 100, 900, 100, 100 g/kWh.
    # Best uninterrupted run: 3 slots of 0.1 kWh, always one 900 slot: 110 g. Suspend-resume: startup 0, work
    # 1, suspend over the 900 slot, startup 3, work 4: 4 × 0.1 kWh × 100 g/kWh = 40 g, one restart of
    # 0.1 kWh = 360,000 J and 10 g, billed.
    model = JobModel((Phase("startup", H, 100),), (Phase("work", H, 100),))
    job = make_job(0, 0.0, 2 * H, base=model, kind="phases", wait_s=2 * H)
    sim = simulate([job], hourly([100, 100, 900, 100, 100]), Options("suspend-resume", resolution_s=H))
    s = summary(sim)
    r = sim.results[0]
    assert r.blocks == [(0, 0, 1), (3, 1, 2)]
    assert r.carbon_g == pytest.approx(40.0)
    assert r.energy_j == pytest.approx(4 * 360_000)
    assert (r.restart_energy_j, r.restart_carbon_g) == (pytest.approx(360_000), pytest.approx(10.0))
    assert s["totals"]["restarts"] == 1
    assert s["totals"]["restart_energy_j"] == pytest.approx(360_000)
    assert s["totals"]["restart_carbon_g"] == pytest.approx(10.0)
    assert s["agnostic"]["carbon_g"] == pytest.approx(110.0)


def test_thesis_conventions_by_hand(tmp_path: Path) -> None:
    # a 1 h job with a 30 min startup at 100 W and the balanced pattern (60 min at 200 W first): wattwise puts
    # the startup on top (1.5 h, 50 + 200 Wh); the thesis inside (30 min of work at 200 W: 50 + 100 Wh), and
    # its averaged job keeps the 30 min startup at the average 150 W (then 30 min at 150 W).
    carbon = Path(__file__).resolve().parents[2] / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
    text = f"""
carbon: {carbon}
conventions: CONV
phases:
  balanced: [{{name: high, duration_s: 3600, power_w: 200}}, {{name: low, duration_s: 3600, power_w: 100}}]
grid: {{policy: oracle, phases: balanced, startup_min: 30, startup_w: 100, length_h: 1, averaged: [false, true]}}
"""
    energies = {}
    for conv in ("wattwise", "thesis"):
        path = tmp_path / f"{conv}.yml"
        path.write_text(text.replace("CONV", conv))
        grid = load_grid(path)
        for config in grid.configs():
            [job] = config_jobs(grid, config, None)
            energies[conv, config["averaged"]] = (job.model.energy_j / 3600, job.model.startup_s, job.model.duration_s)
    assert energies["wattwise", False] == (250.0, 1800.0, 5400.0)
    assert energies["wattwise", True] == (250.0, 0.0, 5400.0)
    assert energies["thesis", False] == (150.0, 1800.0, 3600.0)
    assert energies["thesis", True] == (150.0, 1800.0, 3600.0)
    path = tmp_path / "bad.yml"
    path.write_text(text.replace("CONV", "thesis").replace("startup_min: 30", "startup_min: 60"))
    grid = load_grid(path)
    with pytest.raises(Exception, match="inside the length"):
        config_jobs(grid, grid.configs()[0], None)


def test_additive_forecast_by_hand() -> None:
    actual = np.array([100.0, 300.0, 0.0])
    f = Forecast(actual, "additive", error=0.1, seed=5)
    z = np.random.default_rng(5).standard_normal(3)
    expected = np.maximum(0, actual + 0.1 * (400 / 3) * z)  # noise: 10 % of the mean (133.3 g/kWh)
    assert np.allclose(f.window(0, 0, 3), expected)
    assert np.array_equal(f.window(2, 1, 3), f.window(0, 1, 3))  # one forecast, whenever asked


def test_ar1_forecast_grows_with_lead_time_by_hand() -> None:
    actual = np.array([100.0, 200.0, 300.0, 400.0])
    f = Forecast(actual, "ar1", seed=3, phi=0.5, profile=((0.0, 0.0), (1.0, 0.5)), resolution_s=H)
    z = np.random.default_rng([3, 1]).standard_normal(3)  # issued at slot 1: leads 0, 1, 2
    x0 = z[0]
    x1 = 0.5 * x0 + math.sqrt(0.75) * z[1]
    x2 = 0.5 * x1 + math.sqrt(0.75) * z[2]
    expected = np.maximum(0, [200 * (1 + 0 * x0), 300 * (1 + 0.5 * x1), 400 * (1 + 0.5 * x2)])
    assert np.allclose(f.window(1, 1, 4), expected)
    assert np.allclose(f.window(1, 2, 4), expected[1:])
    assert f.window(1, 1, 2)[0] == 200.0  # no error at lead 0
    assert not np.allclose(f.window(2, 2, 4), expected[1:])  # a later decision sees another forecast


def issued_file(tmp_path: Path) -> Path:
    path = tmp_path / "forecast.csv"
    path.write_text("issue_time,target_time,g_per_kwh\n0,0,900\n0,3600,100\n0,7200,900\n"
                    "7200,7200,70\n7200,10800,80\n")
    return path


def test_issued_forecast_reread_at_each_decision(tmp_path: Path) -> None:
    issues = read_issued(issued_file(tmp_path))
    f = Forecast(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "issued", resolution_s=H, origin_s=0.0, issues=issues)
    assert f.window(0, 0, 4).tolist() == [900, 100, 900, 900]  # held after the issue's last target
    assert f.window(1, 1, 3).tolist() == [100, 900]             # still the issue of time 0
    assert f.window(2, 2, 5).tolist() == [70, 80, 80]           # the issue of 7200 s


def test_decide_on_forecast_bill_on_actual(tmp_path: Path) -> None:
    # the forecast issued at 0 says slot 1 is cheap (100) but it is the dearest (900): the oracle starts
    # there and is billed 0.1 kWh × 900 g/kWh = 90 g; agnostic (slot 0, 100 g/kWh) 10 g
    job = make_job(0, 0.0, H, power_w=100, wait_s=3 * H)
    options = Options("oracle", resolution_s=H, forecast_model="issued", forecast_file=str(issued_file(tmp_path)))
    sim = simulate([job], hourly([100, 900, 100, 100, 100]), options)
    assert sim.results[0].start_s == H
    assert sim.results[0].carbon_g == pytest.approx(90.0)
    assert summary(sim)["agnostic"]["carbon_g"] == pytest.approx(10.0)


def test_issued_forecast_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("issue_time,target_time,g_per_kwh\n0,3600,abc\n")
    with pytest.raises(TraceError, match="line 2"):
        read_issued(path)
    path.write_text("time,value\n")
    with pytest.raises(TraceError, match="line 1"):
        read_issued(path)


def test_interval_by_hand() -> None:
    from wattwise.schedule.sweep import mean_ci95

    # mean 2, sample std 1, t(0.975, 2 dof) = 4.302653: half-width 4.302653 / sqrt(3) = 2.484138
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    assert (mean, low, high) == (2.0, pytest.approx(2.0 - 2.484138, abs=1e-6), pytest.approx(2.0 + 2.484138, abs=1e-6))
    assert math.isnan(mean_ci95([5.0])[1]) and math.isnan(mean_ci95([])[0])


def test_fifo_and_backfilling_queues_by_hand() -> None:
    # one CPU; two 1 h jobs at 100 W arriving together, 4 h of waiting; intensity 900, 100, 900, 900, 50, 900,
    # 900. The first takes the 50 slot (5 g). Backfilling: the second takes the 100 slot before it (10 g).
    # FIFO: the second may not start before the first: its window has no free slot left, so it runs at the
    # first free slot after (slot 5, 900: 90 g) and misses its deadline. Without the limit both take slot 4:
    # 10 g, the bound; the gap of backfilling is (15 - 10) / 10 = 50 %.
    trace = hourly([900, 100, 900, 900, 50, 900, 900])
    jobs = [make_job(i, 0.0, H, power_w=100, wait_s=4 * H) for i in range(2)]
    back = simulate(jobs, trace, Options("oracle", resolution_s=H, capacity=1))
    fifo = simulate(jobs, trace, Options("oracle", resolution_s=H, capacity=1, queue="fifo"))
    assert [r.start_s for r in back.results] == [4 * H, 1 * H]
    assert [r.carbon_g for r in back.results] == [pytest.approx(5.0), pytest.approx(10.0)]
    assert [r.start_s for r in fifo.results] == [4 * H, 5 * H]
    assert fifo.results[1].carbon_g == pytest.approx(90.0) and not fifo.results[1].deadline_met
    s = summary(back)
    assert s["capacity"]["unlimited_carbon_g"] == pytest.approx(10.0)
    assert s["capacity"]["gap_to_unlimited_pct"] == pytest.approx(50.0)
    assert "agnostic" in s["baseline"]


def test_signals_chosen_by_column_name_by_hand(tmp_path: Path) -> None:
    # average 100, 500, 100 and marginal (moer) 700, 300, 800 g/kWh; a 1 h job at 100 W (0.1 kWh) with 2 h of
    # waiting. On the average the best start is now (10 g, saving 0 %); on the marginal signal it is slot 1:
    # 30 g against 70 g at arrival, a saving of 4/7 = 57.14 %.
    from wattwise.schedule.runner import run

    (tmp_path / "sig.csv").write_text("timestamp,g_per_kwh,moer\n0,100,700\n3600,500,300\n7200,100,800\n")
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text("carbon: sig.csv\nsignals: [g_per_kwh, moer]\nresolution: 1h\nphases:\n"
                         "  flat: [{name: work, duration_s: 3600, power_w: 100}]\n"
                         "grid: {policy: oracle, phases: flat, length_h: 1, wait_h: 2}\n")
    rows = {r["signal"]: r for r in run(load_grid(grid_file), workers=1)}
    assert rows["g_per_kwh"]["carbon_g"] == pytest.approx(10.0) and rows["g_per_kwh"]["saving_pct"] == 0.0
    assert rows["moer"]["carbon_g"] == pytest.approx(30.0)
    assert rows["moer"]["agnostic_carbon_g"] == pytest.approx(70.0)
    assert rows["moer"]["saving_pct"] == pytest.approx(400 / 7)
    with pytest.raises(TraceError, match="no column 'nope'"):
        from wattwise.carbon.trace import read_trace

        read_trace(tmp_path / "sig.csv", "nope")


def test_savings_against_another_baseline_by_hand() -> None:
    # the restart example: suspend-resume 40 g, the carbon-agnostic start 110 g, the oracle 110 g too (every
    # uninterrupted run meets one 900 slot): 63.64 % saved against each, each named
    model = JobModel((Phase("startup", H, 100),), (Phase("work", H, 100),))
    job = make_job(0, 0.0, 2 * H, base=model, kind="phases", wait_s=2 * H)
    sim = simulate([job], hourly([100, 100, 900, 100, 100]),
                   Options("suspend-resume", resolution_s=H, compare_with=("oracle",)))
    s = summary(sim)
    assert s["savings"]["carbon_pct"] == pytest.approx(100 * 70 / 110)
    assert s["against"]["oracle"]["carbon_g"] == pytest.approx(110.0)
    assert s["against"]["oracle"]["saving_pct"] == pytest.approx(100 * 70 / 110)
    with pytest.raises(Exception, match="unknown baseline policy"):
        Options("oracle", compare_with=("nope",))


def test_zones_and_months_are_columns(tmp_path: Path) -> None:
    # zone A at 100 g/kWh, zone B at 300 g/kWh, all of 2024; a 1 h job at 100 W (0.1 kWh): 10 g and 30 g, in
    # each of the two months
    from wattwise.schedule.runner import run

    for zone, value in (("A", 100), ("B", 300)):
        (tmp_path / f"{zone}.csv").write_text(f"timestamp,g_per_kwh\n2024-01-01T00:00:00Z,{value}\n"
                                              f"2024-12-31T00:00:00Z,{value}\n")
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text("carbon: {A: A.csv, B: B.csv}\nmonths: [2024-07, 2024-08]\nresolution: 1h\nphases:\n"
                         "  flat: [{name: work, duration_s: 3600, power_w: 100}]\n"
                         "grid: {policy: agnostic, phases: flat, length_h: 1, wait_h: 0}\n")
    rows = run(load_grid(grid_file), workers=1)
    got = sorted((r["zone"], r["month"], round(r["carbon_g"], 9)) for r in rows)
    assert got == [("A", "2024-07", 10.0), ("A", "2024-08", 10.0), ("B", "2024-07", 30.0), ("B", "2024-08", 30.0)]
