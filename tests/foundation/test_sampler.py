from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from wattwise.measure.sampler import MAX_CONSECUTIVE_FAILURES, Sampler
from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError
from wattwise.store import Store


class Ticker(Provider):
    """A real provider over an in-process counter (reads never fail)."""

    name = "ticker"
    description = "counts reads"

    def __init__(self) -> None:
        self.reads = 0

    def availability(self) -> Availability:
        return Availability.yes()

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec("ticks_total", "1", Kind.COUNTER)]

    def read(self) -> Sequence[float | None]:
        self.reads += 1
        return [float(self.reads)]


class Flaky(Ticker):
    name = "flaky"

    def __init__(self, fail_after: int, recover: bool = False) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.recover = recover

    def read(self) -> Sequence[float | None]:
        self.reads += 1
        if self.reads > self.fail_after and not (self.recover and self.reads > self.fail_after + 3):
            raise ProviderError("sensor went away")
        return [float(self.reads)]


def test_samples_at_their_intervals_and_flushes(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = store.create_run("s")
    sampler = Sampler(store, run_id, flush_interval_s=0.2)
    fast, slow = Ticker(), Ticker()
    sampler.attach(fast, 0.01, label="fast")
    sampler.attach(slow, 0.2, label="slow")
    sampler.start()
    time.sleep(1.0)
    warnings = sampler.stop()
    assert warnings == []
    metrics = {m.id: m for m in store.metrics(run_id)}
    fast_id, slow_id = sorted(metrics)
    t_fast, v_fast = store.samples(fast_id)
    t_slow, _ = store.samples(slow_id)
    assert 40 <= len(t_fast) <= 110  # ~100 at 10 ms on a busy 2-core machine
    assert 4 <= len(t_slow) <= 8
    assert all(b > a for a, b in itertools.pairwise(t_fast))  # monotonic timestamps
    assert sampler.samples_written == len(t_fast) + len(t_slow)
    assert v_fast[-1] == fast.reads


def test_failing_provider_is_a_warning_and_the_run_goes_on(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = store.create_run("s")
    sampler = Sampler(store, run_id, flush_interval_s=0.1)
    good, bad = Ticker(), Flaky(fail_after=3)
    sampler.attach(good, 0.01, label="good")
    sampler.attach(bad, 0.01, label="bad")
    sampler.start()
    time.sleep(0.6)
    warnings = sampler.stop()
    assert any("bad: read failed: sensor went away" in w for w in warnings)
    assert any(f"stopped after {MAX_CONSECUTIVE_FAILURES} failures" in w for w in warnings)
    good_id, bad_id = sorted(m.id for m in store.metrics(run_id))
    assert len(store.samples(bad_id)[0]) == 3  # the samples before it failed are kept
    assert len(store.samples(good_id)[0]) > 20


def test_provider_that_cannot_open_is_skipped_with_a_warning(sqlite_url: str) -> None:
    class Broken(Ticker):
        name = "broken"

        def open(self) -> None:
            raise ProviderError("no such device")

    store = Store(sqlite_url)
    sampler = Sampler(store, store.create_run("s"))
    assert not sampler.attach(Broken())
    assert sampler.warnings == ["provider broken: could not start: no such device"]


def test_sample_now_reads_every_provider_at_a_boundary(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = store.create_run("s")
    sampler = Sampler(store, run_id, flush_interval_s=0.1)
    ticker = Ticker()
    sampler.attach(ticker, 10.0, label="slow")  # would not tick again during the test
    start_us = sampler.start()
    time.sleep(0.05)
    boundary_us = sampler.sample_now()
    again_us = sampler.sample_now()  # a boundary right after a reading moves that reading instead of reading
    sampler.stop()
    (metric_id,) = [m.id for m in store.metrics(run_id)]
    t_us, values = store.samples(metric_id)
    # the first reading at start, one at the boundary, moved to the second boundary; none at stop, a reading
    # was just taken (a counter read twice within a millisecond gives a meaningless rate)
    assert list(values) == [1.0, 2.0]
    assert list(t_us) == [start_us, again_us]
    assert again_us - boundary_us < 25_000
