"""Analysis: per-phase energy, power, resource use and carbon from stored samples.

Names are imported on first use, so that `wattwise --help` (which imports `wattwise.analysis.cli`) does not
load numpy and SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("wattwise.analysis.phases"), name)
    raise AttributeError(f"module 'wattwise.analysis' has no attribute {name!r}")
