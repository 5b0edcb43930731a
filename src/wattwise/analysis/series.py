"""Time series arithmetic on (t_us, values) arrays: counters by differences, gauges by integration.

Values at a phase boundary are linearly interpolated between the samples around it (held flat beyond
the first/last sample), so phases that share a boundary split energy without loss or double counting.
"""

from __future__ import annotations

import numpy as np


def value_at(t_us: np.ndarray, values: np.ndarray, at_us: float) -> float:
    return float(np.interp(at_us, t_us, values))


def window(
    t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples strictly inside the window plus interpolated values at both ends."""
    inside = (t_us > start_us) & (t_us < end_us)
    t = np.concatenate(([start_us], t_us[inside].astype(np.float64), [end_us]))
    v = np.concatenate(([value_at(t_us, values, start_us)], values[inside], [value_at(t_us, values, end_us)]))
    return t, v


def counter_delta_raw(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    if len(t_us) == 0 or end_us <= start_us:
        return None
    return value_at(t_us, values, end_us) - value_at(t_us, values, start_us)


def gauge_integral_raw(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    """∫ value dt over the window in value·seconds (trapezoid rule)."""
    if len(t_us) == 0 or end_us <= start_us:
        return None
    t, v = window(t_us, values, start_us, end_us)
    return float(np.trapezoid(v, t) / 1e6)


def gauge_max_raw(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    if len(t_us) == 0 or end_us <= start_us:
        return None
    return float(np.max(window(t_us, values, start_us, end_us)[1]))


def gauge_min_raw(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    if len(t_us) == 0 or end_us <= start_us:
        return None
    return float(np.min(window(t_us, values, start_us, end_us)[1]))


def counter_peak_rate_raw(
    t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float
) -> float | None:
    """Largest rate (per second) between consecutive samples in the window."""
    if len(t_us) < 2 or end_us <= start_us:
        return None
    t, v = window(t_us, values, start_us, end_us)
    dt = np.diff(t) / 1e6
    keep = dt > 1e-4
    if not np.any(keep):
        return None
    return float(np.max(np.diff(v)[keep] / dt[keep]))


def samples_in(t_us: np.ndarray, start_us: float, end_us: float) -> int:
    return int(np.count_nonzero((t_us >= start_us) & (t_us <= end_us)))
