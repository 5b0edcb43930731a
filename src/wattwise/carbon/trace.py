"""Carbon-intensity traces: read them from CSV files and query them as piecewise-constant functions of time.

A trace is a list of samples ``(time, intensity)``; each sample holds from its time until the next sample
(the last one for as long as the step before it, so an hourly trace ends one hour after its last row).

Readers (``read_trace`` picks one from the header):

* Electricity Maps API/CSV export: ``zone,carbon_intensity_avg,datetime,...`` (the ``datetime`` column
  is the start of the interval, ISO 8601, UTC);
* Electricity Maps data-portal export: ``Datetime (UTC),...,Carbon Intensity gCO₂eq/kWh (LCA),...``
  (the direct intensity is used when there is no LCA column);
* plain ``timestamp,g_per_kwh``.

Timestamps are ISO 8601 (a missing offset means UTC) or Unix seconds. Errors name the file and the line.

    >>> trace = read_trace("data/carbon/DE-2024-hourly-electricitymaps.csv")
    >>> trace.mean_over(trace.start_s, trace.start_s + 86400)      # g/kWh, mean over the first day
    >>> trace.slots(trace.start_s, 60, 1440)                       # per-minute means, numpy array
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from wattwise.errors import TraceError as TraceError


@dataclass(frozen=True, eq=False)
class CarbonTrace:
    """Piecewise-constant carbon intensity: ``intensity_g_per_kwh[i]`` holds on ``[times_s[i], times_s[i+1])``
    and the last value on ``[times_s[-1], end_s)``. Times are Unix seconds (UTC)."""

    times_s: np.ndarray
    intensity_g_per_kwh: np.ndarray
    end_s: float
    zone: str | None = None
    source: str = "<memory>"
    # set by __post_init__: breakpoints (times..., end) and the integral up to each
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    _cumulative: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = np.asarray(self.times_s, dtype=float)
        values = np.asarray(self.intensity_g_per_kwh, dtype=float)
        if times.ndim != 1 or times.shape != values.shape or times.size == 0:
            raise TraceError(f"{self.source}: a trace needs equally long, non-empty time and intensity arrays")
        if np.any(np.diff(times) <= 0):
            raise TraceError(f"{self.source}: times must be strictly increasing")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise TraceError(f"{self.source}: intensities must be finite and ≥ 0")
        if not self.end_s > times[-1]:
            raise TraceError(f"{self.source}: end_s must be after the last sample")
        times.flags.writeable = False
        values.flags.writeable = False
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "intensity_g_per_kwh", values)
        object.__setattr__(self, "end_s", float(self.end_s))
        # cumulative integral (g/kWh · s) at every breakpoint: times..., end
        edges = np.append(times, self.end_s)
        cumulative = np.concatenate(([0.0], np.cumsum(values * np.diff(edges))))
        object.__setattr__(self, "_edges", edges)
        object.__setattr__(self, "_cumulative", cumulative)

    @classmethod
    def from_samples(cls, times_s: np.ndarray | list[float], intensity_g_per_kwh: np.ndarray | list[float],
                     end_s: float | None = None, zone: str | None = None, source: str = "<memory>") -> CarbonTrace:
        """Build a trace; without ``end_s`` the last sample lasts as long as the step before it (1 h for a
        single sample)."""
        times = np.asarray(times_s, dtype=float)
        if end_s is None:
            step = float(times[-1] - times[-2]) if times.size >= 2 else 3600.0
            end_s = float(times[-1]) + step
        return cls(times, np.asarray(intensity_g_per_kwh, dtype=float), end_s, zone, source)

    @property
    def start_s(self) -> float:
        return float(self.times_s[0])

    def __len__(self) -> int:
        return int(self.times_s.size)

    def _check_range(self, t0: float, t1: float) -> None:
        if t0 < self.start_s or t1 > self.end_s:
            raise TraceError(
                f"{self.source}: [{_iso(t0)}, {_iso(t1)}] is outside the trace, which covers "
                f"[{_iso(self.start_s)}, {_iso(self.end_s)}]"
            )

    def at(self, t_s: float) -> float:
        """Intensity (g/kWh) at time ``t_s``."""
        self._check_range(t_s, t_s)
        if t_s == self.end_s:
            return float(self.intensity_g_per_kwh[-1])
        return float(self.intensity_g_per_kwh[np.searchsorted(self.times_s, t_s, side="right") - 1])

    def integral(self, t_s: np.ndarray | float) -> np.ndarray:
        """∫ intensity dt from the trace start to each ``t_s`` (g/kWh · s); exact, vectorised."""
        return np.interp(t_s, self._edges, self._cumulative)

    def mean_over(self, t0_s: float, t1_s: float) -> float:
        """Mean intensity (g/kWh) over ``[t0_s, t1_s]``, exact for the piecewise-constant trace."""
        if not t1_s > t0_s:
            raise TraceError(f"mean_over needs t1 > t0, got [{t0_s}, {t1_s}]")
        self._check_range(t0_s, t1_s)
        return float((self.integral(t1_s) - self.integral(t0_s)) / (t1_s - t0_s))

    def slots(self, start_s: float, step_s: float, n: int) -> np.ndarray:
        """Mean intensity of each of ``n`` consecutive slots ``[start + i·step, start + (i+1)·step)``."""
        if not step_s > 0 or n < 0:
            raise TraceError(f"slots needs step_s > 0 and n ≥ 0, got step_s={step_s}, n={n}")
        if n == 0:
            return np.zeros(0)
        self._check_range(start_s, start_s + n * step_s)
        edges = start_s + step_s * np.arange(n + 1, dtype=float)
        return np.diff(self.integral(edges)) / step_s

    def n_slots(self, start_s: float, step_s: float) -> int:
        """How many whole slots of ``step_s`` fit between ``start_s`` and the end of the trace."""
        return max(0, math.floor((self.end_s - start_s) / step_s + 1e-9))

    def gaps(self, factor: float = 1.5) -> list[tuple[float, float]]:
        """Intervals ``(t0, t1)`` between samples longer than ``factor`` × the median step: the trace holds
        its last value across them, which callers may want to report."""
        if self.times_s.size < 3:
            return []
        steps = np.diff(self.times_s)
        limit = factor * float(np.median(steps))
        return [(float(self.times_s[i]), float(self.times_s[i + 1])) for i in np.flatnonzero(steps > limit)]

    def with_intensity(self, intensity_g_per_kwh: np.ndarray, source: str | None = None) -> CarbonTrace:
        """The same sample times with other intensities (e.g. a forecast)."""
        return CarbonTrace(self.times_s, intensity_g_per_kwh, self.end_s, self.zone, source or self.source)


def _iso(t_s: float) -> str:
    try:
        return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{t_s} s"


def parse_time_s(text: str) -> float:
    """Unix seconds from ``text``: a number (Unix seconds) or ISO 8601 (without an offset: UTC)."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"not a finite time: {text!r}")
        return number
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or Unix seconds: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# -- readers ----------------------------------------------------------------------------------------------
_EM_API = ("datetime", "carbon_intensity_avg")
_EM_PORTAL_TIME = "Datetime (UTC)"
_EM_PORTAL_VALUES = ("Carbon Intensity gCO₂eq/kWh (LCA)", "Carbon Intensity gCO₂eq/kWh (direct)")
_PLAIN = ("timestamp", "g_per_kwh")


