"""The Prometheus text exposition format (version 0.0.4), written directly for speed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """`a="1",b="2"` (no braces)."""
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)


def format_value(value: float | int) -> str:
    """Integers and integral floats without a fraction, other floats in their shortest exact form."""
    if isinstance(value, int):  # bool never reaches here; int subclasses print as numbers too
        return str(int(value))
    if value.is_integer():
        return str(int(value)) if -1e15 < value < 1e15 else repr(float(value))
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


@dataclass
class Family:
    name: str
    kind: str  # counter | gauge | untyped
    help: str
    samples: list[str] = field(default_factory=list)  # rendered sample lines without newline

    def add(self, labels: str, value: float | int) -> None:
        """`labels`: rendered by :func:`label_text` (may be empty)."""
        if labels:
            self.samples.append(f"{self.name}{{{labels}}} {format_value(value)}")
        else:
            self.samples.append(f"{self.name} {format_value(value)}")


def render(families: Iterable[Family]) -> str:
    """The exposition text; families without samples are left out."""
    parts: list[str] = []
    for family in families:
        if not family.samples:
            continue
        parts.append(f"# HELP {family.name} {escape_help(family.help)}")
        parts.append(f"# TYPE {family.name} {family.kind}")
        parts.extend(family.samples)
    return "\n".join(parts) + "\n" if parts else ""
