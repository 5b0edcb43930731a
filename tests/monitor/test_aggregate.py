"""Aggregation on history backfilled into a real Prometheus (promtool tsdb create-blocks-from openmetrics):
a pull across midnight and an exporter restart, with figures known exactly."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from tests.monitor.conftest import start_prometheus, stop

from wattwise.monitor.aggregate import Aggregator, PromClient, PrometheusError, split_at_midnight
from wattwise.monitor.models import MonitorProjectDay, MonitorSync, MonitorUnit, MonitorUnitDay, MonitorUserDay
from wattwise.store import Store

pytestmark = [pytest.mark.prometheus]

T0 = datetime(2024, 5, 14, 23, 50, tzinfo=UTC).timestamp()  # ten minutes before midnight
MIDNIGHT = T0 + 600
END = T0 + 1200
STEP = 15
A = {"hostname": "n1", "manager": "slurm", "unit": "1", "user": "alice", "project": "astro"}
B = {"hostname": "n2", "manager": "docker", "unit": "0123456789ab", "user": "bob", "project": ""}
GIB = 2**30


def history() -> str:
    """Job A runs all along at 2 W (0.5 CPU); its exporter restarts at T0+910 (counters start again).
    Container B runs from T0+300 to T0+900 at 1 W."""
    series: dict[str, list[str]] = {m: [] for m in ("energy", "emissions", "cpu", "memory", "start")}

    def add(labels: dict[str, str], t: float, first_seen: float, watts: float) -> None:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        energy = watts * (t - first_seen)
        series["energy"].append(f"wattwise_unit_energy_joules_total{{{text}}} {energy} {t:.0f}")
        series["emissions"].append(f"wattwise_unit_emissions_grams_total{{{text}}} {energy / 1000} {t:.0f}")
        series["cpu"].append(f"wattwise_unit_cpu_seconds_total{{{text}}} {watts / 4 * (t - first_seen)} {t:.0f}")
        series["memory"].append(f"wattwise_unit_memory_used_bytes{{{text}}} {GIB} {t:.0f}")
        series["start"].append(f"wattwise_unit_start_time_seconds{{{text}}} {first_seen:.0f} {t:.0f}")

    t = T0
    while t <= END:
        add(A, t, T0 - 100 if t < T0 + 910 else T0 + 910, 2.0)
        t += STEP
    t = T0 + 300
    while t <= T0 + 900:
        add(B, t, T0 + 300, 1.0)
        t += STEP
    families = [("energy", "wattwise_unit_energy_joules", "counter"),
                ("emissions", "wattwise_unit_emissions_grams", "counter"),
                ("cpu", "wattwise_unit_cpu_seconds", "counter"),
                ("memory", "wattwise_unit_memory_used_bytes", "gauge"),
                ("start", "wattwise_unit_start_time_seconds", "gauge")]
    lines = []
    for key, name, kind in families:
        lines += [f"# HELP {name} backfilled", f"# TYPE {name} {kind}", *series[key]]
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    base = tmp_path_factory.mktemp("backfill")
    (base / "history.om").write_text(history())
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(base / "history.om"),
                    str(base / "data")], check=True, capture_output=True, timeout=120)
    process, url = start_prometheus(base, "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
                                    extra_args=("--storage.tsdb.retention.time=100y",))
    yield url
    stop(process)


def test_pull_across_midnight_and_a_restart(backfilled: str, db_url: str) -> None:
    store = Store(db_url)
    aggregator = Aggregator(store, PromClient(backfilled), step_s=STEP, lookback_s=END - (T0 - 60))
    summary = aggregator.run_once(END)
    assert summary["windows"] == 2
    with store.session() as session:
        units = {u.unit_id: u for u in session.query(MonitorUnit).all()}
        a, b = units["1"], units["0123456789ab"]
        # A: 1,400 J on its counter at midnight; after midnight the old exporter counted up to 2,000 J
        # (last sample T0+900), then the new one 580 J (T0+915 … T0+1200 at 2 W since T0+910)
        assert a.energy_j == pytest.approx(2000 + 580)
        assert a.emissions_g == pytest.approx((2000 + 580) / 1000)
        assert a.cpu_s == pytest.approx((2000 + 580) / 4)  # cpu counter = energy / 4
        assert b.energy_j == pytest.approx(600)
        assert (a.user, a.project, b.user, b.project) == ("alice", "astro", "bob", "")
        start_a = a.start_at if a.start_at.tzinfo else a.start_at.replace(tzinfo=UTC)
        end_b = b.end_at if b.end_at.tzinfo else b.end_at.replace(tzinfo=UTC)
        assert start_a.timestamp() == pytest.approx(T0 - 100)
        assert end_b.timestamp() == pytest.approx(T0 + 900)
        assert a.memory_sum_b / a.memory_samples == GIB
        day14, day15 = date(2024, 5, 14), date(2024, 5, 15)
        days = {(d.unit_pk, d.day): d.energy_j for d in session.query(MonitorUnitDay).all()}
        assert days == {(a.id, day14): pytest.approx(1400), (a.id, day15): pytest.approx(1180),
                        (b.id, day14): pytest.approx(300), (b.id, day15): pytest.approx(300)}
        users = {(d.user, d.day): (d.energy_j, d.units) for d in session.query(MonitorUserDay).all()}
        assert users[("alice", day15)] == (pytest.approx(1180), 1)
        assert users[("bob", day14)] == (pytest.approx(300), 1)
        projects = {(d.project, d.day): d.energy_j for d in session.query(MonitorProjectDay).all()}
        assert projects == {("astro", day14): pytest.approx(1400), ("astro", day15): pytest.approx(1180)}
        assert session.get(MonitorSync, backfilled).pulled_until.replace(tzinfo=UTC).timestamp() == END
    assert aggregator.run_once(END)["windows"] == 0  # nothing new
    store.close()


def test_pulls_in_steps_add_up(backfilled: str, sqlite_url: str) -> None:
    store = Store(sqlite_url)
    aggregator = Aggregator(store, PromClient(backfilled), step_s=STEP, lookback_s=END - (T0 - 60))
    aggregator.run_once(T0 + 420)  # then every 3 minutes
    for now in range(int(T0 + 600), int(END) + 1, 180):
        aggregator.run_once(now)
    aggregator.run_once(END)
    with store.session() as session:
        units = {u.unit_id: u.energy_j for u in session.query(MonitorUnit).all()}
    assert units == {"1": pytest.approx(2580), "0123456789ab": pytest.approx(600)}
    store.close()


def test_prometheus_errors(tmp_path: Path) -> None:
    with pytest.raises(PrometheusError, match="cannot reach"):
        PromClient("http://127.0.0.1:9", timeout_s=1).query("up", 0)


def test_split_at_midnight() -> None:
    assert split_at_midnight(T0, END) == [(T0, MIDNIGHT), (MIDNIGHT, END)]
    assert split_at_midnight(T0, T0 + 60) == [(T0, T0 + 60)]
    assert len(split_at_midnight(T0, T0 + 3 * 86400)) == 4
