"""Carbon-intensity trace readers and queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wattwise.carbon.trace import CarbonTrace, TraceError, parse_time_s, read_trace
from wattwise.errors import WattwiseError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schedule"
DATA = Path(__file__).resolve().parents[2] / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
JULY_1 = 1719792000.0  # 2024-07-01T00:00:00Z


def test_electricity_maps_api_export() -> None:
    trace = read_trace(FIXTURES / "em-api-de-24h.csv")
    assert len(trace) == 24
    assert trace.zone == "DE"
    assert trace.start_s == JULY_1
    assert trace.end_s == JULY_1 + 24 * 3600  # the last hour lasts one step
    assert trace.intensity_g_per_kwh[:3].tolist() == [414.0, 427.0, 444.0]
    assert trace.at(JULY_1 + 3599) == 414.0
    assert trace.at(JULY_1 + 3600) == 427.0
    assert trace.at(trace.end_s) == trace.intensity_g_per_kwh[-1]


def test_electricity_maps_portal_export_uses_lca() -> None:
    trace = read_trace(FIXTURES / "em-portal-sample.csv")
    assert trace.intensity_g_per_kwh.tolist() == [380.0, 370.0, 360.0]
    assert trace.start_s == JULY_1
    assert trace.zone == "DE"


@pytest.mark.parametrize("name", ["plain-iso.csv", "plain-unix.csv"])
def test_plain_csv_iso_and_unix(name: str) -> None:
    trace = read_trace(FIXTURES / name)
    assert trace.times_s.tolist() == [JULY_1 + 1800 * i for i in range(4)]
    assert trace.intensity_g_per_kwh.tolist() == [100, 200, 300, 400]
    assert trace.end_s == JULY_1 + 7200


def test_mean_over_and_slots_are_exact() -> None:
    trace = read_trace(FIXTURES / "plain-iso.csv")
    # 15 min at 100 then 15 min at 200
    assert trace.mean_over(JULY_1 + 900, JULY_1 + 2700) == pytest.approx(150.0)
    assert trace.mean_over(JULY_1, JULY_1 + 7200) == pytest.approx(250.0)
    slots = trace.slots(JULY_1 + 900, 1800, 3)
    np.testing.assert_allclose(slots, [150.0, 250.0, 350.0])
    np.testing.assert_allclose(trace.slots(JULY_1, 60, 30), np.full(30, 100.0))
    assert trace.n_slots(JULY_1, 60) == 120


def test_queries_outside_the_trace_are_errors() -> None:
    trace = read_trace(FIXTURES / "plain-iso.csv")
    with pytest.raises(TraceError, match="outside the trace"):
        trace.at(JULY_1 - 1)
    with pytest.raises(TraceError, match="outside the trace"):
        trace.slots(JULY_1, 3600, 3)
    with pytest.raises(TraceError, match="t1 > t0"):
        trace.mean_over(JULY_1 + 10, JULY_1 + 10)


def test_shipped_germany_trace() -> None:
    trace = read_trace(DATA)
    assert trace.zone == "DE"
    assert len(trace) == 2176
    assert 50 < trace.intensity_g_per_kwh.min() < trace.intensity_g_per_kwh.max() < 1000
    # the export lacks 2024-09-19 16:00 … 2024-09-23 15:00; the reader reports it
    (gap,) = trace.gaps()
    assert gap == (parse_time_s("2024-09-19T15:00:00Z"), parse_time_s("2024-09-23T16:00:00Z"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad-time.csv", r"bad-time.csv:3: column 'timestamp': not an ISO 8601 time or Unix seconds: 'yesterday'"),
        ("bad-value.csv", r"bad-value.csv:3: column 'g_per_kwh' is empty"),
        ("bad-order.csv", r"bad-order.csv:3: time .* is not after the previous row's"),
        ("bad-header.csv", r"bad-header.csv:1: unknown carbon trace header 'time,intensity'"),
        ("missing.csv", r"missing.csv: carbon trace file not found"),
    ],
)
def test_errors_name_file_and_line(name: str, message: str) -> None:
    with pytest.raises(WattwiseError, match=message):
        read_trace(FIXTURES / name)


def test_negative_and_non_numeric_values(tmp_path: Path) -> None:
    path = tmp_path / "neg.csv"
    path.write_text("timestamp,g_per_kwh\n0,10\n3600,-1\n")
    with pytest.raises(TraceError, match=r"neg.csv:3: .* must be a number ≥ 0"):
        read_trace(path)
    path.write_text("timestamp,g_per_kwh\n0,ten\n")
    with pytest.raises(TraceError, match=r"neg.csv:2: .* is not a number: 'ten'"):
        read_trace(path)
    path.write_text("timestamp,g_per_kwh\n")
    with pytest.raises(TraceError, match="no data rows"):
        read_trace(path)


def test_from_samples_and_forecast_copy() -> None:
    trace = CarbonTrace.from_samples([0, 3600], [100, 300])
    assert trace.end_s == 7200
    assert trace.mean_over(1800, 5400) == pytest.approx(200.0)
    other = trace.with_intensity(np.array([1.0, 2.0]))
    assert other.mean_over(0, 7200) == pytest.approx(1.5)
    with pytest.raises(TraceError):
        CarbonTrace.from_samples([0, 0], [1, 2])


def test_parse_time() -> None:
    assert parse_time_s("1719792000") == JULY_1
    assert parse_time_s("2024-07-01T02:00:00+02:00") == JULY_1
    assert parse_time_s("2024-07-01 00:00:00") == JULY_1
    with pytest.raises(ValueError):
        parse_time_s("nan")
