"""Analysis: per-phase energy, power, resource use and carbon from stored samples."""

from wattwise.analysis.phases import (
    PhaseSummary,
    Series,
    counter_delta,
    gauge_integral,
    load_series,
    machine_energy,
    summarize_phase,
    summarize_run,
)

__all__ = [
    "PhaseSummary",
    "Series",
    "counter_delta",
    "gauge_integral",
    "load_series",
    "machine_energy",
    "summarize_phase",
    "summarize_run",
]
