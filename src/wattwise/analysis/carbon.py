"""Operational carbon with a static or time-varying grid intensity, and network transfer energy.

operational carbon (g) = Σ over intervals of  energy_kWh(interval) × intensity_g_per_kWh(interval) × PUE

With a static intensity there is one interval (the whole phase). With a carbon-intensity trace
(``wattwise.carbon.trace.CarbonTrace``, e.g. an Electricity Maps CSV export) the phase is cut at the
trace's breakpoints and each piece of machine energy is weighted with the intensity that held then.

network transfer energy (J) = bytes / 1e9 × kWh_per_GB × 3.6e6; its carbon uses the same grid intensity
(no PUE: the network is outside the data centre). See docs/analysis.md for the published constants.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from wattwise.analysis.phases import Series, machine_energy
from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.units import J_PER_KWH

#: kWh per GB (1e9 bytes) transferred; the default of the seed documents. Others: docs/analysis.md
DEFAULT_NETWORK_KWH_PER_GB = 0.002652
NETWORK_KWH_PER_GB_CONSTANTS = {
    "seed": 0.002652,
    "aslan-2015": 0.06,
    "ccf": 0.001,
    "swd-v3": 0.81 * 0.14,
}

Intensity = float | CarbonTrace


@dataclass
class CarbonFigure:
    energy_j: float | None
    carbon_g: float | None
    #: energy-weighted mean intensity over the window (g/kWh)
    intensity_g_per_kwh: float | None
    intensity_source: str
    #: the machine energy comes from the load→power estimate (no power sensor)
    estimated: bool = False


def network_kwh_per_gb(value: str | float | None) -> float:
    """A number, or the name of a published constant (see NETWORK_KWH_PER_GB_CONSTANTS)."""
    if value is None:
        return DEFAULT_NETWORK_KWH_PER_GB
    if isinstance(value, int | float):
        number = float(value)
    else:
        key = value.strip().lower()
        if key in NETWORK_KWH_PER_GB_CONSTANTS:
            return NETWORK_KWH_PER_GB_CONSTANTS[key]
        try:
            number = float(key)
        except ValueError:
            names = ", ".join(NETWORK_KWH_PER_GB_CONSTANTS)
            raise WattwiseError(
                f"network energy intensity {value!r} is neither a number (kWh/GB) nor one of {names}"
            ) from None
    if not np.isfinite(number) or number < 0:
        raise WattwiseError(f"network energy intensity must be a number ≥ 0 kWh/GB, got {value!r}")
    return number


def network_energy_j(bytes_: float, kwh_per_gb: float = DEFAULT_NETWORK_KWH_PER_GB) -> float:
    return bytes_ / 1e9 * kwh_per_gb * J_PER_KWH


def carbon_from_energy_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    return energy_j / J_PER_KWH * intensity_g_per_kwh * pue


def operational_carbon(
    series: list[Series],
    windows: list[tuple[int, int]],
    intensity: Intensity,
    pue: float = 1.0,
    *,
    shift_s: float = 0.0,
) -> CarbonFigure:
    """Machine energy and its carbon over the given (start_us, end_us) windows.

    `shift_s` moves the run in time before looking up a trace (for "what if it had run then").
    """
    if isinstance(intensity, CarbonTrace):
        check_trace_covers(intensity, windows, shift_s)
    energy_total = 0.0
    carbon_total = 0.0
    seen = False
    estimated = False
    for start_us, end_us in windows:
        if end_us <= start_us:
            continue
        if isinstance(intensity, CarbonTrace):
            t0 = start_us / 1e6 + shift_s
            t1 = end_us / 1e6 + shift_s
            inner = intensity.times_s[(intensity.times_s > t0) & (intensity.times_s < t1)]
            cuts = np.concatenate(([t0], inner, [t1]))
            for a, b in itertools.pairwise(cuts):
                a_us = (a - shift_s) * 1e6
                b_us = (b - shift_s) * 1e6
                piece = machine_energy(series, a_us, b_us)
                energy = piece.energy_j
                if energy is None:
                    continue
                seen = True
                estimated = estimated or piece.estimated
                energy_total += energy
                carbon_total += carbon_from_energy_g(energy, intensity.mean_over(a, b), pue)
        else:
            whole = machine_energy(series, start_us, end_us)
            energy = whole.energy_j
            if energy is None:
                continue
            seen = True
            estimated = estimated or whole.estimated
            energy_total += energy
            carbon_total += carbon_from_energy_g(energy, float(intensity), pue)
    if not seen:
        return CarbonFigure(None, None, None, _describe(intensity))
    mean_intensity = None
    if energy_total > 0:
        mean_intensity = carbon_total / (energy_total / J_PER_KWH * pue)
    elif not isinstance(intensity, CarbonTrace):
        mean_intensity = float(intensity)
    return CarbonFigure(energy_total, carbon_total, mean_intensity, _describe(intensity), estimated)


def _iso(t_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suggest_trace_at(trace: CarbonTrace, start_s: float, duration_s: float) -> tuple[float, str]:
    """A start inside the trace for a run that lies outside it, and why: the same date and time of day in
    one of the trace's years, else the trace's start."""
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(start_s, UTC)
    first = datetime.fromtimestamp(trace.start_s, UTC)
    last = datetime.fromtimestamp(trace.end_s, UTC)
    for year in range(first.year, last.year + 1):
        try:
            candidate = start.replace(year=year).timestamp()
        except ValueError:  # 29 February in a common year
            continue
        if trace.start_s <= candidate and candidate + duration_s <= trace.end_s:
            return candidate, "the same date and time of day in the trace's period"
    return trace.start_s, "the trace's start: its period holds no such date"


def check_trace_covers(
    trace: CarbonTrace, windows: list[tuple[int, int]], shift_s: float = 0.0, run_start_us: float | None = None
) -> None:
    """A clear error, with the --trace-at that maps the run onto the trace, when the windows lie outside it.

    `run_start_us` is what --trace-at moves (the run's first phase start); by default the first window."""
    spans = [(a, b) for a, b in windows if b > a]
    if not spans:
        return
    t0 = min(a for a, _ in spans) / 1e6 + shift_s
    t1 = max(b for _, b in spans) / 1e6 + shift_s
    if t0 >= trace.start_s and t1 <= trace.end_s:
        return
    origin = (run_start_us / 1e6 + shift_s) if run_start_us is not None else t0
    at, why = suggest_trace_at(trace, origin, t1 - origin)
    shifted = " (after --trace-at)" if shift_s else ""
    raise WattwiseError(
        f"the run{shifted} ({_iso(t0)} to {_iso(t1)}) lies outside the trace {trace.source}, "
        f"which covers {_iso(trace.start_s)} to {_iso(trace.end_s)}. Map the run onto the trace with "
        f"--trace-at, the time the run is taken to have started, e.g. --trace-at {_iso(at)} ({why})."
    )


def _describe(intensity: Intensity) -> str:
    if isinstance(intensity, CarbonTrace):
        zone = f" zone {intensity.zone}" if intensity.zone else ""
        return f"trace {intensity.source}{zone}"
    return "static"


def load_trace(path: str) -> CarbonTrace:
    from wattwise.carbon.trace import read_trace

    return read_trace(path)
