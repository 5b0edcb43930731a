"""Pull per-unit aggregates from Prometheus (PromQL over the HTTP API) into the wattwise database.

Each pull covers the window from where the previous one ended to now, cut at UTC midnights so that
every piece belongs to one day. For each piece ``[a, b]`` (``W = b − a``) it evaluates at ``b``::

    max by (hostname, manager, unit, user, project) (last_over_time(wattwise_unit_energy_joules_total[W]))
    … the same for wattwise_unit_emissions_grams_total and wattwise_unit_cpu_seconds_total
    … avg_over_time and count_over_time of wattwise_unit_memory_used_bytes
    … last_over_time and min_over_time of wattwise_unit_start_time_seconds
    max by (…) (max_over_time(timestamp(wattwise_unit_energy_joules_total)[W:step]))   (last sample time)

and turns the cumulative counters into increments against the values stored at the previous pull:
``increment = value − previous``. When the exporter restarted in the window (its first-seen time of the
unit changed), the increment is what the old exporter counted since the previous pull (its last value
before the restart, queried with ``@``) plus the new counter. A unit met for the first time contributes
its whole counter. The increments are added to the unit, to its day, and to its user's and project's
day. A unit's start is the earliest first-seen time reported, its end the time of its last sample;
mean CPUs = CPU seconds / duration, mean memory = mean of the scraped memory values. Energy used between
an exporter's last scrape and its restart is not seen (Prometheus never received it).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from wattwise.errors import ConfigError, WattwiseError
from wattwise.errors import PrometheusError as PrometheusError
from wattwise.monitor.models import (
    MonitorProjectDay,
    MonitorSync,
    MonitorUnit,
    MonitorUnitDay,
    MonitorUserDay,
)
from wattwise.store import Store

log = logging.getLogger(__name__)

KEY_LABELS = ("hostname", "manager", "unit", "user", "project")
BY = "hostname, manager, unit, user, project"


class PromClient:
    """The instant-query part of the Prometheus HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = headers or {}

    def query(self, promql: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series of an instant vector result."""
        import httpx

        url = f"{self.base_url}/api/v1/query"
        try:
            response = httpx.post(url, data={"query": promql, "time": f"{at_s:.3f}"}, headers=self.headers,
                                  timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.base_url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"{url} answered HTTP {response.status_code} without JSON: "
                                  f"{response.text[:200]!r}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus rejected {promql!r}: {body.get('error') or response.status_code}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"expected an instant vector from {promql!r}, got {data.get('resultType')}")
        result = []
        for item in data.get("result", []):
            value = float(item["value"][1])
            if math.isfinite(value):
                result.append((item.get("metric", {}), value))
        return result


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def split_at_midnight(start_s: float, end_s: float) -> list[tuple[float, float]]:
    """[start, end] cut at every UTC midnight inside it."""
    pieces = []
    a = start_s
    while a < end_s:
        day = _ts(a).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        b = min(end_s, midnight.timestamp())
        pieces.append((a, b))
        a = b
    return pieces


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _range(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass
class _Series:
    energy_j: float | None = None
    emissions_g: float | None = None
    cpu_s: float | None = None
    memory_avg_b: float | None = None
    memory_count: int = 0
    start_s: float | None = None  # the exporter's current first-seen time
    first_start_s: float | None = None  # the earliest first-seen time in the window
    last_sample_s: float | None = None


class Aggregator:
    def __init__(self, store: Store, client: PromClient, *, step_s: float = 15.0,
                 lookback_s: float = 86400.0, clock: Callable[[], float] | None = None, cluster: str = "") -> None:
        """`cluster`: the name stored with every unit pulled from this Prometheus (one Prometheus per cluster)."""
        import time

        from wattwise.monitor import models  # noqa: F401 - the tables must be known to the ORM

        self.store = store
        self.client = client
        self.cluster = cluster
        self.step_s = step_s
        self.lookback_s = lookback_s
        self.clock = clock or time.time
        self._lock = threading.Lock()
        self.last_summary: dict[str, Any] | None = None
        self.last_error: str | None = None

    def run_once(self, now_s: float | None = None) -> dict[str, Any]:
        """Pull everything since the previous pull (or `lookback_s`) up to now; returns a summary."""
        with self._lock:
            now_s = math.floor(self.clock() if now_s is None else now_s)
            with self.store.session() as session:
                sync = session.get(MonitorSync, self.client.base_url)
                pulled = _aware(sync.pulled_until) if sync else None
                start_s = pulled.timestamp() if pulled is not None else now_s - self.lookback_s
            summary: dict[str, Any] = {"from": _ts(start_s).isoformat(), "to": _ts(now_s).isoformat(),
                                       "units": 0, "energy_j": 0.0, "emissions_g": 0.0, "windows": 0}
            if now_s <= start_s:
                return summary
            for a, b in split_at_midnight(start_s, now_s):
                units, energy, emissions = self._pull_window(a, b)
                summary["units"] += units
                summary["energy_j"] += energy
                summary["emissions_g"] += emissions
                summary["windows"] += 1
                with self.store.session() as session:  # progress is saved per window
                    sync = session.get(MonitorSync, self.client.base_url)
                    if sync is None:
                        session.add(MonitorSync(source=self.client.base_url, pulled_until=_ts(b)))
                    else:
                        sync.pulled_until = _ts(b)
                        sync.updated_at = datetime.now(UTC)
            self.last_summary = summary
            return summary

    def _query(self, expression: str, at_s: float) -> dict[tuple[str, ...], float]:
        return {tuple(labels.get(k, "") for k in KEY_LABELS): value
                for labels, value in self.client.query(expression, at_s)}

    def _pull_window(self, a: float, b: float) -> tuple[int, float, float]:
        w = _range(b - a)
        step = _range(self.step_s)
        series: dict[tuple[str, ...], _Series] = {}

        def collect(expression: str, attribute: str) -> None:
            for key, value in self._query(expression, b).items():
                setattr(series.setdefault(key, _Series()), attribute, value)

        collect(f"max by ({BY}) (last_over_time(wattwise_unit_energy_joules_total[{w}]))", "energy_j")
        if not series:
            return 0, 0.0, 0.0
        collect(f"max by ({BY}) (last_over_time(wattwise_unit_emissions_grams_total[{w}]))", "emissions_g")
        collect(f"max by ({BY}) (last_over_time(wattwise_unit_cpu_seconds_total[{w}]))", "cpu_s")
        collect(f"max by ({BY}) (avg_over_time(wattwise_unit_memory_used_bytes[{w}]))", "memory_avg_b")
        collect(f"max by ({BY}) (count_over_time(wattwise_unit_memory_used_bytes[{w}]))", "memory_count")
        collect(f"max by ({BY}) (last_over_time(wattwise_unit_start_time_seconds[{w}]))", "start_s")
        collect(f"min by ({BY}) (min_over_time(wattwise_unit_start_time_seconds[{w}]))", "first_start_s")
        collect(f"max by ({BY}) (max_over_time(timestamp(wattwise_unit_energy_joules_total)[{w}:{step}]))",
                "last_sample_s")
        day = _ts(b - 1e-3).date()
        total_energy = total_emissions = 0.0
        count = 0
        with self.store.session() as session:
            for key, s in series.items():
                if s.energy_j is None:
                    continue
                energy, emissions = self._apply(session, key, s, day, a, b)
                total_energy += energy
                total_emissions += emissions
                count += 1
        return count, total_energy, total_emissions

    def _last_before(self, key: tuple[str, ...], a: float, t: float) -> dict[str, float]:
        """The unit's counters as the old exporter last reported them, in (a, t] (before a restart)."""
        selector = ",".join(f'{label}="{_escape(value)}"' for label, value in zip(KEY_LABELS, key, strict=True))
        result: dict[str, float] = {}
        for metric, name in (("energy", "wattwise_unit_energy_joules_total"),
                             ("emissions", "wattwise_unit_emissions_grams_total"),
                             ("cpu", "wattwise_unit_cpu_seconds_total")):
            found = self.client.query(f"max(last_over_time({name}{{{selector}}}[{_range(t - a)}]))", t)
            if found:
                result[metric] = found[0][1]
        return result

    def _apply(self, session: Any, key: tuple[str, ...], s: _Series, day: date, a: float,
               b: float) -> tuple[float, float]:
        hostname, manager, unit_id, user, project = key
        unit = session.scalars(select(MonitorUnit).where(
            MonitorUnit.cluster == self.cluster, MonitorUnit.hostname == hostname, MonitorUnit.manager == manager,
            MonitorUnit.unit_id == unit_id)).one_or_none()
        if unit is None:
            unit = MonitorUnit(cluster=self.cluster, hostname=hostname, manager=manager, unit_id=unit_id, user=user,
                               project=project,
                               energy_j=0.0, emissions_g=0.0, cpu_s=0.0, memory_sum_b=0.0, memory_samples=0)
            session.add(unit)
            session.flush()
        restarted = (unit.last_seen_start_s is not None and s.start_s is not None
                     and abs(s.start_s - unit.last_seen_start_s) > 1e-3)
        before_restart: dict[str, float] = {}
        if restarted and s.start_s is not None and s.start_s > a:
            before_restart = self._last_before(key, a, s.start_s - 1e-3)

        def increment(metric: str, value: float | None, previous: float | None) -> float:
            if value is None:
                return 0.0
            if previous is None:
                return value
            if restarted:  # what the old exporter counted since the last pull, then the new counter
                old = before_restart.get(metric)
                return (max(0.0, old - previous) if old is not None else 0.0) + value
            if value < previous:  # reset without a restart (should not happen): the new counter
                return value
            return value - previous

        d_energy = increment("energy", s.energy_j, unit.last_energy_j)
        d_emissions = increment("emissions", s.emissions_g, unit.last_emissions_g)
        d_cpu = increment("cpu", s.cpu_s, unit.last_cpu_s)
        unit.energy_j += d_energy
        unit.emissions_g += d_emissions
        unit.cpu_s += d_cpu
        unit.last_energy_j = s.energy_j
        if s.emissions_g is not None:
            unit.last_emissions_g = s.emissions_g
        if s.cpu_s is not None:
            unit.last_cpu_s = s.cpu_s
        if s.start_s is not None:
            unit.last_seen_start_s = s.start_s
        if s.memory_avg_b is not None and s.memory_count:
            unit.memory_sum_b += s.memory_avg_b * s.memory_count
            unit.memory_samples += int(s.memory_count)
        first = s.first_start_s if s.first_start_s is not None else s.start_s
        if first is not None:
            start = _ts(first)
            current = _aware(unit.start_at)
            unit.start_at = start if current is None or start < current else current
        last = s.last_sample_s if s.last_sample_s is not None else b
        end = _ts(min(last, b))
        current_end = _aware(unit.end_at)
        unit.end_at = end if current_end is None or end > current_end else current_end
        unit.user, unit.project = user, project
        unit.updated_at = datetime.now(UTC)

        unit_day = session.get(MonitorUnitDay, (unit.id, day))
        new_day = unit_day is None
        if unit_day is None:
            unit_day = MonitorUnitDay(unit_pk=unit.id, day=day, energy_j=0.0, emissions_g=0.0, cpu_s=0.0)
            session.add(unit_day)
        unit_day.energy_j += d_energy
        unit_day.emissions_g += d_emissions
        unit_day.cpu_s += d_cpu
        targets: list[Any] = []
        if user:
            row = session.get(MonitorUserDay, (day, user))
            if row is None:
                row = MonitorUserDay(day=day, user=user, energy_j=0.0, emissions_g=0.0, cpu_s=0.0, units=0)
                session.add(row)
            targets.append(row)
        if project:
            row = session.get(MonitorProjectDay, (day, project))
            if row is None:
                row = MonitorProjectDay(day=day, project=project, energy_j=0.0, emissions_g=0.0, cpu_s=0.0,
                                        units=0)
                session.add(row)
            targets.append(row)
        for row in targets:
            row.energy_j += d_energy
            row.emissions_g += d_emissions
            row.cpu_s += d_cpu
            if new_day:
                row.units += 1
        session.flush()
        return d_energy, d_emissions

    # --- scheduling ----------------------------------------------------------------------------------

    def start(self, interval_s: float) -> threading.Event:
        """Pull every `interval_s` in a daemon thread (first pull at once); set the event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while True:
                try:
                    self.run_once()
                    self.last_error = None
                except WattwiseError as exc:
                    self.last_error = str(exc)
                    log.warning("pull from Prometheus failed: %s", exc)
                except Exception as exc:  # keep the schedule alive; the error is shown by /healthz
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("pull from Prometheus failed")
                if stop.wait(interval_s):
                    return

        threading.Thread(target=loop, name="wattwise-monitor-pull", daemon=True).start()
        return stop


class AggregatorGroup:
    """Several clusters' aggregators (one Prometheus each) behind the interface the API uses."""

    def __init__(self, aggregators: list[Aggregator]) -> None:
        self.aggregators = aggregators

    @property
    def last_summary(self) -> dict[str, Any]:
        return {a.cluster: a.last_summary for a in self.aggregators}

    @property
    def last_error(self) -> str | None:
        errors = [f"{a.cluster}: {a.last_error}" for a in self.aggregators if a.last_error]
        return "; ".join(errors) or None

    def run_once(self, now_s: float | None = None) -> dict[str, Any]:
        return {a.cluster: a.run_once(now_s) for a in self.aggregators}

    def start(self, interval_s: float) -> threading.Event:
        stops = [a.start(interval_s) for a in self.aggregators]
        stop = threading.Event()

        def relay() -> None:
            stop.wait()
            for each in stops:
                each.set()

        threading.Thread(target=relay, name="wattwise-monitor-pull-stop", daemon=True).start()
        return stop


def parse_sources(specs: list[str]) -> list[tuple[str, str]]:
    """``URL`` or ``CLUSTER=URL`` → (cluster, URL); cluster names must be unique."""
    sources: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        cluster, url = (name.strip(), url.strip()) if sep and not name.startswith(("http://", "https://")) else (
            "", spec.strip())
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--prometheus {spec!r}: expected URL or CLUSTER=URL with an http(s) URL")
        if any(cluster == c for c, _ in sources):
            raise ConfigError(f"--prometheus: cluster {cluster or '(unnamed)'!r} is given twice")
        sources.append((cluster, url))
    return sources
