"""Dashboard pages: ≈ on the compare page, the energy figures and grouped warnings on the run page."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from wattwise.analysis.synthetic import T0, add_series, scenario_run
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store
from wattwise.web.app import create_app


def _estimated_run(store: Store, power_w: float) -> int:
    run_id = store.create_run("guess", settings={"intensity_g_per_kwh": 300.0, "pue": 1.0})
    t = np.linspace(0, 10, 11)
    add_series(store, run_id, MetricSpec("estimated_power_w", "W", Kind.GAUGE, "machine"), t, np.full_like(t, power_w))
    store.add_phase(run_id, "[RUNTIME]", T0, T0 + 10_000_000)
    store.finish_run(run_id, "finished")
    return run_id


def test_compare_page_marks_estimated_figures(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    a = [_estimated_run(store, p) for p in (50, 51, 52)]
    b = [_estimated_run(store, p) for p in (60, 61, 62)]
    client = TestClient(create_app(store=store))
    page = client.get("/compare", params={"a": ",".join(map(str, a)), "b": ",".join(map(str, b))}).text
    table = page[page.index('<table id="compare"'):page.index("</table>", page.index('<table id="compare"'))]
    assert '<span class="approx">≈</span>510' in table and "machine energy (J)" in table
    assert "duration (s)" in table and '<span class="approx">≈</span>10' not in table  # durations are measured
    assert '"estimated": true' in page and 'id="overlay-chart"' in page


def test_run_page_names_the_energy_figures_and_groups_warnings(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store)
    store.update_run(run_id, warnings=["provider gpu: read failed: gone", "provider gpu: read failed: gone"])
    client = TestClient(create_app(store=store))
    page = client.get(f"/runs/{run_id}").text
    for header in ("machine energy", "above baseline", "unit share", "unit energy"):
        assert header in page
    assert page.index('id="phases"') < page.index('<details class="warnings"') < page.index("<h2>Measurements")
    assert "1 provider" in page and "providers" not in page.split("<h2>Measurements")[0]  # the repeated warning is listed once
    assert "attributed energy" in page and "share of machine CPU" in page
