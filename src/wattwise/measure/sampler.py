"""The sampler: every provider read at its own interval, samples buffered and bulk-written to the store by a
flusher thread. Providers that share an interval share one thread (one wake-up per tick: on a
virtual machine a wake-up costs more CPU than reading a few /proc or sysfs files).

A provider that fails is recorded as a warning and retried; after `MAX_CONSECUTIVE_FAILURES` it is
stopped (also a warning). The run goes on either way.

A write that fails (database gone, disk full) keeps the rows in a bounded buffer (`max_buffer_rows`) and is
retried at the next flush and `FINAL_WRITE_ATTEMPTS` times at `stop()`; rows beyond the bound, and rows still
unwritten after the last attempt, are counted in `samples_lost` with the error in `write_error`, so that the
run can be closed as incomplete rather than finished.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from wattwise.measure.clock import Clock
from wattwise.providers.base import Provider
from wattwise.store import SampleRow, Store

MIN_INTERVAL_S = 0.01
MAX_CONSECUTIVE_FAILURES = 20
#: rows kept while writes fail (≈ 100 B each): beyond it the newest rows are counted as lost
MAX_BUFFER_ROWS = 500_000
FINAL_WRITE_ATTEMPTS = 3


@dataclass
class _Attached:
    provider: Provider
    label: str
    interval_s: float
    metric_ids: list[int]
    active: bool = True
    failures: int = 0
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # providers are not thread-safe


@dataclass
class _Group:
    """Providers with the same interval, read one after the other by one thread."""

    interval_s: float
    members: list[_Attached] = field(default_factory=list)
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class Sampler:
    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        clock: Clock | None = None,
        flush_interval_s: float = 1.0,
        max_buffer_rows: int = MAX_BUFFER_ROWS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock or Clock()
        self.flush_interval_s = flush_interval_s
        self.warnings: list[str] = []
        self._attached: list[_Attached] = []
        self._groups: dict[float, _Group] = {}
        self._buffer: list[SampleRow] = []
        self._lock = threading.Lock()
        self._running = False
        self._flush_stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.samples_written = 0
        self.samples_lost = 0
        self.write_error: str | None = None
        self.max_buffer_rows = max_buffer_rows

    # --- set-up ---------------------------------------------------------------------------------
    def attach(self, provider: Provider, interval_s: float | None = None, label: str | None = None) -> bool:
        """Open a provider, register its metrics and (if running) start sampling it. False if it failed."""
        label = label or provider.name
        interval_s = max(
            MIN_INTERVAL_S, interval_s if interval_s is not None else provider.default_interval_s
        )
        try:
            provider.open()
            specs = list(provider.specs())
        except Exception as exc:
            self._warn(f"provider {label}: could not start: {exc}")
            return False
        metric_ids = [self.store.add_metric(self.run_id, spec, provider.name) for spec in specs]
        attached = _Attached(provider, label, interval_s, metric_ids)
        self._read_once(attached)  # a sample at attach time anchors counters at 0
        with self._lock:
            self._attached.append(attached)
            group = self._groups.setdefault(interval_s, _Group(interval_s))
            group.members = [*group.members, attached]  # the running loop iterates over a snapshot
        if self._running:
            self._start_group(group)
        return True

    def detach(self, provider: Provider) -> None:
        """Take a last reading and stop sampling one provider (e.g. a container that is removed)."""
        for attached in self._attached:
            if attached.provider is provider and attached.active:
                attached.active = False
                if attached.failures < MAX_CONSECUTIVE_FAILURES:
                    self._read_once(attached)

    def start(self) -> None:
        self._running = True
        for group in list(self._groups.values()):
            self._start_group(group)
        self._flusher = threading.Thread(target=self._flush_loop, name="wattwise-flush", daemon=True)
        self._flusher.start()

    def stop(self) -> list[str]:
        """Final reading of every provider, flush everything, close providers. Returns the warnings."""
        for group in list(self._groups.values()):
            group.stop.set()
            if group.thread is not None:
                group.thread.join()
        for attached in self._attached:
            if attached.active and attached.failures < MAX_CONSECUTIVE_FAILURES:
                self._read_once(attached)  # the last sample closes the last phase
            attached.active = False
        self._running = False
        self._flush_stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            for attempt in range(FINAL_WRITE_ATTEMPTS):
                try:
                    self.flush()
                    break
                except Exception as exc:
                    self._write_failed(exc)
                    if attempt + 1 < FINAL_WRITE_ATTEMPTS:
                        time.sleep(0.2 * (attempt + 1))
            with self._lock:
                self.samples_lost += len(self._buffer)
                self._buffer = []
            if self.samples_lost:
                self._warn(f"{self.samples_lost} samples could not be written: {self.write_error}")
        finally:
            for attached in self._attached:
                try:
                    attached.provider.close()
                except Exception as exc:
                    self._warn(f"provider {attached.label}: close failed: {exc}")
        return self.warnings

    # --- sampling -------------------------------------------------------------------------------
    def _start_group(self, group: _Group) -> None:
        if group.thread is None:
            group.thread = threading.Thread(target=self._loop, args=(group,), daemon=True,
                                            name=f"wattwise-sampler-{group.interval_s:g}s")
            group.thread.start()

    def _loop(self, group: _Group) -> None:
        next_at = time.monotonic() + group.interval_s
        while not group.stop.wait(max(0.0, next_at - time.monotonic())):
            for attached in group.members:
                if not attached.active:
                    continue
                self._read_once(attached)
                if attached.failures >= MAX_CONSECUTIVE_FAILURES:
                    attached.active = False
                    failures = attached.failures
                    self._warn(f"provider {attached.label}: stopped after {failures} failures in a row")
            next_at += group.interval_s
            now = time.monotonic()
            if next_at < now:  # fell behind (slow read, suspended machine): skip, do not burst
                next_at = now + group.interval_s

    def sample_now(self) -> int:
        """Read every active provider at once (e.g. at a phase boundary, so that counters are split there and
        not at the next tick). Returns the boundary timestamp to use, taken before the reads."""
        t_us = self.clock.now_us()
        for attached in list(self._attached):
            if attached.active:
                self._read_once(attached)
        return t_us

    def _read_once(self, attached: _Attached) -> None:
        with attached.lock:
            try:
                values = attached.provider.read()
            except Exception as exc:
                attached.failures += 1
                if attached.failures == 1:
                    self._warn(f"provider {attached.label}: read failed: {exc}")
                return
            t_us = self.clock.now_us()
            attached.failures = 0
        attached.reads += 1
        rows = [
            (mid, t_us, float(v))
            for mid, v in zip(attached.metric_ids, values, strict=False)
            if v is not None
        ]
        with self._lock:
            room = self.max_buffer_rows - len(self._buffer)
            if room < len(rows):
                self.samples_lost += len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            self._buffer.extend(rows)

    # --- writing --------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._flush_stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception as exc:  # the database may be briefly unavailable (or full): keep the buffer
                self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        self.write_error = f"{type(exc).__name__}: {exc}"
        self._warn(f"writing samples failed, retrying: {self.write_error}")

    def flush(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            self.store.add_samples(rows)
        except Exception:
            with self._lock:
                self._buffer[:0] = rows
            raise
        self.samples_written += len(rows)

    def _warn(self, message: str) -> None:
        with self._lock:
            if message not in self.warnings:
                self.warnings.append(message)

    @property
    def providers(self) -> list[str]:
        return [a.label for a in self._attached]
