"""The sampler's bounded spool retries until the disk has room again; the process helper stops what it starts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wattwise.measure.process import owner_alive, process_start_ticks, start_process, stop_process
from wattwise.measure.sampler import Sampler
from wattwise.providers.base import Availability, Kind, MetricSpec, Provider
from wattwise.store import Store


class Wide(Provider):
    """A real provider with 50 counters (fills a small disk fast)."""

    name = "wide"
    description = "50 counters"

    def __init__(self) -> None:
        self.reads = 0

    def availability(self) -> Availability:
        return Availability.yes()

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec(f"c{i}_total", "1", Kind.COUNTER) for i in range(50)]

    def read(self) -> Sequence[float | None]:
        self.reads += 1
        return [float(self.reads)] * 50


def _wait_for(predicate, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_writes_that_fail_on_a_full_disk_are_retried_and_nothing_is_lost_once_there_is_room(
    small_disk: Path,
) -> None:
    store = Store(f"sqlite:///{small_disk / 's.db'}")
    run_id = store.create_run("spool")
    sampler = Sampler(store, run_id, flush_interval_s=0.2)
    provider = Wide()
    sampler.attach(provider, 0.01)
    filler = small_disk / "filler"
    with filler.open("wb") as handle:  # everything left but ~200 kB
        free = shutil.disk_usage(small_disk).free
        handle.write(b"\0" * max(0, free - 200 * 1024))
    sampler.start()
    _wait_for(lambda: sampler.write_error is not None, 120)  # the disk is full: rows stay in the spool
    assert "full" in (sampler.write_error or "")
    filler.unlink()  # room again: the next flushes write the spool
    written = sampler.samples_written
    _wait_for(lambda: sampler.samples_written > written + 500, 60)
    sampler.stop()
    assert sampler.samples_lost == 0
    assert store.sample_count(run_id) == provider.reads * 50 == sampler.samples_written


def test_a_bounded_spool_counts_what_it_could_not_keep(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run_id = store.create_run("bounded")
    sampler = Sampler(store, run_id, flush_interval_s=3600, max_buffer_rows=120)  # no flush until stop
    provider = Wide()
    sampler.attach(provider, 0.01)
    sampler.start()
    _wait_for(lambda: provider.reads >= 6, 60)
    sampler.stop()
    assert sampler.samples_written == 120
    assert sampler.samples_lost == provider.reads * 50 - 120
    assert store.sample_count(run_id) == 120


def test_stop_process_escalates_to_sigkill_and_reaps() -> None:
    stubborn = "import signal, time\nfor s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n" \
               "print('ready', flush=True)\ntime.sleep(60)\n"
    process = start_process([sys.executable, "-c", stubborn])
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    assert stop_process(process, grace_s=0.3) == -signal.SIGKILL
    assert not owner_alive(process.pid, None)


def test_owner_alive_tells_a_reused_pid_from_its_owner() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        ticks = process_start_ticks(process.pid)
        assert ticks is not None
        assert owner_alive(process.pid, ticks)
        assert not owner_alive(process.pid, ticks + 1)  # same pid, another start time: another process
    finally:
        process.kill()
        process.wait()
    assert not owner_alive(process.pid, ticks)
    assert process_start_ticks(process.pid) is None
