"""Measure: the sampler, the measurement session, `wattwise measure -- CMD`, notes and the Python tracker.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.measure.command import MeasureOptions, MeasureResult, measure_command
    from wattwise.measure.notes import parse_note_line
    from wattwise.measure.process import signal_group, start_process, stop_process
    from wattwise.measure.sampler import Sampler
    from wattwise.measure.session import MeasurementSession, SessionOptions
    from wattwise.measure.tracker import PhaseResult, Tracker, TrackResult, track

__all__ = [
    "MeasureOptions",
    "MeasureResult",
    "MeasurementSession",
    "PhaseResult",
    "Sampler",
    "SessionOptions",
    "TrackResult",
    "Tracker",
    "measure_command",
    "parse_note_line",
    "signal_group",
    "start_process",
    "stop_process",
    "track",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "MeasureOptions": "wattwise.measure.command",
    "MeasureResult": "wattwise.measure.command",
    "measure_command": "wattwise.measure.command",
    "MeasurementSession": "wattwise.measure.session",
    "SessionOptions": "wattwise.measure.session",
    "Sampler": "wattwise.measure.sampler",
    "signal_group": "wattwise.measure.process",
    "start_process": "wattwise.measure.process",
    "stop_process": "wattwise.measure.process",
    "parse_note_line": "wattwise.measure.notes",
    "PhaseResult": "wattwise.measure.tracker",
    "TrackResult": "wattwise.measure.tracker",
    "Tracker": "wattwise.measure.tracker",
    "track": "wattwise.measure.tracker",
})
