"""Server-side downsampling of measurements for charts.

A chart needs a few hundred to a few thousand points, not a million samples. For a finished run each
metric is aggregated once into at most ``FINE_BUCKETS`` equal-time buckets (first/last time and value,
min, max, sum, count per bucket) and stored in ``web_series_cache``; metrics with at most ``RAW_LIMIT``
samples are cached as they are. A request for ``points`` points over a time window re-aggregates the
cached buckets in numpy; a window so narrow that it holds fewer cached buckets than requested points is
read from the samples table (an index range scan over that window only). Running runs are never cached.

Gauges are returned as bucket mean, min and max. Counters are returned as rates (unit per second)
between consecutive bucket ends, so cumulative energy, CPU time and bytes show as power, cores and
bandwidth.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from wattwise.analysis.phases import read_samples
from wattwise.store import Store
from wattwise.store.models import Metric, Run, RunStatus
from wattwise.web.models import SeriesCache, ensure_cache_tables

FINE_BUCKETS = 16384
RAW_LIMIT = 20000
FIELDS = ("t_first", "t_last", "v_first", "v_last", "vmin", "vmax", "vsum", "count")


@dataclass
class Buckets:
    """Aggregated samples; a raw sample is a bucket of one."""

    t_first: np.ndarray
    t_last: np.ndarray
    v_first: np.ndarray
    v_last: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    vsum: np.ndarray
    count: np.ndarray
    raw: bool

    @classmethod
    def from_samples(cls, t_us: np.ndarray, values: np.ndarray) -> Buckets:
        t = t_us.astype(np.int64)
        v = values.astype(np.float64)
        return cls(t, t, v, v, v, v, v, np.ones(len(t), dtype=np.int64), True)

    def __len__(self) -> int:
        return len(self.t_first)

    def select(self, start_us: float | None, end_us: float | None) -> Buckets:
        lo = 0 if start_us is None else int(np.searchsorted(self.t_last, start_us, side="left"))
        hi = len(self) if end_us is None else int(np.searchsorted(self.t_first, end_us, side="right"))
        part = slice(lo, max(lo, hi))
        return Buckets(**{f: getattr(self, f)[part] for f in FIELDS}, raw=self.raw)

    def aggregate(self, n: int) -> Buckets:
        """At most `n` equal-time buckets over this data (returned unchanged when it has ≤ n)."""
        if len(self) <= n or n <= 0:
            return self
        t0, t1 = int(self.t_first[0]), int(self.t_last[-1])
        width = max(1.0, (t1 - t0 + 1) / n)
        index = np.minimum(((self.t_first - t0) / width).astype(np.int64), n - 1)
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        ends = np.r_[starts[1:], len(self)] - 1
        return Buckets(
            self.t_first[starts],
            self.t_last[ends],
            self.v_first[starts],
            self.v_last[ends],
            np.minimum.reduceat(self.vmin, starts),
            np.maximum.reduceat(self.vmax, starts),
            np.add.reduceat(self.vsum, starts),
            np.add.reduceat(self.count, starts),
            False,
        )

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, raw=np.array(self.raw), **{f: getattr(self, f) for f in FIELDS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Buckets:
        with np.load(io.BytesIO(data)) as archive:
            return cls(**{f: archive[f] for f in FIELDS}, raw=bool(archive["raw"]))


class _Memory:
    """A small in-process LRU of decoded buckets (bounded by number of metrics)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, int, str], Buckets] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> Buckets | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: tuple[str, int, str], value: Buckets) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_memory = _Memory()


def run_version(run: Run) -> str | None:
    """What a finished run's caches are valid for; None while it runs (never cached)."""
    if run.status == RunStatus.RUNNING:
        return None
    return f"{run.status}:{run.ended_at.isoformat() if run.ended_at else ''}"


def metric_buckets(store: Store, metric: Metric, version: str | None) -> Buckets:
    """The metric's full-range buckets: from memory, the cache table, or built (and stored)."""
    key = (store.url, metric.id, version or "")
    if version is not None:
        ensure_cache_tables(store)
        cached = _memory.get(key)
        if cached is not None:
            return cached
        with store.session() as session:
            row = session.get(SeriesCache, metric.id)
            if row is not None and row.run_version == version:
                buckets = Buckets.from_bytes(row.payload)
                _memory.put(key, buckets)
                return buckets
    t_us, values = read_samples(store, metric.id)
    buckets = Buckets.from_samples(t_us, values)
    if len(buckets) > RAW_LIMIT:
        buckets = buckets.aggregate(FINE_BUCKETS)
    if version is not None:
        with store.session() as session:
            session.execute(delete(SeriesCache).where(SeriesCache.metric_id == metric.id))
            session.add(
                SeriesCache(
                    metric_id=metric.id,
                    run_version=version,
                    sample_count=len(t_us),
                    payload=buckets.to_bytes(),
                )
            )
        _memory.put(key, buckets)
    return buckets


def window_buckets(
    store: Store,
    metric: Metric,
    version: str | None,
    start_us: float | None,
    end_us: float | None,
    points: int,
) -> Buckets:
    full = metric_buckets(store, metric, version)
    part = full.select(start_us, end_us)
    if not full.raw and len(part) < points and (start_us is not None or end_us is not None):
        t_us, values = read_samples(store, metric.id, start_us, end_us)  # zoomed in: finer than the cache
        part = Buckets.from_samples(t_us, values)
    return part.aggregate(points)


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


