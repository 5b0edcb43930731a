"""Grid carbon intensity: static per-country factors (`static`), trace files (`trace`), live sources (`live`).

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.carbon.live import CachedIntensity, IntensityReading, StaticSource, default_static_source, make_source
    from wattwise.carbon.static import carbon_g, country_factor, resolve_grid_factor, resolve_pue
    from wattwise.carbon.trace import CarbonTrace, parse_time_s, read_trace
    from wattwise.errors import IntensityError, TraceError

__all__ = [
    "CachedIntensity",
    "CarbonTrace",
    "IntensityError",
    "IntensityReading",
    "StaticSource",
    "TraceError",
    "carbon_g",
    "country_factor",
    "default_static_source",
    "make_source",
    "parse_time_s",
    "read_trace",
    "resolve_grid_factor",
    "resolve_pue",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "CarbonTrace": "wattwise.carbon.trace",
    "parse_time_s": "wattwise.carbon.trace",
    "read_trace": "wattwise.carbon.trace",
    "carbon_g": "wattwise.carbon.static",
    "country_factor": "wattwise.carbon.static",
    "resolve_grid_factor": "wattwise.carbon.static",
    "resolve_pue": "wattwise.carbon.static",
    "CachedIntensity": "wattwise.carbon.live",
    "IntensityReading": "wattwise.carbon.live",
    "StaticSource": "wattwise.carbon.live",
    "default_static_source": "wattwise.carbon.live",
    "make_source": "wattwise.carbon.live",
    "IntensityError": "wattwise.errors",
    "TraceError": "wattwise.errors",
})
