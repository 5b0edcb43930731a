"""Live grid intensity providers against a local HTTP server replaying their documented responses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from wattwise.carbon.live import (
    CachedIntensity,
    ElectricityMapsSource,
    IntensityError,
    RteEco2mixSource,
    StaticSource,
    TraceSource,
    UkCarbonIntensitySource,
    make_source,
)
from wattwise.carbon.static import country_factor
from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import ConfigError

GRID = Path(__file__).resolve().parents[1] / "fixtures" / "monitor" / "grid"


@dataclass
class Replay:
    """What the server answers: path → (status, body); every request is logged."""

    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    base_url: str = ""

    def serve(self, path: str, fixture: str | None = None, status: int = 200, body: bytes | None = None) -> None:
        self.routes[path] = (status, body if body is not None else (GRID / fixture).read_bytes())  # type: ignore[operator]


@pytest.fixture
def replay() -> Iterator[Replay]:
    state = Replay()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            state.requests.append((url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}))
            status, body = state.routes.get(url.path, (404, b'{"error": "not found"}'))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_electricity_maps_latest(replay: Replay) -> None:
    replay.serve("/v3/carbon-intensity/latest", "electricitymaps_latest.json")
    source = ElectricityMapsSource("DE", token="secret-token", base_url=replay.base_url)
    reading = source.fetch(1_716_300_000.0)
    assert reading.intensity_g_per_kwh == 302
    assert reading.zone == "DE" and reading.source == "electricitymaps"
    assert reading.valid_at_s == pytest.approx(1716300000.0)  # 2024-05-21T14:00:00Z
    _, query, headers = replay.requests[0]
    assert query == {"zone": ["DE"]}
    assert headers["auth-token"] == "secret-token"


def test_rte_eco2mix(replay: Replay) -> None:
    replay.serve(RteEco2mixSource.DATASET_PATH, "rte_eco2mix_records.json")
    reading = RteEco2mixSource(base_url=replay.base_url).fetch(0.0)
    assert reading.intensity_g_per_kwh == 21 and reading.zone == "FR"
    _, query, _ = replay.requests[0]
    assert query["select"] == ["date_heure,taux_co2"]
    assert query["order_by"] == ["date_heure desc"] and query["limit"] == ["1"]


def test_uk_carbon_intensity_national_regional_and_forecast_only(replay: Replay) -> None:
    replay.serve("/intensity", "ukci_intensity.json")
    replay.serve("/regional/postcode/RG10", "ukci_regional_postcode.json")
    national = UkCarbonIntensitySource(base_url=replay.base_url).fetch(0.0)
    assert national.intensity_g_per_kwh == 263 and "actual" in national.detail
    regional = UkCarbonIntensitySource("RG10", base_url=replay.base_url).fetch(0.0)
    assert regional.intensity_g_per_kwh == 143 and regional.zone == "GB:RG10"
    assert "forecast" in regional.detail
    replay.serve("/intensity", "ukci_intensity_forecast_only.json")
    assert UkCarbonIntensitySource(base_url=replay.base_url).fetch(0.0).intensity_g_per_kwh == 251


@pytest.mark.parametrize(("status", "body", "message"), [
    (500, b"internal error", "HTTP 500"),
    (200, b"<html>maintenance</html>", "did not answer JSON"),
    (200, b'{"zone": "DE"}', "no carbonIntensity"),
    (200, b'{"zone": "DE", "carbonIntensity": "high"}', "not a number"),
    (200, b'{"zone": "DE", "carbonIntensity": -5}', "≥ 0"),
])
def test_bad_answers_raise_intensity_errors(replay: Replay, status: int, body: bytes, message: str) -> None:
    replay.serve("/v3/carbon-intensity/latest", status=status, body=body)
    with pytest.raises(IntensityError, match=message):
        ElectricityMapsSource("DE", token="t", base_url=replay.base_url).fetch(0.0)


def test_unreachable_server() -> None:
    with pytest.raises(IntensityError, match="cannot reach"):
        UkCarbonIntensitySource(base_url="http://127.0.0.1:9", timeout_s=1).fetch(0.0)


def test_cache_last_good_and_fallback(replay: Replay) -> None:
    replay.serve("/intensity", "ukci_intensity.json")
    fallback = StaticSource.for_country("GB")
    cached = CachedIntensity(UkCarbonIntensitySource(base_url=replay.base_url), ttl_s=600, fallback=fallback)
    first = cached.current(1000.0)
    assert first.intensity_g_per_kwh == 263 and not first.stale
    assert cached.current(1500.0) == first  # within the TTL: no request
    assert len(replay.requests) == 1
    replay.serve("/intensity", status=503, body=b"down")
    stale = cached.current(1700.0)  # expired, the API fails: the last good value, marked stale
    assert stale.intensity_g_per_kwh == 263 and stale.stale
    assert len(replay.requests) == 2 and cached.failures == 1 and "HTTP 503" in (cached.last_error or "")
    replay.serve("/intensity", "ukci_intensity_forecast_only.json")
    fresh = cached.current(2400.0)
    assert fresh.intensity_g_per_kwh == 251 and not fresh.stale


def test_fallback_when_never_fetched(replay: Replay) -> None:
    replay.serve("/intensity", status=500, body=b"")
    cached = CachedIntensity(UkCarbonIntensitySource(base_url=replay.base_url), ttl_s=60,
                             fallback=StaticSource.for_country("GB"))
    reading = cached.current(0.0)
    assert reading.stale and reading.source == "static"
    assert reading.intensity_g_per_kwh == country_factor("GB").intensity_g_per_kwh
    with pytest.raises(IntensityError):
        CachedIntensity(UkCarbonIntensitySource(base_url=replay.base_url)).current(0.0)


def test_non_blocking_refresh_returns_the_cached_value(replay: Replay) -> None:
    replay.serve("/intensity", "ukci_intensity.json")
    cached = CachedIntensity(UkCarbonIntensitySource(base_url=replay.base_url), ttl_s=10)
    assert cached.current(0.0, block=False).intensity_g_per_kwh == 263  # nothing cached yet: blocks once
    replay.serve("/intensity", "ukci_intensity_forecast_only.json")
    assert cached.current(100.0, block=False).intensity_g_per_kwh == 263  # expired: refresh in background
    for _ in range(200):
        if cached.fetches == 2 and not cached._refreshing:
            break
        threading.Event().wait(0.01)
    assert cached.current(101.0, block=False).intensity_g_per_kwh == 251


def test_static_and_trace_behind_the_same_interface(tmp_path: Path) -> None:
    static = CachedIntensity(make_source("static:FR"))
    assert static.current(0.0).intensity_g_per_kwh == country_factor("FR").intensity_g_per_kwh
    assert make_source("static:123").fetch(0.0).intensity_g_per_kwh == 123
    trace = CarbonTrace.from_samples([0.0, 3600.0], [100.0, 300.0], zone="DE")
    cached = CachedIntensity(TraceSource(trace), ttl_s=0, fallback=StaticSource.for_country("DE"))
    assert cached.current(10.0).intensity_g_per_kwh == 100
    assert cached.current(4000.0).intensity_g_per_kwh == 300
    outside = cached.current(99_999.0)  # after the trace: last good value, stale
    assert outside.stale and outside.intensity_g_per_kwh == 300
    csv = tmp_path / "trace.csv"
    csv.write_text("timestamp,g_per_kwh\n1970-01-01T00:00:00Z,50\n1970-01-01T01:00:00Z,70\n")
    assert make_source(f"trace:{csv}").fetch(4000.0).intensity_g_per_kwh == 70


def test_make_source_errors() -> None:
    with pytest.raises(ConfigError, match="unknown grid intensity source"):
        make_source("wattime:CAISO")
    with pytest.raises(ConfigError, match="needs a zone"):
        make_source("electricitymaps")
    with pytest.raises(ConfigError, match="no grid intensity for country"):
        make_source("static:Atlantis")
    assert json.loads((GRID / "electricitymaps_latest.json").read_text())["zone"] == "DE"
