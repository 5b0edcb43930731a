"""The monthly report (JSON, CSV, HTML) on real SQLite and PostgreSQL, with the carbon-aware oracle's saving
checked by hand on a two-level trace."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.monitor.test_api import ACCESS, TODAY, populate

from wattwise.carbon.trace import CarbonTrace
from wattwise.monitor.access import AccessConfig
from wattwise.monitor.api import create_app
from wattwise.store import Store

DAY0 = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC).timestamp()
# TODAY: 400 g/kWh from midnight to noon, 100 g/kWh from noon to midnight
TRACE = CarbonTrace(np.array([DAY0 + h * 3600 for h in range(24)]),
                    np.array([400.0] * 12 + [100.0] * 12), DAY0 + 24 * 3600, "XX", "test")


@pytest.fixture
def api(db_url: str):
    store = Store(db_url)
    populate(store)
    client = TestClient(create_app(store, AccessConfig.from_dict(ACCESS), today=lambda: TODAY, carbon_trace=TRACE,
                                   report_wait_h=12.0))
    yield client
    store.close()


def test_oracle_saving_by_hand(api) -> None:
    body = api.get("/api/v1/report/monthly", params={"month": "2024-05"}, headers={"X-Grafana-User": "alice"}).json()
    rows = {r["unit"]: r for r in body["units"]}
    assert sorted(rows) == ["100", "101"]
    job = rows["100"]  # 3600 J = 0.001 kWh over 08:00–10:00 TODAY
    assert job["energy_kwh"] == pytest.approx(0.001) and job["duration_h"] == pytest.approx(2.0)
    assert job["emissions_g"] == 1.0  # as stored
    assert job["trace_emissions_g"] == pytest.approx(0.001 * 400)
    assert job["best_start"] == datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC).isoformat()
    assert job["best_emissions_g"] == pytest.approx(0.001 * 100)
    assert job["saving_g"] == pytest.approx(0.3)
    assert rows["101"]["saving_g"] is None  # the day before the trace: no oracle


def test_csv_and_html(api) -> None:
    alice = {"X-Grafana-User": "alice"}
    response = api.get("/api/v1/report/monthly", params={"month": "2024-05", "format": "csv"}, headers=alice)
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="wattwise-alice-2024-05.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["unit"] for r in rows] == ["101", "100"]  # by start
    assert float(rows[1]["saving_g"]) == pytest.approx(0.3) and rows[0]["saving_g"] == ""
    page = api.get("/api/v1/report/monthly", params={"month": "2024-05", "format": "html"}, headers=alice).text
    assert "<h1>alice: 2024-05</h1>" in page and "≈ 0.3 g CO2e could have been saved" in page
    assert "1 of 2 units within the carbon trace" in page


def test_access_and_errors(api) -> None:
    alice = {"X-Grafana-User": "alice"}
    assert api.get("/api/v1/report/monthly", params={"user": "bob"}, headers=alice).status_code == 403
    bob = api.get("/api/v1/report/monthly", params={"user": "bob", "month": "2024-05"},
                  headers={"X-Grafana-User": "ops"}).json()
    assert sorted(r["unit"] for r in bob["units"]) == ["200", "201"]
    assert api.get("/api/v1/report/monthly", params={"month": "May"}, headers=alice).status_code == 422
    assert api.get("/api/v1/report/monthly", headers=alice).json()["month"] == "2024-05"  # this month
    assert api.get("/api/v1/report/monthly", params={"month": "2024-04"}, headers=alice).json()["units"] == []
    assert api.get("/api/v1/report/monthly").status_code == 401
