"""Timestamps: wall-clock microseconds anchored once, advanced by the monotonic clock.

A wall clock that jumps (NTP step, manual change) mid-run would reorder samples; the monotonic clock
does not jump, so every timestamp is anchor_wall + (monotonic - anchor_monotonic).
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self) -> None:
        self._wall_ns = time.time_ns()
        self._mono_ns = time.monotonic_ns()

    def now_us(self) -> int:
        return (self._wall_ns + time.monotonic_ns() - self._mono_ns) // 1000

    def to_wall_us(self, monotonic_s: float) -> int:
        return (self._wall_ns + int(monotonic_s * 1e9) - self._mono_ns) // 1000
