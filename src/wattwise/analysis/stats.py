"""Per phase and per metric statistics of a stored run.

For every phase and every metric:

- gauges (power, utilisation, memory, temperature): time integral (``total``, value·s), time-weighted
  ``mean``, ``max`` and ``min`` over the window (boundary values interpolated, as in ``series``);
- counters (energy, CPU time, bytes): ``total`` = increase over the window, ``mean`` = mean rate per
  second, ``max``/``min`` = largest/smallest rate between consecutive samples;
- sampling: how many samples fell in the window, the median interval between them, and a warning when a
  phase has fewer than ``MIN_SAMPLES`` samples of a metric or its samples are much sparser than the run's
  configured interval.

``[RUNTIME]`` is rebuilt from its visible flow sub-phases (phases whose ``parent`` is ``[RUNTIME]`` and
that are not ``hidden``): totals are summed, time-weighted means recombined by duration, max of maxima
and min of minima. A run without sub-phases keeps its measured ``[RUNTIME]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wattwise.analysis import series as ts
from wattwise.analysis.phases import Series, load_series
from wattwise.store import Store

RUNTIME = "[RUNTIME]"
#: fewer samples of a metric than this in a phase make its figures unreliable
MIN_SAMPLES = 5
#: a median sample interval this many times the configured interval is reported
SPARSE_FACTOR = 3.0


@dataclass
class MetricStats:
    metric_id: int
    name: str
    detail: str
    unit: str
    kind: str
    total: float | None  # counter: increase; gauge: integral in unit·s
    mean: float | None  # counter: mean rate (unit/s); gauge: time-weighted mean (unit)
    max: float | None
    min: float | None
    samples: int
    median_interval_s: float | None
    estimated: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}[{self.detail}]" if self.detail else self.name

    @property
    def rate_unit(self) -> str:
        """Unit of mean/max/min: a counter's are rates."""
        return f"{self.unit}/s" if self.kind == "counter" else self.unit

    @property
    def total_unit(self) -> str | None:
        """Unit of `total` where a total means something: a counter's increase, or a power gauge's integral
        (energy, J). None for other gauges (memory, utilisation, temperature): their integral is no amount."""
        if self.kind == "counter":
            return self.unit
        if self.unit == "W":
            return "J"
        return None


@dataclass
class PhaseStats:
    name: str
    start_us: int
    end_us: int
    duration_s: float
    parent: str | None
    hidden: bool
    metrics: list[MetricStats]
    warnings: list[str] = field(default_factory=list)
    rebuilt_from: list[str] = field(default_factory=list)

    def metric(self, name: str, detail: str | None = None) -> MetricStats | None:
        for m in self.metrics:
            if m.name == name and (detail is None or m.detail == detail):
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for m, d in zip(self.metrics, out["metrics"], strict=True):
            d["label"] = m.label
            d["rate_unit"] = m.rate_unit
            d["total_unit"] = m.total_unit
        return out


