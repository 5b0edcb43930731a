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
    if metric.kind == "counter":
        out["unit"] = f"{metric.unit}/s"
        if len(buckets) < 2:
            out.update(t_us=[], mean=[], min=[], max=[])
            return out
        dt = np.diff(buckets.t_last) / 1e6
        dv = np.diff(buckets.v_last)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(dt > 0, dv / dt, np.nan)
        t = buckets.t_last[1:]
        out.update(t_us=t.tolist(), mean=_clean(rate), min=None, max=None)
        return out
    out["unit"] = metric.unit
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = buckets.vsum / buckets.count
    t = (buckets.t_first + buckets.t_last) // 2
    out.update(
        t_us=t.tolist(),
        mean=_clean(mean),
        min=None if buckets.raw else _clean(buckets.vmin),
        max=None if buckets.raw else _clean(buckets.vmax),
    )
    return out


def run_metrics(store: Store, run_id: int) -> list[Metric]:
    with store.session() as session:
        return list(session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))
