"""End to end in headless Chromium (Debian's): the dashboard served by a real uvicorn on loopback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wattwise.analysis.synthetic import scenario_run, simple_run
from wattwise.store import Store
from wattwise.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (Debian package chromium, see scripts/test-packages.txt)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def test_run_page_renders_charts_and_compare_page(browser, serve, sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url)
    run_id = scenario_run(store, sci={"TE": 1_000_000, "R_d": "request"})
    a = [simple_run(store, e) for e in (100, 102, 99)]
    b = [simple_run(store, e) for e in (130, 128, 131)]
    server = serve(create_app(store=store))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))

    page.goto(f"{server.url}/")
    assert page.locator("#runs tbody tr").count() == 7

    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_selector("#charts[data-rendered]", timeout=30_000)
    # network_tx_b is zero throughout: listed under the charts, not drawn
    metrics = len(store.metrics(run_id)) - 1
    assert page.get_attribute("#charts", "data-series") == str(metrics)
    charts = int(page.get_attribute("#charts", "data-rendered") or 0)
    assert charts == metrics
    # Plotly drew an SVG per chart with the line and the phase bands; human titles
    assert page.locator("#charts .ww-chart .main-svg").count() >= charts
    assert page.locator("#charts .ww-chart .scatterlayer .trace").count() >= charts
    assert "CPU use of web (CPU cores)" in page.inner_text("#charts")
    assert page.locator("#charts .ww-chart .shapelayer path").count() > 0
    assert "load + query" in page.inner_text("#phases")
    assert "web" in page.inner_text("table.containers")
    assert page.locator("#containers-chart .main-svg").count() >= 1
    assert "listening on :80" in page.inner_text("#logs")
    shot = tmp_path / "run.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("WATTWISE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["WATTWISE_SCREENSHOT_DIR"]) / "run-page.png")

    # zooming (as a drag-zoom does, through Plotly's relayout) fetches finer data for the window
    with page.expect_response(lambda r: "start_us=" in r.url and "/measurements" in r.url, timeout=15_000):
        page.evaluate(
            "() => { Plotly.relayout(document.querySelector('#charts .ww-chart'), {'xaxis.range': [12, 20]}); }"
        )
    page.wait_for_function(
        "document.querySelector('#charts .ww-chart').layout.xaxis.range[0] === 12", timeout=15_000
    )

    query = "&".join([*(f"runs={i}" for i in a), *(f"vs={i}" for i in b)])
    page.goto(f"{server.url}/compare?{query}")
    page.wait_for_selector("#compare-charts[data-rendered]")
    table = page.inner_text("#compare")
    assert "significant" in table
    assert page.locator("#compare-charts .main-svg").count() >= 3
    # the table fits a 1,400 px window; the runs' power is overlaid per phase (3 + 3 runs in [RUNTIME])
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert page.evaluate("document.getElementById('compare').getBoundingClientRect().right") <= 1400
    assert page.get_attribute("#overlay-chart", "data-traces") == "6"
    assert "machine energy (J)" in table
    shot = tmp_path / "compare.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("WATTWISE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["WATTWISE_SCREENSHOT_DIR"]) / "compare-page.png")
    assert not errors, errors
    assert not failed, failed
