"""Analysis: per-phase energy, power, resource use and carbon from stored samples.

Names are imported on first use, so that `wattwise --help` (which imports `wattwise.analysis.cli`) does not
load numpy and SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
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
    from wattwise.analysis.present import print_summary

__all__ = [
    "PhaseSummary",
    "Series",
    "counter_delta",
    "gauge_integral",
    "load_series",
    "machine_energy",
    "print_summary",
    "summarize_phase",
    "summarize_run",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "wattwise.analysis.phases" for name in __all__ if name != "print_summary"},
    "print_summary": "wattwise.analysis.present",
})
