"""The three energy figures (machine, the unit's attributed, above baseline), named alike everywhere."""

from __future__ import annotations

import pytest

from wattwise.analysis.containers import run_containers
from wattwise.analysis.phases import summarize_run
from wattwise.analysis.synthetic import scenario_run
from wattwise.store import Store


def test_summary_has_energy_above_baseline(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store)
    summary = summarize_run(store, run_id)
    assert summary["baseline_power_w"] == pytest.approx(50.0)
    runtime = next(p for p in summary["phases"] if p["name"] == "[RUNTIME]")
    # load + query: 18 s at 100 W; baseline 50 W
    assert runtime["energy_j"] == pytest.approx(1800)
    assert runtime["above_baseline_energy_j"] == pytest.approx(1800 - 50 * 18)
    # the unit (both containers' cgroups: 4 CPU-s/s) did 4 of the machine's 4.5 busy CPU-s/s
    assert runtime["unit_cpu_share"] == pytest.approx(4 / 4.5)
    assert runtime["unit_energy_j"] == pytest.approx(1800 * 4 / 4.5)
    assert runtime["unit_above_baseline_energy_j"] == pytest.approx(900 * 4 / 4.5)
    baseline = next(p for p in summary["phases"] if p["name"] == "[BASELINE]")
    assert baseline["above_baseline_energy_j"] is None


def test_container_energy_is_attributed_like_the_unit(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store)
    runtime = next(p for p in run_containers(store, run_id) if p.phase == "[RUNTIME]")
    web = next(c for c in runtime.containers if c.name == "web")
    # web did 3 of the machine's 4.5 busy CPU-s/s: its share is of the machine, not of the containers
    assert web.share == pytest.approx(3 / 4.5)
    assert web.attributed_energy_j == pytest.approx(1800 * 3 / 4.5)
    assert web.above_baseline_energy_j == pytest.approx(900 * 3 / 4.5)
    d = runtime.to_dict()["containers"][0]
    assert {"attributed_energy_j", "above_baseline_energy_j", "share"} <= set(d)
    assert runtime.above_baseline_energy_j == pytest.approx(900)


def test_cli_table_shows_the_three_figures_and_the_unit_share(sqlite_url: str, run_cli) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store)
    text = run_cli("runs", "show", str(run_id), "--db", sqlite_url, check=True).stdout
    for column in ("machine energy", "above baseline", "unit share", "unit energy"):
        assert column in text
    runtime = next(line for line in text.splitlines() if "[RUNTIME]" in line)
    assert "1.8 kJ" in runtime and "900 J" in runtime and "88.9 %" in runtime and "1.6 kJ" in runtime
