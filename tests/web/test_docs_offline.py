"""`wattwise serve`'s /docs works offline: Swagger UI's files come from the server, not from a CDN."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from wattwise.store import Store
from wattwise.web.app import create_app

CHROMIUM = "/usr/bin/chromium"


def test_docs_page_loads_only_local_assets(sqlite_url: str) -> None:
    client = TestClient(create_app(store=Store(sqlite_url)))
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    for path in ("/swagger-ui/swagger-ui-bundle.js", "/swagger-ui/swagger-ui.css"):
        assert path in page.text
        asset = client.get(path)
        assert asset.status_code == 200 and len(asset.content) > 10_000
    assert client.get("/openapi.json").json()["info"]["title"] == "wattwise"


@pytest.mark.browser
def test_docs_renders_the_api_offline_in_chromium(serve, sqlite_url: str) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    server = serve(create_app(store=Store(sqlite_url)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                            "--disable-gpu"])
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{server.url}/docs")
        # Swagger UI rendered FastAPI's OpenAPI 3.1 document: the title and the operations are there
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "wattwise" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() > 10
        browser.close()
    assert [u for u in requests if not u.startswith(server.url)] == []
