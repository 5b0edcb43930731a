"""What the measured software prints: logs kept with the run, notes, SCI functional units and custom
metrics read line by line from standard output."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from wattwise.measure.notes import parse_note_line
from wattwise.measure.output import StreamCapture
from wattwise.measure.scenario.model import CustomMetric

SCI_R_RE = re.compile(r"^\s*GMT_SCI_R=(\d+(?:\.\d+)?)\s*$")
_DIGITS_SCALE = {10: 1_000_000, 13: 1_000, 16: 1}


def parse_timestamp_us(text: str) -> int | None:
    """Unix time in s (10 digits, decimals allowed), ms (13), µs (16) or ns (19) -> µs; None otherwise."""
    text = text.strip()
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    if len(whole) == 19 and not fraction:
        return int(whole) // 1000
    scale = _DIGITS_SCALE.get(len(whole))
    if scale is None:
        return None
    value = int(whole) * scale
    if fraction:
        value += int(float("0." + fraction) * scale)
    return value


@dataclass
class LineOptions:
    """How one stream's lines are read."""

    source: str  # note and metric source: the step or service name
    notes: bool = False
    sci: bool = False
    metrics: bool = True


@dataclass
class Collected:
    """Everything read from outputs during a run (shared by all reader threads)."""

    custom_metrics: dict[str, CustomMetric] = field(default_factory=dict)
    notes: list[tuple[int, str, str]] = field(default_factory=list)
    sci_r: float = 0.0
    sci_lines: int = 0
    metric_samples: dict[str, list[tuple[int, float, str]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_line(self, line: str, options: LineOptions) -> None:
        if options.notes:
            note = parse_note_line(line)
            if note is not None:
                with self.lock:
                    self.notes.append((note[0], options.source, note[1]))
        if options.sci:
            match = SCI_R_RE.match(line)
            if match:
                with self.lock:
                    self.sci_r += float(match.group(1))
                    self.sci_lines += 1
        if options.metrics:
            for metric in self.custom_metrics.values():
                found = metric.regex.search(line)
                if not found:
                    continue
                raw_t, raw_v = found.group(metric.timestamp_group), found.group(metric.value_group)
                t_us = parse_timestamp_us(raw_t or "")
                try:
                    value = float(raw_v)
                except (TypeError, ValueError):
                    value = None
                with self.lock:
                    if t_us is None or value is None:
                        warning = (
                            f"custom metric {metric.name}: cannot read "
                            + (f"timestamp {raw_t!r}" if t_us is None else f"value {raw_v!r}")
                            + f" in {line.strip()[:100]!r}"
                        )
                        if warning not in self.warnings and len(self.warnings) < 50:
                            self.warnings.append(warning)
                        continue
                    self.metric_samples.setdefault(metric.name, []).append((t_us, value, options.source))

    def read_text(self, text: str, options: LineOptions) -> None:
        for line in text.splitlines():
            self.read_line(line, options)


@dataclass
class RunningCommand:
    """A started process with its two readers."""

    process: subprocess.Popen[bytes]
    stdout: StreamCapture
    stderr: StreamCapture
    start_us: int
    description: str

    @classmethod
    def start(
        cls,
        process: subprocess.Popen[bytes],
        start_us: int,
        description: str,
        on_stdout: Callable[[str], None] | None = None,
        echo_prefix: str | None = None,
    ) -> RunningCommand:
        assert process.stdout is not None and process.stderr is not None
        out = StreamCapture(process.stdout, on_stdout, echo_prefix)
        err = StreamCapture(process.stderr, None, echo_prefix)
        out.start()
        err.start()
        return cls(process, out, err, start_us, description)

    def finish(self, join_timeout_s: float = 10.0) -> None:
        self.stdout.join(join_timeout_s)
        self.stderr.join(join_timeout_s)

    def tail(self, lines: int = 30) -> str:
        """The last lines of stdout and stderr, for an error message."""
        parts = []
        for name, capture in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = capture.text.rstrip()
            if text:
                kept = text.splitlines()[-lines:]
                parts.append(f"--- {name} (last {len(kept)} lines) ---\n" + "\n".join(kept))
        return "\n".join(parts) or "(no output)"
