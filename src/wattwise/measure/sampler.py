"""The sampler: each provider read on its own thread at its own interval, samples buffered and
bulk-written to the store by a flusher thread.

A provider that fails is recorded as a warning and retried; after `MAX_CONSECUTIVE_FAILURES` it is
stopped (also a warning). The run goes on either way.
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


@dataclass
class _Attached:
    provider: Provider
    label: str
    interval_s: float
    metric_ids: list[int]
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    failures: int = 0
    reads: int = 0


class Sampler:
    def __init__(
        self, store: Store, run_id: int, *, clock: Clock | None = None, flush_interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock or Clock()
        self.flush_interval_s = flush_interval_s
        self.warnings: list[str] = []
        self._attached: list[_Attached] = []
        self._buffer: list[SampleRow] = []
        self._lock = threading.Lock()
        self._running = False
        self._flush_stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.samples_written = 0

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
        self._attached.append(attached)
        self._read_once(attached)  # a sample at attach time anchors counters at 0
        if self._running:
            self._start_thread(attached)
        return True

    def detach(self, provider: Provider) -> None:
        """Take a last reading and stop sampling one provider (e.g. a container that is removed)."""
        for attached in self._attached:
            if attached.provider is provider:
                self._stop_thread(attached, final_read=True)

    def start(self) -> None:
        self._running = True
        for attached in self._attached:
            self._start_thread(attached)
        self._flusher = threading.Thread(target=self._flush_loop, name="wattwise-flush", daemon=True)
        self._flusher.start()

    def stop(self) -> list[str]:
        """Final reading of every provider, flush everything, close providers. Returns the warnings."""
        for attached in self._attached:
            self._stop_thread(attached, final_read=True)
        self._running = False
        self._flush_stop.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
        for attached in self._attached:
            try:
                attached.provider.close()
            except Exception as exc:
                self._warn(f"provider {attached.label}: close failed: {exc}")
        return self.warnings

    # --- sampling -------------------------------------------------------------------------------
    def _start_thread(self, attached: _Attached) -> None:
        if attached.thread is None:
            attached.thread = threading.Thread(
                target=self._loop, args=(attached,), daemon=True, name=f"wattwise-{attached.label}"
            )
            attached.thread.start()

    def _stop_thread(self, attached: _Attached, final_read: bool) -> None:
        if attached.stop.is_set():
            return
        attached.stop.set()
        if attached.thread is not None:
            attached.thread.join()
        if final_read and attached.failures < MAX_CONSECUTIVE_FAILURES:
            self._read_once(attached)

    def _loop(self, attached: _Attached) -> None:
        next_at = time.monotonic() + attached.interval_s
        while not attached.stop.wait(max(0.0, next_at - time.monotonic())):
            self._read_once(attached)
            if attached.failures >= MAX_CONSECUTIVE_FAILURES:
                self._warn(f"provider {attached.label}: stopped after {attached.failures} failures in a row")
                return
            next_at += attached.interval_s
            now = time.monotonic()
            if next_at < now:  # fell behind (slow read, suspended machine): skip, do not burst
                next_at = now + attached.interval_s

    def _read_once(self, attached: _Attached) -> None:
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
            self._buffer.extend(rows)

    # --- writing --------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._flush_stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception as exc:  # the database may be briefly unavailable: keep the buffer
                self._warn(f"writing samples failed, will retry: {exc}")

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
