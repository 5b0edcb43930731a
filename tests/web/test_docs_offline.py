"""`wattwise serve`'s /docs works offline: Swagger UI's files come from the server, not from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from wattwise.store import Store
from wattwise.web.app import create_app


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
