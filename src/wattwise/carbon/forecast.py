"""Carbon-intensity forecasts as a scheduler sees them: what it believes, at a decision time, about the slots
ahead. Policies decide on a forecast; the simulation bills on the actual trace.

Every model answers :meth:`Forecast.window` ``(issue, start, end)``: the forecast issued at slot ``issue`` for
the slots ``[start, end)`` of the simulation grid (g/kWh per slot), from the actual per-slot intensity
``actual``. Models:

* ``perfect``: the actual intensity.
* ``multiplicative`` (error ``e``): each *trace sample* times ``max(0, 1 + e·N(0, 1))``, one draw per sample,
  whatever the issue time (wattwise's first model; white noise).
* ``additive`` (error ``e``, Let's Wait Awhile's model): each slot plus ``e · mean(actual) · N(0, 1)``, clipped
  at 0, one draw per slot, whatever the issue time.
* ``ar1`` (``profile``, ``phi``): the error grows with the lead time. For a forecast issued at ``i``, the relative
  error at lead ``h = t - i`` slots is ``σ(h) · x_h`` with ``x`` a unit-variance AR(1) path over the lead time
  (``x_0 = z_0``, ``x_h = phi · x_{h-1} + sqrt(1 - phi²) · z_h``, ``z`` seeded by (seed, issue slot)), so
  errors are correlated in time and a later decision sees a fresher forecast. ``σ(h)``: the horizon profile,
  ``[(lead_h, σ), ...]`` interpolated linearly in hours and constant after its last point.
* ``issued``: real forecasts from a CSV of ``issue_time,target_time,g_per_kwh`` rows (ISO 8601 or Unix s):
  at each decision the latest issue at or before the decision time is used (re-read, as a live scheduler
  would); a target value holds until the next target of that issue; slots after the issue's last target hold
  its last value; slots before any issue see the actual intensity.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wattwise.carbon.trace import TraceError, parse_time_s

MODELS = ("perfect", "multiplicative", "additive", "ar1", "issued")
#: the default horizon profile of the AR(1) model: relative error by lead time (h)
DEFAULT_PROFILE: tuple[tuple[float, float], ...] = ((0.0, 0.0), (24.0, 0.1), (96.0, 0.25))


@dataclass
class Forecast:
    """A forecast model on a simulation grid (``origin_s``, ``resolution_s``, ``actual`` per slot)."""

    actual: np.ndarray
    model: str = "perfect"
    error: float = 0.0
    seed: int = 0
    phi: float = 0.9
    profile: Sequence[tuple[float, float]] = DEFAULT_PROFILE
    resolution_s: float = 60.0
    origin_s: float = 0.0
    #: multiplicative: the per-slot forecast, precomputed from the per-sample draws
    fixed_values: np.ndarray | None = None
    issues: list[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown forecast model {self.model!r}; allowed: {', '.join(MODELS)}")
        if self.model == "additive":
            rng = np.random.default_rng(self.seed)
            noise = self.error * float(np.mean(self.actual)) * rng.standard_normal(self.actual.size)
            self.fixed_values = np.maximum(0.0, self.actual + noise)
        if self.model == "ar1" and not -1 < self.phi < 1:
            raise ValueError(f"the AR(1) coefficient phi must be in (-1, 1), got {self.phi}")

    @property
    def fixed(self) -> bool:
        """True when the forecast of a slot does not depend on when it is issued (one array for all)."""
        return self.model in ("perfect", "multiplicative", "additive")

    def values(self) -> np.ndarray:
        """The forecast of every slot, for models that do not depend on the issue time."""
        if self.model == "perfect":
            return self.actual
        assert self.fixed_values is not None, self.model
        return self.fixed_values

    def sigma(self, lead_slots: np.ndarray) -> np.ndarray:
        """The AR(1) model's relative error by lead time (slots)."""
        hours = np.asarray([p[0] for p in self.profile], dtype=float)
        sig = np.asarray([p[1] for p in self.profile], dtype=float)
        return np.interp(lead_slots * self.resolution_s / 3600.0, hours, sig)

    def window(self, issue: int, start: int, end: int) -> np.ndarray:
        """The forecast issued at slot ``issue`` for slots ``[start, end)`` (``issue ≤ start``)."""
        if self.fixed:
            return self.values()[start:end]
        if self.model == "ar1":
            lead = np.arange(end - issue)
            from scipy.signal import lfilter

            rng = np.random.default_rng([self.seed, issue])
            z = rng.standard_normal(lead.size)
            scale = math.sqrt(1.0 - self.phi ** 2)
            if z.size and scale > 0:
                z[0] /= scale  # x_0 = z_0: the path starts at unit variance
            x = lfilter([scale], [1.0, -self.phi], z) if z.size else z
            rel = self.sigma(lead) * x
            out = self.actual[issue:end] * (1.0 + rel)
            return np.maximum(0.0, out)[start - issue:]
        return self._issued(issue, start, end)

    def _issued(self, issue: int, start: int, end: int) -> np.ndarray:
        decision_s = self.origin_s + issue * self.resolution_s
        times = [t for t, _, _ in self.issues]
        k = int(np.searchsorted(times, decision_s, side="right")) - 1
        if k < 0:
            return self.actual[start:end].copy()
        _, targets, values = self.issues[k]
        slot_times = self.origin_s + (np.arange(start, end) + 0.5) * self.resolution_s  # slot midpoints
        idx = np.searchsorted(targets, slot_times, side="right") - 1
        out = values[np.clip(idx, 0, values.size - 1)]
        before = idx < 0  # slots before the issue's first target: the actual intensity
        return np.where(before, self.actual[start:end], out)


def read_issued(path: str | Path) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Read ``issue_time,target_time,g_per_kwh`` rows: per issue time (ascending), its targets (ascending)
    and values. Errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{path}: forecast file not found") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    wanted = ["issue_time", "target_time", "g_per_kwh"]
    if header is None or [h.strip() for h in header[:3]] != wanted:
        raise TraceError(f"{path}: line 1: expected the header {','.join(wanted)}, got {header!r}")
    by_issue: dict[float, dict[float, float]] = {}
    for line, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise TraceError(f"{path}: line {line}: expected 3 values, got {len(row)}")
        try:
            issue_s, target_s = parse_time_s(row[0].strip()), parse_time_s(row[1].strip())
        except ValueError as exc:
            raise TraceError(f"{path}: line {line}: {exc}") from None
        try:
            value = float(row[2])
        except ValueError:
            raise TraceError(f"{path}: line {line}: g_per_kwh {row[2]!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise TraceError(f"{path}: line {line}: g_per_kwh must be finite and ≥ 0, got {value}")
        if target_s < issue_s:
            raise TraceError(f"{path}: line {line}: target time before the issue time")
        by_issue.setdefault(issue_s, {})[target_s] = value
    if not by_issue:
        raise TraceError(f"{path}: no forecast rows")
    out = []
    for issue_s in sorted(by_issue):
        targets = sorted(by_issue[issue_s])
        out.append((issue_s, np.asarray(targets), np.asarray([by_issue[issue_s][t] for t in targets])))
    return out
