"""wattwise: measure, attribute and reduce the energy and carbon of software and compute jobs.

The package's own surface is the Python tracker (`wattwise.track`, `wattwise.Tracker`); everything else is
reached through its subpackages. Exports load lazily, so that `import wattwise` and `wattwise --help` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["PhaseResult", "TrackResult", "Tracker", "WattwiseError", "__version__", "track"]

if TYPE_CHECKING:
    from wattwise.errors import WattwiseError
    from wattwise.measure.tracker import PhaseResult, Tracker, TrackResult, track

_LAZY = {
    "track": "wattwise.measure.tracker",
    "Tracker": "wattwise.measure.tracker",
    "TrackResult": "wattwise.measure.tracker",
    "PhaseResult": "wattwise.measure.tracker",
    "WattwiseError": "wattwise.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
