"""`wattwise calibrate` on a fixture RAPL tree driven by a synthetic load: the curve recovered, monotone, with
its interval, stored per machine type and used by the estimate when no sensor is present later."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from wattwise.errors import ConfigError, ProviderError
from wattwise.providers.calibrate import (
    CpuLoad,
    StepReading,
    calibrate,
    calibration_path,
    fit_steps,
    isotonic,
    stored_calibration,
)
from wattwise.providers.estimate import default_power_curve
from wattwise.providers.procstat import USER_HZ
from wattwise.providers.rapl import RaplProvider

MACHINES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "machines"
THREADS = 2


def true_power_w(utilization: float) -> float:
    """The synthetic machine's package power: 20 W idle, 95 W at full load, concave like real CPUs."""
    return 20.0 + 75.0 * utilization**0.8


class SyntheticMachine:
    """A fake clock, a /proc/stat and a powercap tree that advance together: while time passes at target
    utilization u, the CPU counters gain u of THREADS × dt busy seconds and the RAPL counter
    true_power_w(u) × dt joules (wrapping at max_energy_range_uj like the kernel's)."""

    MAX_RANGE_UJ = 500_000_000  # 500 J: wraps several times during the test, never within one reading

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.proc.mkdir()
        zone = root / "powercap" / "intel-rapl:0"
        zone.mkdir(parents=True)
        (zone / "name").write_text("package-0\n")
        (zone / "max_energy_range_uj").write_text(f"{self.MAX_RANGE_UJ}\n")
        self.energy_file = zone / "energy_uj"
        self.powercap = root / "powercap"
        self.now = 1000.0
        self.target = 0.0
        self.energy_uj = 0.0
        self.busy_ticks = 0.0
        self.idle_ticks = 0.0
        self.closed = False
        self._write()

    def _write(self) -> None:
        self.energy_file.write_text(f"{int(self.energy_uj) % self.MAX_RANGE_UJ}\n")
        cpus = "".join(f"cpu{i} 0 0 0 0 0 0 0 0\n" for i in range(THREADS))
        (self.proc / "stat").write_text(f"cpu  {int(self.busy_ticks)} 0 0 {int(self.idle_ticks)} 0 0 0 0\n{cpus}")

    # the Load protocol
    def set(self, utilization: float) -> None:
        self.target = utilization

    def close(self) -> None:
        self.closed = True

    # clock and sleep for calibrate()
    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.energy_uj += true_power_w(self.target) * seconds * 1e6
        self.busy_ticks += self.target * THREADS * seconds * USER_HZ
        self.idle_ticks += (1 - self.target) * THREADS * seconds * USER_HZ
        self._write()


def test_calibration_recovers_the_machine_curve(tmp_path: Path) -> None:
    machine = SyntheticMachine(tmp_path)
    done: list[int] = []
    result = calibrate(RaplProvider(machine.powercap), machine, step_s=6.0, settle_s=1.0, interval_s=1.0,
                       proc_root=machine.proc, clock=machine.clock, sleep=machine.sleep,
                       progress=lambda n, total: done.append(n))
    assert done == list(range(1, 12))
    assert machine.target == 0.0  # the load is set back to idle
    curve = result.curve
    assert [round(u, 2) for u, _ in curve.points] == [k / 10 for k in range(11)]
    for u, p in curve.points:
        assert p == pytest.approx(true_power_w(u), rel=1e-3, abs=0.05)
    assert curve.low is not None and curve.high is not None
    for (_, p), low, high in zip(curve.points, curve.low, curve.high, strict=True):
        assert low <= p <= high
    assert "rapl" in curve.source and "not wall power" in curve.source
    # 11 steps × 5 readings of 1 s: every reading counted
    assert [len(s.power_w) for s in result.steps] == [5] * 11


def test_stored_calibration_replaces_the_model_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WATTWISE_POWER_CURVE", "WATTWISE_TDP_W", "WATTWISE_VHOST_RATIO"):
        monkeypatch.delenv(name, raising=False)
    machine = SyntheticMachine(tmp_path)
    result = calibrate(RaplProvider(machine.powercap), machine, step_s=4.0, settle_s=1.0, interval_s=1.0,
                       proc_root=machine.proc, clock=machine.clock, sleep=machine.sleep)
    proc = tmp_path / "target-proc"  # the same machine type later, without RAPL
    proc.mkdir()
    shutil.copy(MACHINES / "kvm-2vcpu" / "cpuinfo", proc / "cpuinfo")
    store = tmp_path / "calibrations"
    assert stored_calibration(proc, store) is None
    path = calibration_path(proc, store)
    assert path.name == "intel-xeon-processor-2t.csv"
    path.parent.mkdir()
    result.curve.to_csv(path)
    monkeypatch.setenv("WATTWISE_CALIBRATION_DIR", str(store))
    curve = default_power_curve(cpuinfo=proc / "cpuinfo")
    assert "calibration stored for this machine type" in curve.source
    assert curve.power_w(0.5) == pytest.approx(true_power_w(0.5), rel=1e-3)
    assert curve.has_interval
    # a configured TDP still asks the model instead
    assert "SPECpower model" in default_power_curve(tdp_w=100.0, cpuinfo=proc / "cpuinfo").source


def test_isotonic_by_hand() -> None:
    assert isotonic([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert isotonic([5.0, 1.0, 3.0], [1.0, 3.0, 1.0]) == [2.0, 2.0, 3.0]


def test_noisy_steps_become_monotone() -> None:
    steps = [StepReading(0.0, [0.01, 0.01], [30.0, 31.0]), StepReading(0.5, [0.5, 0.5], [29.0, 29.5]),
             StepReading(1.0, [0.99, 0.99], [80.0, 82.0])]
    curve = fit_steps(steps, "ipmi")
    powers = [p for _, p in curve.points]
    assert powers == sorted(powers)
    assert powers[0] == powers[1] == pytest.approx((30.5 * 2 + 29.25 * 2) / 4)
    assert "machine power" in curve.source


def test_too_few_readings_and_bad_steps_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="only 1 load step"):
        fit_steps([StepReading(0.0, [0.0], [10.0]), StepReading(1.0)], "rapl")
    machine = SyntheticMachine(tmp_path)
    with pytest.raises(ConfigError, match="--step"):
        calibrate(RaplProvider(machine.powercap), machine, step_s=1.0, settle_s=1.0, interval_s=1.0,
                  proc_root=machine.proc, clock=machine.clock, sleep=machine.sleep)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / USER_HZ  # utime + stime


def test_cpu_load_workers_burn_cpu_and_stop() -> None:
    load = CpuLoad(workers=1, period_s=0.02)
    try:
        pid = load._processes[0].pid
        assert pid is not None
        load.set(1.0)
        deadline = time.monotonic() + 60  # hang guard only
        while _cpu_s(pid) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cpu_s(pid) >= 0.2  # the worker itself used CPU time
    finally:
        load.close()
    assert all(not p.is_alive() for p in load._processes)
