"""`wattwise report`: a self-contained HTML file, checked as text and opened offline in headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from wattwise.analysis.synthetic import scenario_run
from wattwise.store import Store

CHROMIUM = "/usr/bin/chromium"


def test_report_is_self_contained(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run_id = scenario_run(Store(f"sqlite:///{db}"))
    out = tmp_path / "report.html"
    result = run_cli("report", str(run_id), "-o", str(out), "--points", "50", "--db", str(db), check=True)
    assert str(out) in result.stdout
    html = out.read_text()
    assert "wattwise.renderRun" in html and "Plotly.newPlot" not in html.split("function renderSvg")[1]
    assert "load + query" in html and "listening on :80" in html and "query starts" in html
    # the page's markup loads nothing from elsewhere (the browser test checks that no request is made)
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    assert "<script>" in html and not re.search(r"<script[^>]*\ssrc=", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)
    assert "ipmi_power_w[machine]" in html and "cgroup_cpu_time_s[web]" in html
    missing = run_cli("report", "999", "-o", str(tmp_path / "x.html"), "--db", str(db))
    assert missing.returncode == 2 and "no run with id 999" in missing.stderr


@pytest.mark.browser
def test_report_renders_offline_in_chromium(run_cli, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    db = tmp_path / "r.db"
    store = Store(f"sqlite:///{db}")
    run_id = scenario_run(store)
    out = tmp_path / "report.html"
    run_cli("report", str(run_id), "-o", str(out), "--db", str(db), check=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_selector("#charts[data-rendered]", timeout=30_000)
        # network_tx_b is zero throughout: listed, not drawn
        metrics = len(store.metrics(run_id))
        assert page.get_attribute("#charts", "data-series") == str(metrics - 1)
        charts = int(page.get_attribute("#charts", "data-rendered") or 0)
        assert page.locator("#charts svg.ww-svg").count() == charts == metrics - 1
        assert page.locator("#charts svg.ww-svg path").count() >= charts
        assert "Network sent" in (page.text_content("#charts details.ww-zero") or "")
        assert "Machine power at the wall (IPMI) (W)" in page.inner_text("#charts")
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
    assert [r for r in requests if not r.startswith("file:")] == []
    assert not errors
