"""Time series arithmetic on (t_us, values) arrays: counters by differences, gauges by integration.

Counters: values at a phase boundary are linearly interpolated between the samples around it (held flat beyond
the first/last sample), so phases that share a boundary split them without loss or double counting. A counter
that goes down was reset (a container's interface removed and made again): `reset_corrected` counts from the
new origin, so traffic is never negative.

Gauges: a reading covers the interval since the previous reading (what power meters, GPU power and the
utilization-based estimate report: the mean over their last interval, or the level at the end of a phase when
read at its edge). A gauge is integrated as that step function: sample i holds from sample i-1 to sample i; the
first sample also holds before itself and the last after itself. With a reading at every phase edge (the
sampler takes one), a phase gets exactly its own intervals: a 5 s phase at 60 W next to 250 W is not smeared
by interpolating across the step.
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


def reset_corrected(values: np.ndarray) -> np.ndarray:
    """A cumulative counter with resets undone: after a drop, counting goes on from the value before it."""
    if len(values) < 2:
        return values
    drops = values[1:] < values[:-1]
    if not np.any(drops):
        return values
    offset = np.concatenate(([0.0], np.cumsum(np.where(drops, values[:-1], 0.0))))
    return values + offset


def gauge_integral_raw(t_us: np.ndarray, values: np.ndarray, start_us: float, end_us: float) -> float | None:
    """∫ value dt over the window in value·seconds; sample i holds over (t[i-1], t[i]] (see the module doc)."""
    if len(t_us) == 0 or end_us <= start_us:
        return None
    inside = t_us[(t_us > start_us) & (t_us < end_us)].astype(np.float64)
    edges = np.concatenate(([float(start_us)], inside, [float(end_us)]))
    # the value over (edges[k], edges[k+1]] is the first sample at or after edges[k+1] (the last one beyond)
    index = np.minimum(np.searchsorted(t_us, edges[1:], side="left"), len(t_us) - 1)
    return float(np.dot(values[index], np.diff(edges)) / 1e6)


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
