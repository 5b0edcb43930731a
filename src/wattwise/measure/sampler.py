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
from wattwise.providers.base import Kind, Provider
from wattwise.store import SampleRow, Store

MIN_INTERVAL_S = 0.01
MAX_CONSECUTIVE_FAILURES = 20
#: rows kept while writes fail (≈ 100 B each): beyond it the newest rows are counted as lost
MAX_BUFFER_ROWS = 500_000
FINAL_WRITE_ATTEMPTS = 3
#: a boundary within this long after a provider's last reading moves that reading to the boundary (see _restamp)
MIN_READ_GAP_S = 0.025


@dataclass
class _Attached:
    provider: Provider
    label: str
    interval_s: float
    metric_ids: list[int]
    gauges: list[bool]  # per metric: a gauge (its first reading after open covers no interval: not stored)
    active: bool = True
    failures: int = 0
    reads: int = 0
    last_mono_ns: int = 0  # when it was last read
    last_t_us: int = 0  # the stamp of its last reading
    lock: threading.Lock = field(default_factory=threading.Lock)  # providers are not thread-safe


@dataclass
class _Group:
    """Providers with the same interval, read one after the other by one thread."""

    interval_s: float
    members: list[_Attached] = field(default_factory=list)
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    next_at: float = 0.0  # monotonic time of the next tick; a boundary reading pushes it one interval on


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
        """Open a provider, register its metrics and (if running) take its first reading and sample it. False
        if it failed. Before `start()` the first reading is taken by `start()`, with every other provider."""
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
        attached = _Attached(provider, label, interval_s, metric_ids, [spec.kind == Kind.GAUGE for spec in specs])
        if self._running:
            self._read([attached], self.clock.now_us())  # anchors counters at 0 now
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
                    self._read([attached], self.clock.now_us())

    def start(self) -> int:
        """The first reading of every provider (counters anchored at 0), then sampling. Returns its time."""
        t_us = self.clock.now_us()
        self._read([a for a in self._attached if a.active], t_us)
        self._running = True
        for group in list(self._groups.values()):
            self._start_group(group)
        self._flusher = threading.Thread(target=self._flush_loop, name="wattwise-flush", daemon=True)
        self._flusher.start()
        return t_us

    def stop(self) -> list[str]:
        """Final reading of every provider (unless one was just taken), flush everything, close providers.
        Returns the warnings."""
        for group in list(self._groups.values()):
            group.stop.set()
            if group.thread is not None:
                group.thread.join()
        now_ns = time.monotonic_ns()
        last = [a for a in self._attached if a.active and a.failures < MAX_CONSECUTIVE_FAILURES
                and now_ns - a.last_mono_ns > a.interval_s * 0.5e9]  # a reading 1 ms after the last is noise
        self._read(last, self.clock.now_us())
        for attached in self._attached:
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
            group.next_at = time.monotonic() + group.interval_s
            group.thread = threading.Thread(target=self._loop, args=(group,), daemon=True,
                                            name=f"wattwise-sampler-{group.interval_s:g}s")
            group.thread.start()

    def _loop(self, group: _Group) -> None:
        clock, interval, stop = self.clock, group.interval_s, group.stop
        while not stop.wait(max(0.0, group.next_at - time.monotonic())):
            now = time.monotonic()
            if now < group.next_at:  # a boundary reading moved the tick on while we slept
                continue
            members = [a for a in group.members if a.active]
            self._read(members, clock.now_us(), skip_recent=True)
            for attached in members:
                if attached.failures >= MAX_CONSECUTIVE_FAILURES:
                    attached.active = False
                    self._warn(f"provider {attached.label}: stopped after {attached.failures} failures in a row")
            group.next_at += interval
            now = time.monotonic()
            if group.next_at < now:  # fell behind (slow read, suspended machine): skip, do not burst
                group.next_at = now + interval

    def sample_now(self) -> int:
        """A reading of every active provider now, stamped with the returned time: use it as a phase edge, so
        that counters are split exactly there and gauges have a value there. The next regular tick of each
        group comes one interval later (no reading a few ms after the edge)."""
        t_us = self.clock.now_us()
        self._read([a for a in self._attached if a.active], t_us, edge=True)
        now = time.monotonic()
        for group in self._groups.values():
            group.next_at = max(group.next_at, now + group.interval_s)
        return t_us

    def _restamp(self, attached: _Attached, t_us: int) -> bool:
        """Move a provider's reading of a few ms ago to the boundary instead of reading it again: two readings
        that close give a meaningless rate (a /proc/stat counter moves in 10 ms steps). Exact at a phase edge,
        where the work changes after the edge. False when that reading is no longer in the buffer. The caller
        holds `attached.lock`."""
        old = attached.last_t_us
        ids = set(attached.metric_ids)
        changed = False
        with self._lock:
            for i in range(len(self._buffer) - 1, max(-1, len(self._buffer) - 4097), -1):
                metric_id, stamp, value = self._buffer[i]
                if stamp == old and metric_id in ids:
                    self._buffer[i] = (metric_id, t_us, value)
                    changed = True
        if changed:
            attached.last_t_us = t_us
        return changed

    def _read(self, members: list[_Attached], t_us: int, skip_recent: bool = False, edge: bool = False) -> None:
        """Read each provider; rows stamped `t_us` (or later, if a concurrent read of the same provider was
        stamped later: a provider's readings stay in time order). A provider read within `MIN_READ_GAP_S` is
        not read again: a tick (`skip_recent`) skips it, a phase edge (`edge`) moves that reading to `t_us`.
        Decided under the provider's lock, so a tick and an edge racing each other give one reading."""
        rows: list[SampleRow] = []
        stamp = t_us
        for attached in members:
            with attached.lock:
                gap_ns = min(MIN_READ_GAP_S, attached.interval_s / 4) * 1e9
                recent = attached.reads > 0 and time.monotonic_ns() - attached.last_mono_ns < gap_ns
                if recent and (skip_recent or (edge and self._restamp(attached, t_us))):
                    continue
                try:
                    values = attached.provider.read()
                except Exception as exc:
                    attached.failures += 1
                    if attached.failures == 1:
                        self._warn(f"provider {attached.label}: read failed: {exc}")
                    continue
                attached.failures = 0
                first = attached.reads == 0
                attached.reads += 1
                attached.last_mono_ns = time.monotonic_ns()
                stamp = t_us if t_us > attached.last_t_us else attached.last_t_us + 1
                attached.last_t_us = stamp
            for metric_id, value, gauge in zip(attached.metric_ids, values, attached.gauges, strict=False):
                if value is not None and not (first and gauge):
                    rows.append((metric_id, stamp, float(value)))
        if not rows:
            return
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
                self.flush(keep_recent_us=int(MIN_READ_GAP_S * 2e6))
            except Exception as exc:  # the database may be briefly unavailable (or full): keep the buffer
                self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        self.write_error = f"{type(exc).__name__}: {exc}"
        self._warn(f"writing samples failed, retrying: {self.write_error}")

    def flush(self, keep_recent_us: int = 0) -> None:
        """Write the buffered rows; with `keep_recent_us`, rows stamped that recently stay buffered (a phase edge
        may still move them, see `_restamp`)."""
        with self._lock:
            if keep_recent_us and self._buffer:
                newest = self.clock.now_us() - keep_recent_us
                rows = [row for row in self._buffer if row[1] < newest]
                if len(rows) < len(self._buffer):
                    self._buffer = [row for row in self._buffer if row[1] >= newest]
                else:
                    self._buffer = []
            else:
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