#: per-component power: drawn stacked on one chart (the machine's own figure as a line over them)
POWER_COMPONENTS = ("rapl_energy_j", "gpu_energy_j", "gpu_power_w")
MACHINE_POWER = ("ipmi_power_w", "estimated_power_w")


def _rapl_title(detail: str) -> str:
    parts = detail.split("/")
    package = parts[0].replace("package-", "CPU package ")
    if len(parts) == 1:
        return f"{package} (RAPL)" if package.startswith("CPU") else f"{detail} (RAPL)"
    zone = {"dram": "DRAM", "core": "cores", "uncore": "uncore/iGPU"}.get(parts[1], parts[1])
    return f"{package} {zone} (RAPL)"


def describe_metric(name: str, detail: str, unit: str, kind: str) -> dict[str, Any]:
    """Human chart title, display unit, value scale and chart group of a metric (counters as rates)."""
    of = f" — {detail}" if detail and detail != "machine" else ""
    rate_unit = f"{unit}/s"
    titles: dict[str, tuple[str, str, float]] = {
        "ipmi_power_w": ("Machine power at the wall (IPMI)", "W", 1.0),
        "estimated_power_w": ("Machine power (≈ estimated from CPU load)", "W", 1.0),
        "gpu_power_w": (f"GPU {detail} power", "W", 1.0),
        "gpu_energy_j": (f"GPU {detail} power", "W", 1.0),
        "rapl_energy_j": (f"{_rapl_title(detail)} power", "W", 1.0),
        "cpu_utilization_ratio": ("CPU utilisation" + of, "%", 100.0),
        "gpu_utilization_ratio": (f"GPU {detail} utilisation", "%", 100.0),
        "gpu_memory_used_b": (f"GPU {detail} memory used", "B", 1.0),
        "cpu_busy_time_s": ("CPU in use" + of, "CPU cores", 1.0),
        "cgroup_cpu_time_s": (f"CPU use of {detail or 'the unit'}", "CPU cores", 1.0),
        "cgroup_memory_b": (f"Memory of {detail or 'the unit'}", "B", 1.0),
        "network_rx_b": ("Network received" + of, "B/s", 1.0),
        "network_tx_b": ("Network sent" + of, "B/s", 1.0),
        "temperature_c": ("Temperature" + of, "°C", 1.0),
        "sci_r": ("Functional units (SCI R)" + of, "per s", 1.0),
    }
    if name in titles:
        title, shown, scale = titles[name]
    else:
        words = name.rsplit("_", 1)[0] if name.endswith(("_w", "_j", "_b", "_s", "_c", "_ratio")) else name
        title = words.replace("_", " ").capitalize() + of
        shown, scale = (rate_unit if kind == "counter" else unit), 1.0
        if unit == "ratio":
            shown, scale = "%", 100.0
    inside = name == "rapl_energy_j" and any(z in detail for z in ("core", "psys"))  # not components
    group = "power" if (name in POWER_COMPONENTS and not inside) or name in MACHINE_POWER else None
    return {"title": title, "unit": shown, "scale": scale, "group": group, "stack": name in POWER_COMPONENTS}


def chart_series(
    store: Store,
    metric: Metric,
    version: str | None,
    *,
    start_us: float | None = None,
    end_us: float | None = None,
    points: int = 1000,
) -> dict[str, Any]:
    """One metric's chart data: t_us, mean, min, max (gauges) or rate (counters) per point."""
    buckets = window_buckets(store, metric, version, start_us, end_us, points)
    out: dict[str, Any] = {
        "metric_id": metric.id,
        "name": metric.name,
        "detail": metric.detail,
        "label": f"{metric.name}[{metric.detail}]" if metric.detail else metric.name,
        "kind": metric.kind,
        "estimated": metric.estimated,
        "points": len(buckets),
        "samples": int(buckets.count.sum()) if len(buckets) else 0,
        "downsampled": not buckets.raw,
    }
    meta = describe_metric(metric.name, metric.detail, metric.unit, metric.kind)
    scale = meta.pop("scale")
    out.update(meta)
    if metric.kind == "counter":
        if len(buckets) < 2:
            out.update(t_us=[], mean=[], min=[], max=[], all_zero=True)
            return out
        dt = np.diff(buckets.t_last) / 1e6
        dv = np.diff(buckets.v_last)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(dt > 0, dv / dt, np.nan) * scale
        t = buckets.t_last[1:]
        out.update(t_us=t.tolist(), mean=_clean(rate), min=None, max=None, all_zero=_all_zero(rate))
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = buckets.vsum / buckets.count * scale
    t = (buckets.t_first + buckets.t_last) // 2
    out.update(
        t_us=t.tolist(),
        mean=_clean(mean),
        min=None if buckets.raw else _clean(buckets.vmin * scale),
        max=None if buckets.raw else _clean(buckets.vmax * scale),
        all_zero=_all_zero(buckets.vmin) and _all_zero(buckets.vmax),
    )
    return out


def _all_zero(values: np.ndarray) -> bool:
    """No sample differs from zero (NaN gaps ignored): the chart would be a flat line at 0."""
    finite = values[np.isfinite(values)]
    return bool(finite.size == 0 or not np.any(finite))


def run_metrics(store: Store, run_id: int) -> list[Metric]:
    with store.session() as session:
        return list(session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))
