"""The phases of a scenario run: edges taken as readings of every provider, stored through the session."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from wattwise.measure.session import MeasurementSession

RUNTIME = "[RUNTIME]"
ProgressCallback = Callable[[str, float, float | None], None]


@dataclass
class PhaseRecord:
    name: str
    start_us: int
    end_us: int
    parent: str | None = None
    hidden: bool = False


class Phases:
    def __init__(self, session: MeasurementSession, progress: ProgressCallback | None) -> None:
        self.session = session
        self.progress = progress
        self.records: list[PhaseRecord] = []
        self.current: str | None = None
        self.check_cancel: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def phase(self, name: str, parent: str | None = None, hidden: bool = False) -> Iterator[None]:
        if name != "[REMOVE]":  # cleanup always runs
            self.check_cancel()
        start = self.session.boundary()  # a reading of every provider: counters split exactly here
        self.session.begin_phase(name, start, parent=parent)
        if parent is None:
            self.current = name
        if self.progress:
            self.progress(name if parent is None else f"{parent} {name}", 0.0, None)
        try:
            yield
        finally:
            self.records.append(PhaseRecord(name, start, self.session.boundary(), parent, hidden))

    def sleep(self, name: str, seconds: float) -> None:
        with self.phase(name):
            end = time.monotonic() + seconds
            while True:
                left = end - time.monotonic()
                if self.progress:
                    self.progress(name, seconds - max(left, 0.0), seconds)
                if left <= 0:
                    return
                self.check_cancel()
                time.sleep(min(0.1, left))

    def save(self) -> None:
        """Top-level phases in order, each [RUNTIME] followed by its flow sub-phases."""
        subs = [r for r in self.records if r.parent]
        for record in self.records:
            if record.parent:
                continue
            self.session.add_phase(record.name, record.start_us, record.end_us)
            for sub in subs:
                if sub.parent == record.name:
                    self.session.add_phase(sub.name, sub.start_us, sub.end_us, hidden=sub.hidden, parent=sub.parent)
