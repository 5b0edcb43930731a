"""What a client cannot fake: its address (X-Forwarded-For from anyone but a listed proxy), the host the pages
link to (Host), and ids that overflow the database's integers. Real uvicorn servers on loopback."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi import Request

from wattwise.cluster.queue import ClusterQueue
from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.web.app import create_app
from wattwise.web.background import BackgroundServer, free_port
from wattwise.web.deps import create_token
from wattwise.web.serving import proxy_settings

FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


def _whoami_app(url: str):  # the real app, plus one route that shows what the server believes about the client
    app = create_app(url)

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, str | None]:
        return {"client": request.client.host if request.client else None, "scheme": request.url.scheme}

    return app


def test_forwarded_headers_are_ignored_without_trusted_proxies(sqlite_url: str) -> None:
    with BackgroundServer(_whoami_app(sqlite_url)) as server:
        seen = httpx.get(server.url + "/whoami", headers=FORGED, timeout=30).json()
    assert seen == {"client": "127.0.0.1", "scheme": "http"}  # the socket's peer, not the header


def test_forwarded_headers_are_believed_only_from_a_listed_proxy(sqlite_url: str) -> None:
    with BackgroundServer(_whoami_app(sqlite_url), trusted_proxies=["127.0.0.1"]) as server:
        seen = httpx.get(server.url + "/whoami", headers=FORGED, timeout=30).json()
    assert seen == {"client": "203.0.113.9", "scheme": "https"}
    with BackgroundServer(_whoami_app(sqlite_url), trusted_proxies=["10.0.0.0/8"]) as server:  # we are not it
        seen = httpx.get(server.url + "/whoami", headers=FORGED, timeout=30).json()
    assert seen == {"client": "127.0.0.1", "scheme": "http"}


def test_trusted_proxies_must_be_addresses() -> None:
    assert proxy_settings() == {"proxy_headers": False, "forwarded_allow_ips": ""}
    assert proxy_settings(["::1", "10.1.0.0/16"]) == {"proxy_headers": True, "forwarded_allow_ips": ["::1", "10.1.0.0/16"]}
    for bad in ("*", "proxy.example", "10.0.0.300"):
        with pytest.raises(WattwiseError, match="not an IP address or network"):
            proxy_settings([bad])


def _serve(argv: list[str], tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = dict(os.environ, WATTWISE_DATA_DIR=str(tmp_path / "data"), FORWARDED_ALLOW_IPS="*")  # env must not widen it
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [*argv, "serve", "--port", str(port), "--db", str(tmp_path / "serve.db"), *extra],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # hang guard
    while True:
        try:
            httpx.get(url + "/api", timeout=5)
            return process, url, log
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"wattwise serve did not start:\n{log.read_text(errors='replace')}") from None
            time.sleep(0.1)


def _access_log_after(process: subprocess.Popen[bytes], url: str, log: Path) -> str:
    try:
        assert httpx.get(url + "/api/runs", headers=FORGED, timeout=30).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
    return log.read_text(errors="replace")


def test_wattwise_serve_takes_the_client_address_from_the_socket(wattwise_argv: list[str], tmp_path: Path) -> None:
    text = _access_log_after(*_serve(wattwise_argv, tmp_path))
    line = next(line for line in text.splitlines() if "GET /api/runs" in line)
    assert "127.0.0.1:" in line and "203.0.113.9" not in line, text
    trusted = _access_log_after(*_serve(wattwise_argv, tmp_path, "--trusted-proxy", "127.0.0.1"))
    line = next(line for line in trusted.splitlines() if "GET /api/runs" in line)
    assert "203.0.113.9" in line, trusted


def test_wattwise_serve_refuses_a_trusted_proxy_that_is_not_an_address(run_cli, tmp_path: Path) -> None:
    result = run_cli("serve", "--trusted-proxy", "*", "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2 and "--trusted-proxy '*' is not an IP address or network" in result.stderr + result.stdout


def test_host_header_is_not_reflected_into_the_pages(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = store.create_run("hostile-host")
    store.finish_run(run_id, "finished")
    with BackgroundServer(create_app(store=store)) as server:
        pages = [httpx.get(server.url + path, headers={"Host": "evil.example"}, timeout=60) for path in
                 ("/", f"/runs/{run_id}", "/compare", "/timeline", "/timeline?repo=none")]
    for page in pages:
        assert page.status_code in (200, 404) and "evil.example" not in page.text, page.url
    assert [p.status_code for p in pages] == [200, 200, 200, 200, 404]
    assert '<script src="/static/plotly.min.js">' in pages[1].text
    assert 'href="/static/style.css"' in pages[0].text


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "pg_url"])
def test_job_ids_beyond_the_database_integers_are_clear_client_errors(
    url_fixture: str, request: pytest.FixtureRequest, run_cli
) -> None:
    url = request.getfixturevalue(url_fixture)
    store = Store(url)
    token = create_token(store, "writer")
    auth = {"Authorization": f"Bearer {token}"}
    with BackgroundServer(create_app(store=store)) as server:
        for job_id in (2**63, 2**63 + 1, 2**31, 10**30):
            cancel = httpx.post(f"{server.url}/api/cluster/jobs/{job_id}/cancel", headers=auth, timeout=30)
            one = httpx.get(f"{server.url}/api/cluster/jobs/{job_id}", timeout=30)
            assert cancel.status_code == 422 and one.status_code == 422, (job_id, cancel.text, one.text)
            assert "less than or equal to 2147483647" in cancel.text
        assert httpx.get(f"{server.url}/api/cluster/jobs?offset={2**63}", timeout=30).status_code == 422
        assert httpx.get(f"{server.url}/api/cluster/machines/a%00b", timeout=30).status_code == 422
        nul = httpx.post(f"{server.url}/api/cluster/jobs", headers=auth, timeout=30,
                         json={"name": "nul", "command": ["echo", "a\u0000b"]})
        assert nul.status_code == 422 and "NUL character" in nul.text
        assert httpx.post(f"{server.url}/api/cluster/jobs/2147483647/cancel", headers=auth, timeout=30).status_code == 404
    with pytest.raises(WattwiseError, match="no cluster job with id 9223372036854775808"):
        ClusterQueue(store).jobs.cancel(2**63)
    result = run_cli("cluster", "cancel", str(2**63), "--db", url)
    assert result.returncode == 2 and "no cluster job with id 9223372036854775808" in result.stdout + result.stderr
