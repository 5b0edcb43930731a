"""GMT note lines: `<unix-time> <text>` printed by the measured program.

GMT uses microseconds (16 digits). Seconds (10), milliseconds (13) and nanoseconds (19 digits) are
recognised by their length, so a program that prints `time.time_ns()` works as well.
"""

from __future__ import annotations

import re

_NOTE_RE = re.compile(r"^\s*(\d{10}|\d{13}|\d{16}|\d{19})(\.\d+)?\s+(\S.*?)\s*$")
_SCALE = {10: 1_000_000, 13: 1_000, 16: 1, 19: 0}


def parse_note_line(line: str) -> tuple[int, str] | None:
    """(t_us, text) when the line is a note, else None."""
    match = _NOTE_RE.match(line)
    if not match:
        return None
    digits, fraction = match.group(1), match.group(2)
    scale = _SCALE[len(digits)]
    if not scale:  # nanoseconds
        return int(digits) // 1000, match.group(3)
    t_us = int(digits) * scale
    if fraction:  # e.g. time.time() printed as 1700000000.75
        t_us += round(float(fraction) * scale)
    return t_us, match.group(3)
