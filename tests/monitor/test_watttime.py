"""WattTime as a grid source against a local HTTP server answering in WattTime API v3's documented formats
(login with HTTP basic auth, then /v3/forecast with the bearer token); and through the exporter's --grid."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from wattwise.carbon.live import CachedIntensity, IntensityError
from wattwise.carbon.watttime import WattTimeSource

T = datetime(2024, 5, 14, 9, 0, tzinfo=UTC).timestamp()
FORECAST = {
    "data": [{"point_time": "2024-05-14T08:55:00+00:00", "value": 900.0},
             {"point_time": "2024-05-14T09:00:00+00:00", "value": 870.2},
             {"point_time": "2024-05-14T09:05:00+00:00", "value": 640.0}],
    "meta": {"data_point_period_seconds": 300, "region": "CAISO_NORTH", "signal_type": "co2_moer",
             "units": "lbs_co2_per_mwh", "warnings": [], "model": {"date": "2024-04-01", "type": "binned_regression"},
             "generated_at_period_seconds": 300, "generated_at": "2024-05-14T09:00:00+00:00"},
}


@dataclass
class FakeWattTime:
    base_url: str = ""
    logins: int = 0
    tokens: list[str] = field(default_factory=list)  # valid tokens
    forecast: dict = field(default_factory=lambda: FORECAST)
    seen: list[tuple[str, dict[str, list[str]], str]] = field(default_factory=list)


@pytest.fixture
def watttime() -> Iterator[FakeWattTime]:
    state = FakeWattTime()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            auth = self.headers.get("Authorization", "")
            state.seen.append((url.path, parse_qs(url.query), auth))
            if url.path == "/login":
                if auth != "Basic " + base64.b64encode(b"freya:s3cret").decode():
                    self._send(403, {"error": "invalid credentials"})
                    return
                state.logins += 1
                token = f"token-{state.logins}"
                state.tokens.append(token)
                self._send(200, {"token": token})
            elif url.path == "/v3/forecast":
                if not auth.startswith("Bearer ") or auth[7:] not in state.tokens:
                    self._send(401, {"error": "token expired"})
                    return
                self._send(200, state.forecast)
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_moer_of_the_moment_in_g_per_kwh(watttime: FakeWattTime) -> None:
    source = WattTimeSource("CAISO_NORTH", "freya", "s3cret", base_url=watttime.base_url)
    reading = source.fetch(T + 60)
    # the newest point at or before now: 870.2 lbs/MWh × 453.59237 g/lb ÷ 1000 kWh/MWh
    assert reading.intensity_g_per_kwh == pytest.approx(870.2 * 0.45359237)
    assert (reading.source, reading.zone, reading.valid_at_s) == ("watttime", "CAISO_NORTH", T)
    assert "marginal" in reading.detail
    path, params, auth = watttime.seen[-1]
    assert path == "/v3/forecast" and params["region"] == ["CAISO_NORTH"] and params["signal_type"] == ["co2_moer"]
    assert auth == "Bearer token-1"
    assert source.fetch(T - 3600).intensity_g_per_kwh == pytest.approx(900.0 * 0.45359237)  # before all: first
    assert watttime.logins == 1  # the token is reused


def test_an_expired_token_logs_in_again(watttime: FakeWattTime) -> None:
    source = WattTimeSource("CAISO_NORTH", "freya", "s3cret", base_url=watttime.base_url)
    source.fetch(T)
    watttime.tokens.clear()  # the server forgot it
    assert source.fetch(T).intensity_g_per_kwh > 0
    assert watttime.logins == 2


def test_clear_errors(watttime: FakeWattTime) -> None:
    with pytest.raises(IntensityError, match="login refused"):
        WattTimeSource("CAISO_NORTH", "freya", "wrong", base_url=watttime.base_url).fetch(T)
    with pytest.raises(IntensityError, match="no account"):
        WattTimeSource("CAISO_NORTH", "", "", base_url=watttime.base_url).fetch(T)
    watttime.forecast = {"data": [], "meta": {"units": "lbs_co2_per_mwh"}}
    with pytest.raises(IntensityError, match="no data points for CAISO_NORTH"):
        WattTimeSource("CAISO_NORTH", "freya", "s3cret", base_url=watttime.base_url).fetch(T)
    watttime.forecast = {"data": [{"point_time": "2024-05-14T09:00:00Z", "value": 1}], "meta": {"units": "percent"}}
    with pytest.raises(IntensityError, match="unknown units 'percent'"):
        WattTimeSource("CAISO_NORTH", "freya", "s3cret", base_url=watttime.base_url).fetch(T)
    # behind the cache, a failing WattTime falls back to the static factor, marked stale
    from wattwise.carbon.live import StaticSource

    cached = CachedIntensity(WattTimeSource("CAISO_NORTH", "freya", "wrong", base_url=watttime.base_url),
                             fallback=StaticSource.for_country("US"))
    reading = cached.current(T)
    assert reading.stale and reading.source == "static"


def test_exporter_cli_uses_watttime(watttime: FakeWattTime, run_cli, tmp_path, monkeypatch) -> None:
    import shutil

    from tests.monitor.conftest import FIXTURES, parse_samples

    root = tmp_path / "tree"
    shutil.copytree(FIXTURES / "slurm-v1" / "before", root)
    monkeypatch.setenv("WATTTIME_USERNAME", "freya")
    monkeypatch.setenv("WATTTIME_PASSWORD", "s3cret")
    done = run_cli("exporter", "--once", "--interval", "0", "--mountinfo", str(root / "mountinfo"),
                   "--cgroup-root", str(root / "cgroup"), "--proc-root", str(root / "proc"), "--powercap-root",
                   str(root / "powercap"), "--ipmi", "off", "--no-gpu", "--grid", "watttime:CAISO_NORTH",
                   "--grid-url", watttime.base_url, check=True)
    grid = {dict(k)["source"]: v for (n, k), v in parse_samples(done.stdout).items()
            if n == "wattwise_grid_intensity_grams_per_kwh"}
    # the fake's points are from 2024: the newest one before now
    assert grid == {"watttime": pytest.approx(640.0 * 0.45359237)}
