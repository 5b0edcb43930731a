"""Parsing and formatting of quantities. Internally wattwise uses SI units: s, J, W, B, g."""

from __future__ import annotations

import re

from wattwise.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|sec|m|min|h|d)?\s*$")
_FACTORS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    None: 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration_s(text: str | float | int) -> float:
    """Parse '100ms', '5s', '2.5', '1h', '30 min' into seconds. A bare number means seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ConfigError(f"duration must not be negative: {text}")
        return float(text)
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigError(
            f"cannot read duration {text!r}: use a number with a unit, e.g. 100ms, 5s, 2min, 1h"
        )
    return float(match.group(1)) * _FACTORS[match.group(2)]


def format_si(value: float | None, unit: str, digits: int = 3) -> str:
    """Format with an SI prefix: 1234.5 J -> '1.23 kJ'."""
    if value is None:
        return "–"
    # down to pico, so small carbon figures stay in one unit family (957 ng, not 9.57e-07 g next to µg)
    prefixes = [
        (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")
    ]
    magnitude = abs(value)
    if magnitude == 0:
        return f"0 {unit}"
    for factor, prefix in prefixes:
        if magnitude >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


#: joules in one kilowatt-hour: the one conversion between stored energy (J) and intensities in g/kWh
J_PER_KWH = 3.6e6