def read_trace(path: str | Path, column: str | None = None) -> CarbonTrace:
    """Read a carbon-intensity CSV, recognising the format from its header (see the module doc).

    ``column``: the intensity column to use instead of the format's default, by name, e.g. a marginal
    signal (``moer``) or a generation-based one next to the consumption-based average."""
    path = Path(path)
    rows = _read_rows(path)
    header = [h.strip().lstrip("\ufeff") for h in rows[0][1]]
    if column is not None:
        if column not in header:
            raise TraceError(f"{path}:{rows[0][0]}: no column {column!r}; the header has {', '.join(header)}")
        try:
            time_col = _time_column(header)
        except TraceError as exc:
            raise TraceError(f"{path}:{rows[0][0]}: {exc}") from None
        return _build(path, rows[1:], header, time_col, header.index(column),
                      header.index("zone") if "zone" in header else None)
    if all(c in header for c in _EM_API):
        time_col, value_col = header.index("datetime"), header.index("carbon_intensity_avg")
        zone_col = header.index("zone") if "zone" in header else None
    elif _EM_PORTAL_TIME in header and any(c in header for c in _EM_PORTAL_VALUES):
        time_col = header.index(_EM_PORTAL_TIME)
        value_col = header.index(next(c for c in _EM_PORTAL_VALUES if c in header))
        zone_col = header.index("Zone Id") if "Zone Id" in header else None
    elif all(c in header for c in _PLAIN):
        time_col, value_col, zone_col = header.index("timestamp"), header.index("g_per_kwh"), None
    else:
        raise TraceError(
            f"{path}:{rows[0][0]}: unknown carbon trace header {','.join(header)!r}; expected an Electricity "
            "Maps export (zone,carbon_intensity_avg,datetime,... or 'Datetime (UTC)',...,'Carbon Intensity "
            "gCO₂eq/kWh (LCA)') or plain 'timestamp,g_per_kwh'"
        )
    return _build(path, rows[1:], header, time_col, value_col, zone_col)


def _time_column(header: list[str]) -> int:
    for name in ("datetime", _EM_PORTAL_TIME, "timestamp"):
        if name in header:
            return header.index(name)
    raise TraceError(f"no time column (datetime, {_EM_PORTAL_TIME} or timestamp) in {','.join(header)}")


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1)
                    if row and any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise TraceError(f"{path}: carbon trace file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"{path}: cannot read carbon trace: {exc}") from None
    if len(rows) < 2:
        raise TraceError(f"{path}: carbon trace has no data rows (needs a header and at least one row)")
    return rows


def _build(path: Path, rows: list[tuple[int, list[str]]], header: list[str], time_col: int, value_col: int,
           zone_col: int | None) -> CarbonTrace:
    times = np.empty(len(rows))
    values = np.empty(len(rows))
    zones: set[str] = set()
    for i, (line, row) in enumerate(rows):
        if len(row) <= max(time_col, value_col):
            raise TraceError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        try:
            times[i] = parse_time_s(row[time_col])
        except ValueError as exc:
            raise TraceError(f"{path}:{line}: column {header[time_col]!r}: {exc}") from None
        cell = row[value_col].strip()
        try:
            value = float(cell)
        except ValueError:
            what = "is empty" if not cell else f"is not a number: {cell!r}"
            raise TraceError(f"{path}:{line}: column {header[value_col]!r} {what}") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(f"{path}:{line}: column {header[value_col]!r} must be a number ≥ 0, got {cell!r}")
        values[i] = value
        if i and times[i] <= times[i - 1]:
            raise TraceError(
                f"{path}:{line}: time {row[time_col].strip()!r} is not after the previous row's; "
                "rows must be in strictly increasing time order"
            )
        if zone_col is not None and zone_col < len(row) and row[zone_col].strip():
            zones.add(row[zone_col].strip())
    zone = next(iter(zones)) if len(zones) == 1 else None
    return CarbonTrace.from_samples(times, values, zone=zone, source=str(path))
