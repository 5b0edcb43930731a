"""The Python tracker, inside this real Python process doing known work, on a real SQLite database."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

import wattwise
from wattwise.errors import WattwiseError
from wattwise.measure.codecarbon_csv import CODECARBON_COLUMNS
from wattwise.store import Store


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "track.db")


def test_two_phases_tile_the_run_and_energy_grows_with_work(db: str) -> None:
    threads_before = set(threading.enumerate())
    with wattwise.track("known work", db=db, interval="100ms", intensity_g_per_kwh=400, pue=1.5) as t:
        # long enough on a fast, idle machine for /proc/stat's 10 ms ticks to see each phase's busy time (the
        # process's share needs it)
        t.phase("small")
        burn(3_000_000)
        t.phase("big")
        burn(12_000_000)  # four times the work
        t.note("done")
    result = t.result
    assert result is not None and result.status == "finished"
    assert [p.name for p in result.phases] == ["small", "big"]
    small, big = result.phase("small"), result.phase("big")
    # the process's own CPU time follows the work whatever else the machine does
    assert small.process_cpu_time_s is not None and big.process_cpu_time_s is not None
    assert big.process_cpu_time_s > 2 * small.process_cpu_time_s
    assert small.process_energy_j is not None and big.process_energy_j is not None
    assert big.process_energy_j > small.process_energy_j > 0
    # the phases add up to the whole tracked time, exactly
    assert sum(p.duration_s for p in result.phases) == pytest.approx(result.duration_s, abs=1e-6)
    assert sum(p.energy_j or 0 for p in result.phases) == pytest.approx(result.machine_energy_j, rel=1e-9)
    # carbon by hand: J → kWh × g/kWh × PUE
    assert result.carbon_g == pytest.approx(result.energy_j / 3.6e6 * 400 * 1.5, rel=1e-12)
    assert result.estimated is True  # no power sensor on this machine: the load→power curve
    assert str(result).startswith(f"run {result.run_id} 'known work' finished: ≈ ")
    # no sampling thread is left behind
    assert set(threading.enumerate()) <= threads_before
    store = Store(f"sqlite:///{db}")
    run = store.get_run(result.run_id)
    assert run.kind == "python" and run.status == "finished"
    assert [n.text for n in store.notes(result.run_id)] == ["done"]


def test_a_second_tracker_in_the_same_process_is_refused(db: str) -> None:
    with wattwise.track("outer", db=db) as outer:
        with pytest.raises(WattwiseError, match="already running in this process"):
            wattwise.track("inner", db=db).start()
        burn(10_000)
    assert outer.result is not None and outer.result.status == "finished"
    # and once the first has stopped, a new one may start
    with wattwise.track("after", db=db) as again:
        burn(10_000)
    assert again.result is not None


def test_an_exception_closes_the_run_as_failed_with_its_samples(db: str) -> None:
    tracker = wattwise.track("boom", db=db, interval="100ms")
    with pytest.raises(ZeroDivisionError), tracker:
        burn(50_000)
        _ = 1 / 0
    assert tracker.result is not None
    assert tracker.result.status == "failed"
    store = Store(f"sqlite:///{db}")
    run = store.get_run(tracker.result.run_id)
    assert run.status == "failed" and "ZeroDivisionError" in (run.error or "")
    assert store.samples(tracker.result.run_id)  # what was sampled is kept


def test_decorator_stores_one_run_per_call_named_after_the_function(db: str) -> None:
    decorator = wattwise.track(db=db)

    @decorator
    def train(n: int) -> int:
        return burn(n)

    assert train(20_000) == burn(20_000)  # the function's result comes back unchanged
    assert decorator.last_result is not None
    first_run = decorator.last_result.run_id
    train(20_000)
    assert decorator.last_result.run_id != first_run
    assert train.__name__ == "train"
    names = [r.name for r in Store(f"sqlite:///{db}").list_runs()]
    assert names.count(train.__qualname__) == 2


def test_start_and_stop_without_with(db: str) -> None:
    tracker = wattwise.Tracker("manual", db=db)
    with pytest.raises(WattwiseError, match="not running"):
        tracker.stop()
    tracker.start()
    burn(20_000)
    result = tracker.stop()
    assert result.status == "finished" and result.phases == []
    with pytest.raises(WattwiseError, match="not running"):
        tracker.phase("late")


def test_codecarbon_output_has_its_columns_and_units(db: str, tmp_path: Path) -> None:
    out = tmp_path / "cc"
    # long enough for /proc/stat's 10 ms ticks to see the machine busy: the process's share needs that
    with wattwise.track("cc", db=db, output="codecarbon", output_dir=out, intensity_g_per_kwh=300) as t:
        burn(1_500_000)
    with wattwise.track("cc", db=db, output="codecarbon", output_dir=out, intensity_g_per_kwh=300):
        burn(100_000)
    with (out / "emissions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert tuple(rows[0].keys()) == CODECARBON_COLUMNS
    result = t.result
    assert result is not None and result.energy_j is not None and result.carbon_g is not None
    row = rows[0]
    assert float(row["energy_consumed"]) == pytest.approx(result.energy_j / 3.6e6, rel=1e-9)  # kWh
    assert float(row["emissions"]) == pytest.approx(result.carbon_g / 1000, rel=1e-9)  # kg
    assert float(row["duration"]) == pytest.approx(result.duration_s)
    assert row["tracking_mode"] == "process"


def test_codecarbon_columns_match_codecarbons_own() -> None:
    emissions_data = pytest.importorskip("codecarbon.output_methods.emissions_data")
    import dataclasses

    assert tuple(f.name for f in dataclasses.fields(emissions_data.EmissionsData)) == CODECARBON_COLUMNS


def test_bad_arguments_are_clear_errors(db: str) -> None:
    with pytest.raises(WattwiseError, match="output='csv' is not known"):
        wattwise.track("x", db=db, output="csv")
    with wattwise.track("x", db=db) as t, pytest.raises(WattwiseError, match="not allowed"):
        t.phase("[RUNTIME]")


def test_a_coroutine_or_generator_function_cannot_be_decorated(db: str) -> None:
    async def fetch() -> None:
        return None

    def lines():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(WattwiseError, match="only its creation would be measured"):
        wattwise.track(db=db)(fetch)
    with pytest.raises(WattwiseError, match="coroutine or generator"):
        wattwise.track(db=db)(lines)


def test_an_observer_lets_the_code_it_watches_track_itself(db: str) -> None:
    """The pytest plugin's session tracker is an observer: a test may use wattwise.track inside it."""
    observer = wattwise.Tracker("session", db=db, exclusive=False).start()
    try:
        with wattwise.track("inner", db=db) as inner:
            burn(20_000)
        assert inner.result is not None and inner.result.status == "finished"
    finally:
        assert observer.stop().status == "finished"