def _min_rate(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    if len(t_us) < 2 or end_us <= start_us:
        return None
    t, v = ts.window(t_us, values, start_us, end_us)
    dt = np.diff(t) / 1e6
    keep = dt > 1e-4
    if not np.any(keep):
        return None
    return float(np.min(np.diff(v)[keep] / dt[keep]))


def metric_stats(s: Series, start_us: int, end_us: int) -> MetricStats:
    """Statistics of one series over [start_us, end_us] (all None when the series does not cover it)."""
    inside = (s.t_us >= start_us) & (s.t_us <= end_us)
    count = int(np.count_nonzero(inside))
    interval = None
    if count >= 2:
        interval = float(np.median(np.diff(s.t_us[inside]))) / 1e6
    total = mean = high = low = None
    if s.covers(start_us, end_us) and end_us > start_us:
        total = s.amount(start_us, end_us)
        mean = s.mean(start_us, end_us)
        if s.kind == "counter":
            high = ts.counter_peak_rate_raw(s.t_us, s.values, start_us, end_us)
            low = _min_rate(s.t_us, s.values, start_us, end_us)
        else:
            high = ts.gauge_max_raw(s.t_us, s.values, start_us, end_us)
            low = ts.gauge_min_raw(s.t_us, s.values, start_us, end_us)
    return MetricStats(
        s.metric_id, s.name, s.detail, s.unit, s.kind, total, mean, high, low, count, interval, s.estimated
    )


def sampling_warnings(
    phase: str, duration_s: float, stats: list[MetricStats], interval_s: float | None
) -> list[str]:
    out = []
    for m in stats:
        if m.total is None and m.samples == 0:
            continue  # the metric did not exist in this phase (a unit attached later)
        if m.samples < MIN_SAMPLES:
            out.append(
                f"phase {phase}: only {m.samples} sample(s) of {m.label} in {duration_s:.3g} s "
                f"(fewer than {MIN_SAMPLES}); sample faster or measure longer"
            )
        elif interval_s and m.median_interval_s and m.median_interval_s > SPARSE_FACTOR * interval_s:
            out.append(
                f"phase {phase}: {m.label} was sampled every {m.median_interval_s:.3g} s, "
                f"not every {interval_s:g} s as configured (the machine may have been overloaded)"
            )
    return out


def combine(name: str, parts: list[PhaseStats], *, parent: str | None = None) -> PhaseStats:
    """One phase's statistics from several disjoint phases: sum totals, duration-weighted means."""
    duration = sum(p.duration_s for p in parts)
    by_key: dict[tuple[int, str, str], list[tuple[float, MetricStats]]] = {}
    for p in parts:
        for m in p.metrics:
            by_key.setdefault((m.metric_id, m.name, m.detail), []).append((p.duration_s, m))
    metrics = []
    for (metric_id, metric_name, detail), items in by_key.items():
        first = items[0][1]
        totals = [m.total for _, m in items if m.total is not None]
        weighted = [(d, m.mean) for d, m in items if m.mean is not None and d > 0]
        highs = [m.max for _, m in items if m.max is not None]
        lows = [m.min for _, m in items if m.min is not None]
        weight = sum(d for d, _ in weighted)
        intervals = [m.median_interval_s for _, m in items if m.median_interval_s is not None]
        metrics.append(
            MetricStats(
                metric_id,
                metric_name,
                detail,
                first.unit,
                first.kind,
                sum(totals) if totals else None,
                sum(d * v for d, v in weighted) / weight if weight > 0 else None,
                max(highs) if highs else None,
                min(lows) if lows else None,
                sum(m.samples for _, m in items),
                float(np.median(intervals)) if intervals else None,
                first.estimated,
            )
        )
    return PhaseStats(
        name,
        min(p.start_us for p in parts),
        max(p.end_us for p in parts),
        duration,
        parent,
        False,
        metrics,
        [w for p in parts for w in p.warnings],
        [p.name for p in parts],
    )


def flow_children(phases: list[Any], parent: str = RUNTIME) -> list[Any]:
    """Visible sub-phases of `parent`, in order (objects with name/parent/hidden attributes)."""
    return [p for p in phases if p.parent == parent and not p.hidden]


def run_stats(store: Store, run_id: int, *, series: list[Series] | None = None) -> list[PhaseStats]:
    """Statistics of every phase of the run (hidden ones included, flagged), [RUNTIME] rebuilt."""
    run = store.get_run(run_id)
    interval_s = (run.settings or {}).get("interval_s")
    series = series if series is not None else load_series(store, run_id)
    phases = store.phases(run_id)
    out: list[PhaseStats] = []
    by_name: dict[str, PhaseStats] = {}
    for p in phases:
        duration = max(0.0, (p.end_us - p.start_us) / 1e6)
        stats = [metric_stats(s, p.start_us, p.end_us) for s in series]
        phase = PhaseStats(
            p.name,
            p.start_us,
            p.end_us,
            duration,
            p.parent,
            p.hidden,
            stats,
            sampling_warnings(p.name, duration, stats, interval_s),
        )
        out.append(phase)
        by_name.setdefault(p.name, phase)
    children = [by_name[p.name] for p in flow_children(phases)]
    if children:
        rebuilt = combine(RUNTIME, children)
        if RUNTIME in by_name:
            index = out.index(by_name[RUNTIME])
            out[index] = rebuilt
        else:
            # place it before its first sub-phase
            index = out.index(children[0])
            out.insert(index, rebuilt)
    return out
