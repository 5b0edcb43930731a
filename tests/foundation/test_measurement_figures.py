"""Figures at the source (issue 15): phase energy across a power step, counters that reset, a busy baseline, and no
readings so close together that their rate is noise."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from wattwise.analysis import series as ts
from wattwise.analysis.phases import Series, load_series
from wattwise.measure.sampler import Sampler
from wattwise.measure.session import BUSY_BASELINE, MeasurementSession, SessionOptions, baseline_busy_share
from wattwise.providers.base import Availability, Kind, MetricSpec, Provider
from wattwise.providers.network import NetworkProvider
from wattwise.providers.procstat import CpuTimes
from wattwise.store import Store

# --- a 5 s phase at 60 W between phases at 250 W, sampled every 1 s ------------------------------------------


def _true_energy(t0: float, t1: float, steps: list[tuple[float, float]]) -> float:
    """∫ power over [t0, t1] for a step function given as (from_s, power_w), in order."""
    total = 0.0
    for i, (start, power) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else np.inf
        total += power * max(0.0, min(end, t1) - max(start, t0))
    return total


def _readings(times: list[float], steps: list[tuple[float, float]], mode: str) -> list[float]:
    """What a provider reports at each time: the mean power since its previous reading (meters, GPU power, the
    estimate) or the level right then (a reading at a phase edge is taken before the next phase's work starts,
    so it sees the old level)."""
    values = []
    for i, t in enumerate(times):
        if mode == "mean" and i > 0:
            values.append(_true_energy(times[i - 1], t, steps) / (t - times[i - 1]))
        else:
            level = [p for start, p in steps if start < t or (start == 0 and t == 0)]
            values.append(level[-1] if level else steps[0][1])
    return values


@pytest.mark.parametrize("mode", ["mean", "level"])
@pytest.mark.parametrize("offset_s", [0.0, 0.13, 0.5, 0.87])
def test_a_5s_phase_between_250w_and_60w_is_within_1_percent_at_1s_sampling(mode: str, offset_s: float) -> None:
    edges = [0.0, 10.0, 15.0, 25.0]  # phases: 250 W, 60 W (5 s), 250 W
    steps = [(0.0, 250.0), (10.0, 60.0), (15.0, 250.0)]
    ticks = [offset_s + k for k in range(0, 26) if 0 < offset_s + k < 25]
    times = sorted({*ticks, *edges})  # the sampler reads every provider at each phase edge and at start/end
    values = _readings(times, steps, mode)
    s = Series(1, "ipmi_power_w", "W", "gauge", "ipmi", "", False, (np.array(times) * 1e6).astype(np.int64),
               np.array(values))
    for start, end in itertools.pairwise(edges):
        truth = _true_energy(start, end, steps)
        measured = s.integral(start * 1e6, end * 1e6)
        assert measured == pytest.approx(truth, rel=0.01), (start, end, measured, truth)
    # without the edge readings the step is smeared: the same 1 s samples miss the 5 s phase by more than 1 %
    if offset_s in (0.13, 0.5) and mode == "mean":
        t_only = np.array(ticks)
        smeared = Series(1, "ipmi_power_w", "W", "gauge", "ipmi", "", False, (t_only * 1e6).astype(np.int64),
                         np.array(_readings(ticks, steps, mode)))
        assert abs(smeared.integral(10e6, 15e6) - 300.0) > 3.0


class SteppedPower(Provider):
    """A real provider over an in-process power signal: reports the mean power since its previous reading."""

    name = "stepped"
    description = "in-process power signal"

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w
        self._lock = threading.Lock()
        self._energy_j = 0.0
        self._since = time.monotonic()
        self._last_read = self._since

    def availability(self) -> Availability:
        return Availability.yes()

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine")]

    def _accumulate(self, now: float) -> None:
        self._energy_j += self.power_w * (now - self._since)
        self._since = now

    def set_power(self, power_w: float) -> None:
        with self._lock:
            self._accumulate(time.monotonic())
            self.power_w = power_w

    def read(self) -> Sequence[float | None]:
        with self._lock:
            now = time.monotonic()
            self._accumulate(now)
            mean = self._energy_j / (now - self._last_read) if now > self._last_read else self.power_w
            self._energy_j, self._last_read = 0.0, now
            return [mean]


def test_sampler_edges_give_exact_phase_energy_across_a_step(sqlite_url: str) -> None:
    """The same shape through the real sampler, 10× faster (0.1 s sampling, a 0.5 s phase)."""
    store = Store(sqlite_url)
    run_id = store.create_run("step")
    sampler = Sampler(store, run_id, flush_interval_s=0.2)
    power = SteppedPower(250.0)
    sampler.attach(power, 0.1)
    t0 = sampler.start()
    time.sleep(1.03)
    b1 = sampler.sample_now()
    power.set_power(60.0)
    time.sleep(0.5)
    b2 = sampler.sample_now()
    power.set_power(250.0)
    time.sleep(0.77)
    b3 = sampler.sample_now()
    sampler.stop()
    (s,) = load_series(store, run_id)
    assert s.integral(b1, b2) == pytest.approx(60.0 * (b2 - b1) / 1e6, rel=0.01)
    assert s.integral(t0, b1) == pytest.approx(250.0 * (b1 - t0) / 1e6, rel=0.01)
    assert s.integral(b2, b3) == pytest.approx(250.0 * (b3 - b2) / 1e6, rel=0.01)


# --- counters that reset ------------------------------------------------------------------------------------

NET_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls"
              " carrier compressed\n")


def _net_dev(path: Path, interfaces: dict[str, tuple[int, int]]) -> None:
    lines = [f"{name:>6}: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n" for name, (rx, tx) in interfaces.items()]
    path.write_text(NET_HEADER + "".join(lines))


def test_network_counters_never_go_down_when_interfaces_go_or_restart(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    net_dev = proc / "net" / "dev"
    _net_dev(net_dev, {"lo": (5, 5), "eth0": (1000, 500), "veth1": (300, 200)})
    provider = NetworkProvider(proc_root=proc)
    provider.open()
    _net_dev(net_dev, {"lo": (9, 9), "eth0": (1600, 900), "veth1": (700, 260)})
    assert list(provider.read()) == [600 + 400, 400 + 60]
    _net_dev(net_dev, {"lo": (9, 9), "eth0": (1700, 950)})  # veth1 removed with its container
    assert list(provider.read()) == [1100, 510]
    _net_dev(net_dev, {"lo": (9, 9), "eth0": (1700, 950), "veth1": (40, 30)})  # made again: counts from 0
    assert list(provider.read()) == [1140, 540]
    _net_dev(net_dev, {"lo": (9, 9), "eth0": (20, 10)})  # eth0's counters restarted (driver reload)
    assert list(provider.read()) == [1160, 550]
    provider.close()


def test_a_stored_counter_that_went_down_gives_no_negative_amount() -> None:
    values = ts.reset_corrected(np.array([0.0, 100.0, 250.0, 30.0, 80.0]))  # reset to 0 between samples 2 and 3
    assert list(values) == [0.0, 100.0, 250.0, 280.0, 330.0]
    s = Series(1, "network_rx_b", "B", "counter", "network", "web", False, np.arange(5) * 1_000_000, values)
    assert s.delta(2e6, 4e6) == pytest.approx(80.0)
    assert all(np.diff(values) >= 0)


# --- a busy baseline -----------------------------------------------------------------------------------------


def _times(busy_s: float, idle_s: float) -> CpuTimes:
    modes = {m: 0.0 for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")}
    modes["user"], modes["idle"] = busy_s, idle_s
    return CpuTimes(modes, 2)


def test_baseline_busy_share_from_cpu_times() -> None:
    assert baseline_busy_share(_times(0, 0), _times(9.9, 0.1)) == pytest.approx(0.99)
    assert baseline_busy_share(_times(0, 0), _times(1.0, 9.0)) == pytest.approx(0.1)
    assert baseline_busy_share(_times(5, 5), _times(5, 5)) is None  # no time passed
    assert BUSY_BASELINE == 0.5


def test_a_busy_baseline_is_a_warning_stored_with_the_run(sqlite_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTWISE_DATA_DIR", str(tmp_path / "data"))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        store = Store(sqlite_url)
        session = MeasurementSession(store, SessionOptions(name="busy", providers=["cpu"]))
        run_id = session.open()
        start = session.start()
        time.sleep(1.5)
        session.add_phase("[BASELINE]", start, session.boundary())
        end = session.finish("finished")
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert any("already busy during [BASELINE]" in w for w in end.warnings)
    assert any("already busy during [BASELINE]" in w for w in store.get_run(run_id).warnings)
    assert any("already busy" in w for w in session.summarize()["warnings"])


# --- no readings a millisecond apart -------------------------------------------------------------------------


class Jiffies(Provider):
    """Real /proc/stat busy time: a counter in 10 ms steps."""

    name = "jiffies"
    description = "busy CPU seconds"

    def availability(self) -> Availability:
        return Availability.yes()

    def open(self) -> None:
        from wattwise.providers.procstat import read_cpu_times

        self._first = read_cpu_times().busy_s

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec("cpu_busy_time_s", "s", Kind.COUNTER, "machine")]

    def read(self) -> Sequence[float | None]:
        from wattwise.providers.procstat import read_cpu_times

        return [read_cpu_times().busy_s - self._first]


def test_edges_and_the_end_add_no_reading_right_after_another(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = store.create_run("gaps")
    sampler = Sampler(store, run_id, flush_interval_s=5.0)
    sampler.attach(Jiffies(), 0.1)
    sampler.start()
    edges = []
    for _ in range(15):
        time.sleep(0.1)  # edges land at every distance from the ticks
        edges.append(sampler.sample_now())
    sampler.stop()
    (s,) = load_series(store, run_id)
    gaps_s = np.diff(s.t_us) / 1e6
    assert set(edges) <= set(s.t_us.tolist())  # every edge is a reading
    assert gaps_s.min() >= 0.02  # never two readings within 20 ms: no 11 s/s rate on 2 CPUs
