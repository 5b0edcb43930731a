"""`monitor-proxy` in front of several real Prometheus servers (the Debian `prometheus`, each scraping itself so
that the answer says which server gave it): routed by the time range a query reads, replicas in turn, and the
per-user guard still applied before any server is asked."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.monitor.conftest import free_port

from wattwise.errors import ConfigError
from wattwise.monitor.access import AccessConfig
from wattwise.monitor.proxy import create_proxy
from wattwise.monitor.routing import Backend, Router, oldest_read_s, parse_duration

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

ACCESS = AccessConfig.from_dict({"admins": ["ops"], "trusted_header": "X-Grafana-User"})


def _start(base: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Debian prometheus package is not installed")
    port = free_port()
    directory = base / name
    directory.mkdir()
    (directory / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n")
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", "--storage.tsdb.retention.time=2h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    base = tmp_path_factory.mktemp("proms")
    started = [_start(base, name) for name in ("a", "b", "c")]
    try:
        deadline = time.monotonic() + 60  # hang guard
        for process, url in started:
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"prometheus exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                try:
                    result = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2).json()
                    if result["data"]["result"]:
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus at {url} had no scrape within 60 s")
                time.sleep(0.2)
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(timeout=20)


def _instance(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    result = response.json()["data"]["result"]
    assert len(result) == 1, result
    return "http://" + result[0]["metric"]["instance"]


def test_queries_go_to_the_server_holding_their_range(servers: list[str]) -> None:
    short, long_a, long_b = servers
    app = create_proxy([f"{short}#retention=1h", f"{long_a}#retention=30d", f"{long_b}#retention=30d"], ACCESS)
    ops = {"X-Grafana-User": "ops"}
    now = time.time()
    with TestClient(app) as proxy:
        # recent: the short-retention server
        assert _instance(proxy.get("/api/v1/query", params={"query": "up"}, headers=ops)) == short
        assert _instance(proxy.get("/api/v1/query", params={"query": "max_over_time(up[30m])"}, headers=ops)) == short
        # a window reaching past an hour: the long-term servers, in turn
        answered = [_instance(proxy.get("/api/v1/query", params={"query": "max_over_time(up[2h])"}, headers=ops))
                    for _ in range(4)]
        assert answered == [long_a, long_b, long_a, long_b]
        # an evaluation time or a range start two hours back, an offset, a POSTed form: the same rule
        old = proxy.get("/api/v1/query", params={"query": "up", "time": str(now - 7200)}, headers=ops)
        assert old.status_code == 200 and old.json()["data"]["result"] == []  # nothing that old, but asked there
        ranged = proxy.get("/api/v1/query_range", headers=ops, params={
            "query": "up", "start": str(now - 60), "end": str(now), "step": "15"})
        assert {"http://" + r["metric"]["instance"] for r in ranged.json()["data"]["result"]} == {short}
        offset = proxy.post("/api/v1/query", data={"query": "max_over_time(up[5m] offset 1d)"}, headers=ops)
        assert offset.status_code == 200
        bad = proxy.get("/api/v1/query", params={"query": "up", "time": "yesterday"}, headers=ops)
        assert bad.status_code == 400 and "cannot read the time" in bad.json()["error"]


def test_replicas_take_turns_and_the_guard_comes_first(servers: list[str]) -> None:
    replicas = servers[:2]
    app = create_proxy(replicas, ACCESS)
    dave = {"X-Grafana-User": "dave"}
    with TestClient(app) as proxy:
        answered = [_instance(proxy.get("/api/v1/query", params={"query": "up"}, headers={"X-Grafana-User": "ops"}))
                    for _ in range(4)]
        assert answered == [replicas[0], replicas[1], replicas[0], replicas[1]]
        # a non-admin: refused before any server is asked, on every replica's turn
        for _ in range(3):
            assert proxy.get("/api/v1/query", params={"query": "up"}, headers=dave).status_code == 403
        own = proxy.get("/api/v1/query", params={"query": 'wattwise_unit_power_watts{user="dave"}'}, headers=dave)
        assert own.status_code == 200 and own.json()["data"]["result"] == []
        # admin-only endpoints go to the longest-retention servers (both here), in turn
        assert proxy.get("/api/v1/targets", headers={"X-Grafana-User": "ops"}).status_code == 200


def test_routing_rules_by_hand() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("15d") == 15 * 86400 and parse_duration("90") == 90
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("1 hour")
    assert oldest_read_s("rate(x[5m])", 1000.0) == 700.0
    assert oldest_read_s("max_over_time(rate(x[1m])[1h:5m]) offset 10m", 10_000.0) == 10_000.0 - 3600 - 600
    assert oldest_read_s("x @ 500", 1000.0) == 500.0
    router = Router([Backend.parse("http://s:9090#retention=1d"), Backend.parse("http://l:9090")])
    assert router.choose("/api/v1/query", {"query": "x[12h]"}, now=100_000).url == "http://s:9090"
    assert router.choose("/api/v1/query", {"query": "x[2d]"}, now=300_000).url == "http://l:9090"
    assert router.choose("/api/v1/targets", {}, now=0).url == "http://l:9090"
    only_short = Router([Backend.parse("http://a:1#retention=1h"), Backend.parse("http://b:1#retention=2h")])
    assert only_short.for_oldest(0.0, now=1e9).url == "http://b:1"  # nobody reaches back: the longest
    with pytest.raises(ConfigError, match="only option after # is retention"):
        Backend.parse("http://a:1#ttl=2h")
