"""Running the program of a campaign: one execution (a `Segment`), its events read live, stopped at an event.

Events come from note lines ``<unix time> <label>`` on its stdout, lines ``<unix time>, <label>`` appended to the
file named by $WATTWISE_EVENTS_FILE, and with ``stdout_events`` every other stdout line (timed on arrival).
Processes are started and signalled through `wattwise.measure.process` (own process group, so that a stop
reaches the program's children too).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.errors import WattwiseError
from wattwise.jobmodel.meters import ExperimentError
from wattwise.jobmodel.pinpoint import Event
from wattwise.measure.process import signal_group, start_process

__all__ = ["EVENTS_ENV", "Segment", "StopRule", "run_program"]

EVENTS_ENV = "WATTWISE_EVENTS_FILE"


@dataclass
class Segment:
    """One execution of the program inside a recording."""

    argv: list[str]
    launch_s: float
    exit_s: float
    exit_code: int | None
    stopped: bool  # stopped by the campaign at an event
    events: list[Event]
    output: str = ""


#: a note line with Unix seconds and a fraction, e.g. "1700000000.25 Start training" (the integer forms with
#: 10, 13, 16 or 19 digits are read by wattwise.measure.notes)
_SECONDS_NOTE = re.compile(r"^\s*(\d{10}\.\d+)\s+(\S.*)$")


class _EventSource:
    """Collects events live from stdout and the events file."""

    def __init__(self, events_file: Path, stdout_events: bool) -> None:
        self.events_file = events_file
        self.stdout_events = stdout_events
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._file_pos = 0
        self._file_line = 0

    def add(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def read_stdout(self, stream: Any) -> None:
        from wattwise.measure.notes import parse_note_line

        for raw in iter(stream.readline, b""):
            now = time.time()
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            seconds = _SECONDS_NOTE.match(line)
            note = parse_note_line(line)
            if seconds is not None:
                self.add(Event(float(seconds.group(1)), seconds.group(2).strip()))
            elif note is not None:
                self.add(Event(note[0] / 1e6, note[1]))
            elif self.stdout_events and line.strip():
                self.add(Event(now, line.strip()))

    def poll_file(self) -> None:
        try:
            with self.events_file.open("rb") as handle:
                handle.seek(self._file_pos)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1
        self._file_pos += complete
        for raw in data[:complete].decode(errors="replace").splitlines():
            self._file_line += 1
            time_text, comma, label = raw.partition(",")
            try:
                t = float(time_text)
            except ValueError:
                continue
            if comma and label.strip() and math.isfinite(t):
                self.add(Event(t, label.strip(), self._file_line))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)


StopRule = Callable[[list[Event]], bool]  # events so far (time order) → stop now?


def run_program(argv: Sequence[str], *, stop_when: StopRule | None = None, stop_signal: int = signal.SIGINT,
                stdout_events: bool = False, env: dict[str, str] | None = None, cwd: str | None = None,
                timeout_s: float | None = None, grace_s: float = 10.0) -> Segment:
    """Run ``argv`` to its end, or until ``stop_when(events)`` says so (then signal its process group)."""
    if not argv:
        raise ExperimentError("no command given")
    with tempfile.TemporaryDirectory(prefix="wattwise-events-") as tmp:
        events_file = Path(tmp) / "events.csv"
        source = _EventSource(events_file, stdout_events)
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env[EVENTS_ENV] = str(events_file)
        launch = time.time()
        try:
            process = start_process(argv, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, new_session=True)
        except WattwiseError as exc:
            raise ExperimentError(str(exc)) from None
        reader = threading.Thread(target=source.read_stdout, args=(process.stdout,), daemon=True)
        reader.start()
        stopped = False
        try:
            while process.poll() is None:
                source.poll_file()
                if stop_when is not None and not stopped:
                    events = sorted(source.snapshot(), key=lambda e: e.time_s)
                    if stop_when(events):
                        stopped = True
                        signal_group(process, stop_signal)
                        try:
                            process.wait(timeout=grace_s)
                        except subprocess.TimeoutExpired:
                            signal_group(process, signal.SIGKILL)
                        break
                if timeout_s is not None and time.time() - launch > timeout_s:
                    signal_group(process, signal.SIGKILL)
                    process.wait()
                    raise ExperimentError(f"{argv[0]!r} ran longer than the timeout ({timeout_s:g} s)")
                try:
                    process.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:
            if process.poll() is None:
                signal_group(process, signal.SIGKILL)
                process.wait()
            raise
        process.wait()
        exit_s = time.time()
        reader.join(timeout=5)
        source.poll_file()
    events = sorted(source.snapshot(), key=lambda e: e.time_s)
    return Segment(list(argv), launch, exit_s, process.returncode, stopped, events, "\n".join(source.lines))
