"""Power runs: a power series (step function of samples) plus the events a program logged.

Reader for the "pinpoint" folder layout written by external power meters:

``measurements.csv``
    One power value in mW per line (integers; decimals are accepted), no header. The last two lines are the
    recording's start and end Unix times (float seconds). With N power lines, sample i was taken at
    ``start + i * (end - start) / N`` and stands for the interval up to the next sample.
``events.csv``
    ``<unix time float>, <label>`` per line, no header, as the program logged them.

Power meters also record fixed windows before and after the program (``-b`` / ``-a``), inside
[start, end]: the program was launched at ``start + before_s`` and ended at ``end - after_s``. When those
lengths are given, a job is counted from its launch (interpreter start and imports included) to its end;
otherwise from its first to its last logged event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wattwise.errors import RunError as RunError


@dataclass(frozen=True)
class Event:
    time_s: float  # Unix time
    label: str
    line: int = 0  # line in events.csv (1-based), 0 when not from a file


@dataclass
class PowerRun:
    """A measured run. Sample i has power ``power_w[i]`` over [edges_s[i], edges_s[i+1])."""

    name: str
    source: str
    edges_s: np.ndarray  # N+1 Unix times
    power_w: np.ndarray  # N values, W
    events: list[Event]
    launch_s: float | None = None  # program launch (start + before window), when known
    exit_s: float | None = None  # program end (end - after window), when known
    events_source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    # -- geometry ----------------------------------------------------------------------------------
    @property
    def times_s(self) -> np.ndarray:
        """Sample times (the start of each sample's interval)."""
        return self.edges_s[:-1]

    @property
    def start_s(self) -> float:
        return float(self.edges_s[0])

    @property
    def end_s(self) -> float:
        return float(self.edges_s[-1])

    @property
    def job_start_s(self) -> float:
        """Launch when known, else the first event."""
        if self.launch_s is not None:
            return self.launch_s
        if not self.events:
            raise RunError(f"{self.events_source or self.source}: no events, so the job's start is unknown")
        return self.events[0].time_s

    @property
    def job_end_s(self) -> float:
        """Program end when known, else the last event."""
        if self.exit_s is not None:
            return self.exit_s
        if not self.events:
            raise RunError(f"{self.events_source or self.source}: no events, so the job's end is unknown")
        return self.events[-1].time_s

    def energy_between(self, t0_s: float, t1_s: float, baseline_w: float = 0.0) -> float:
        """Energy (J) of the step function between Unix times t0 and t1, minus ``baseline_w`` × time."""
        lo = np.clip(self.edges_s[:-1], t0_s, t1_s)
        hi = np.clip(self.edges_s[1:], t0_s, t1_s)
        return float(np.sum((self.power_w - baseline_w) * (hi - lo)))

    def mask_between(self, t0_s: float, t1_s: float) -> np.ndarray:
        """Samples whose time lies in [t0, t1)."""
        times = self.times_s
        return (times >= t0_s) & (times < t1_s)

    def slice_between(self, t0_s: float, t1_s: float) -> slice:
        """Samples whose time lies in [t0, t1), as a slice (sample times are sorted)."""
        times = self.times_s
        return slice(int(np.searchsorted(times, t0_s, "left")), int(np.searchsorted(times, t1_s, "left")))

    def window_baseline_w(self) -> float:
        """Mean power of the samples in the before and after windows (the idle machine)."""
        if self.launch_s is None and self.exit_s is None:
            raise RunError(f"{self.source}: a baseline from the windows needs --before and/or --after")
        mask = np.zeros(len(self.power_w), dtype=bool)
        if self.launch_s is not None:
            mask |= self.mask_between(self.start_s, self.launch_s)
        if self.exit_s is not None:
            mask |= self.mask_between(self.exit_s, self.end_s + 1.0)
        if not mask.any():
            raise RunError(f"{self.source}: the before/after windows hold no samples")
        return float(self.power_w[mask].mean())

    def with_windows(self, before_s: float | None, after_s: float | None) -> PowerRun:
        """Set the program's launch and end from the meter's before/after window lengths (checked)."""
        duration = self.end_s - self.start_s
        before = before_s or 0.0
        after = after_s or 0.0
        if before < 0 or after < 0:
            raise RunError(f"{self.source}: --before and --after must not be negative")
        if before + after >= duration:
            raise RunError(
                f"{self.source}: the before ({before:g} s) and after ({after:g} s) windows together are "
                f"not shorter than the recording ({duration:.3f} s)"
            )
        self.launch_s = self.start_s + before if before_s is not None else None
        self.exit_s = self.end_s - after if after_s is not None else None
        where = self.events_source or self.source
        if self.events and self.launch_s is not None and self.events[0].time_s < self.launch_s:
            first = self.events[0]
            raise RunError(
                f"{where}:{first.line}: first event {first.label!r} is {self.launch_s - first.time_s:.3f} s "
                f"before the program's launch (recording start + {before:g} s); is --before too long?"
            )
        if self.events and self.exit_s is not None and self.events[-1].time_s > self.exit_s:
            last = self.events[-1]
            raise RunError(
                f"{where}:{last.line}: last event {last.label!r} is {last.time_s - self.exit_s:.3f} s "
                f"after the program's end (recording end − {after:g} s); is --after too long?"
            )
        return self


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.exists():
        raise RunError(f"{path}: {what} file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot read {what} file: {exc}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise RunError(f"{path}: {what} file is empty")
    return lines


def _finite(text: str, path: Path, number: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RunError(f"{path}:{number}: cannot read {text.strip()!r} as {what}") from None
    if not math.isfinite(value):
        raise RunError(f"{path}:{number}: {what} must be a finite number, got {text.strip()!r}")
    return value


def read_measurements(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a pinpoint measurements.csv: returns (edges_s, power_w)."""
    lines = _read_lines(path, "measurements")
    if len(lines) < 3:
        raise RunError(
            f"{path}: has {len(lines)} line(s); needs at least one power line (mW) and the two time lines "
            f"(start and end Unix times) at the end"
        )
    try:  # fast path; the slow one below names the first bad line
        values = np.array(lines[:-2], dtype=float)
        ok = bool(np.all(np.isfinite(values)) and np.all(values >= 0))
    except ValueError:
        ok = False
    if not ok:
        values = np.empty(len(lines) - 2)
        for i, line in enumerate(lines[:-2]):
            text = line.strip()
            if not text:
                raise RunError(f"{path}:{i + 1}: empty line; each line must hold one power value in mW")
            value = _finite(text, path, i + 1, "a power value in mW")
            if value < 0:
                raise RunError(f"{path}:{i + 1}: power must not be negative, got {text!r} mW")
            values[i] = value
    n = len(values)
    start = _finite(lines[-2], path, n + 1, "the start time (Unix seconds, second-to-last line)")
    end = _finite(lines[-1], path, n + 2, "the end time (Unix seconds, last line)")
    if end <= start:
        raise RunError(
            f"{path}:{n + 2}: the end time {end!r} is not after the start time {start!r} (line {n + 1}); "
            f"the last two lines must be the recording's start and end Unix times"
        )
    edges = start + np.arange(n + 1) * ((end - start) / n)
    edges[-1] = end
    return edges, values / 1000.0


def read_events(path: Path) -> list[Event]:
    """Read a pinpoint events.csv (``<unix time>, <label>`` per line), sorted by time."""
    lines = _read_lines(path, "events")
    events: list[Event] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        time_text, comma, label = line.partition(",")
        if not comma:
            raise RunError(f"{path}:{i}: expected '<unix time>, <label>', got {line.strip()!r}")
        time_s = _finite(time_text, path, i, "an event time (Unix seconds)")
        label = label.strip()
        if not label:
            raise RunError(f"{path}:{i}: the event has an empty label")
        events.append(Event(time_s, label, i))
    events.sort(key=lambda e: e.time_s)
    return events


def read_pinpoint(folder: str | Path, *, before_s: float | None = None, after_s: float | None = None,
                  name: str | None = None) -> PowerRun:
    """Read a pinpoint-layout run folder; ``before_s``/``after_s`` are the meter's window lengths."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise RunError(f"{folder}: not a folder; a run folder holds measurements.csv and events.csv")
        raise RunError(f"{folder}: run folder not found")
    edges, power = read_measurements(folder / "measurements.csv")
    events_path = folder / "events.csv"
    events = read_events(events_path)
    interval = (edges[-1] - edges[0]) / len(power)
    for event in events:
        if event.time_s < edges[0] - interval or event.time_s > edges[-1] + interval:
            raise RunError(
                f"{events_path}:{event.line}: event {event.label!r} at {event.time_s!r} lies outside the "
                f"recording [{edges[0]!r}, {edges[-1]!r}] of measurements.csv; do the files belong together?"
            )
    run = PowerRun(name or str(folder), str(folder), edges, power, events, events_source=str(events_path))
    if before_s is not None or after_s is not None:
        run.with_windows(before_s, after_s)
    return run


def write_pinpoint(folder: str | Path, power_w: np.ndarray, start_s: float, end_s: float,
                   events: list[tuple[float, str]]) -> Path:
    """Write a run in the pinpoint layout: ``power_w`` evenly spaced over [start_s, end_s], rounded to
    integer mW."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [str(round(float(p) * 1000.0)) for p in power_w]
    lines += [repr(float(start_s)), repr(float(end_s))]
    (folder / "measurements.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "events.csv").write_text(
        "".join(f"{float(t)!r}, {label}\n" for t, label in events), encoding="utf-8"
    )
    return folder
