"""Live forecasts (UK Carbon Intensity, Electricity Maps) read from a local server that answers in their documented
formats, and a plan made on one (`slurm submit --dry-run`: nothing is submitted)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from wattwise.carbon.live_forecast import read_carbon
from wattwise.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm-checkpoint"
T0 = 1_798_000_200  # a whole half hour (2026-12-23T05:30Z)
HALF_HOUR = 1800
#: 48 half-hourly forecast values: dirty, then a clean stretch from 03:00 to 05:00 after T0, then dirty
UK_VALUES = [300.0] * 6 + [40.0] * 4 + [320.0] * 38


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")


class FakeApis(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/intensity/") and self.path.endswith("/fw48h"):
            body = {"data": [{"from": _iso(T0 + i * HALF_HOUR), "to": _iso(T0 + (i + 1) * HALF_HOUR),
                              "intensity": {"forecast": v, "actual": None, "index": "moderate"}}
                             for i, v in enumerate(UK_VALUES)]}
        elif self.path.startswith("/regional/intensity/") and "/fw48h/postcode/RG10" in self.path:
            body = {"data": {"regionid": 12, "shortname": "South England", "postcode": "RG10",
                             "data": [{"from": _iso(T0), "to": _iso(T0 + HALF_HOUR),
                                       "intensity": {"forecast": 123, "index": "moderate"}, "generationmix": []}]}}
        elif self.path.startswith("/v3/carbon-intensity/forecast?zone=DE"):
            body = {"zone": "DE", "forecast": [{"carbonIntensity": 400 - 10 * i, "datetime": _iso(T0 + 3600 * i)}
                                               for i in range(24)], "updatedAt": _iso(T0)}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def apis(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakeApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("WATTWISE_UKCI_URL", url)
    monkeypatch.setenv("WATTWISE_ELECTRICITYMAPS_URL", url)
    yield url
    server.shutdown()
    server.server_close()


def test_uk_and_electricity_maps_forecasts_become_traces(apis: str) -> None:
    uk = read_carbon("ukci", now_s=T0)
    assert uk.start_s == T0 and uk.end_s == T0 + 48 * HALF_HOUR
    assert uk.at(T0 + 7 * HALF_HOUR) == 40.0 and uk.source == "ukci"
    assert uk.mean_over(T0, T0 + 2 * HALF_HOUR) == pytest.approx(300.0)
    region = read_carbon("ukci:RG10", now_s=T0)
    assert region.at(T0) == 123.0 and region.source == "ukci:RG10"
    de = read_carbon("electricitymaps:DE", now_s=T0)
    assert de.at(T0 + 3600 * 5) == 350.0 and de.end_s == T0 + 24 * 3600  # the last point lasts one step


def test_unknown_or_forecastless_sources_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="publishes no carbon-intensity forecast"):
        read_carbon("rte")
    with pytest.raises(ConfigError, match="no such file, and not a live forecast"):
        read_carbon("/nonexistent/forecast.csv")


def test_a_plan_on_the_live_uk_forecast(apis: str, run_cli, tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"startup": [{"name": "start", "duration_s": 600, "power_w": 150}],
                                 "work": [{"name": f"epoch {i}", "duration_s": 1800, "power_w": 300,
                                           "is_checkpoint": True} for i in range(4)]}))
    out = run_cli("slurm", "submit", "--model", str(model), "--policy", "suspend-resume", "--slot", "30min",
                  "--carbon", "ukci", "--wait-hours", "12", "--now", str(T0), "--dry-run", "--json", "--",
                  str(EXAMPLE / "job.sbatch"), env={"WATTWISE_UKCI_URL": apis}, check=True)
    plan = json.loads(out.stdout)["plan"]
    assert plan["settings"]["carbon_source"] == "ukci"
    # the four epochs in the four clean slots (6-9), the startup just before them: one run, no restart
    assert [round((s["begin_s"] - T0) / HALF_HOUR) for s in plan["segments"]] == [5]
    assert plan["carbon_g"] < plan["agnostic_carbon_g"]
