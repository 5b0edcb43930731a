"""`wattwise calibrate`: this machine's load→power curve, measured once where a sensor exists.

A stepped CPU load (idle, 10, 20 … 100 % of every hardware thread, busy/sleep duty cycles in one worker
process per thread) runs while a power sensor (RAPL, IPMI DCMI, or any provider with a power gauge or an
energy counter) is read. Per step, after a settling time, the utilization actually reached (/proc/stat) and
the power of each reading interval are recorded; the curve is the median power at each step's mean
utilization, made monotone (pool-adjacent-violators), with the 5th–95th percentiles of the step's readings
as its interval. It is stored per machine type (CPU model + thread count) under the calibration directory
and used by `measure`/`monitor` whenever no sensor is present later (`estimate.default_power_curve`).

Note that RAPL sees the CPU package (and DRAM), not the wall: a RAPL calibration says so in its source.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Protocol

from wattwise.errors import ConfigError, ProviderError
from wattwise.providers.base import Kind, Provider
from wattwise.providers.estimate import PowerCurve
from wattwise.providers.procstat import read_cpu_times, utilization_between

__all__ = [
    "ENV_CALIBRATION_DIR",
    "STEPS",
    "CalibrationResult",
    "CpuLoad",
    "Load",
    "calibrate",
    "calibration_dir",
    "calibration_path",
    "isotonic",
    "stored_calibration",
]

ENV_CALIBRATION_DIR = "WATTWISE_CALIBRATION_DIR"
STEPS: tuple[float, ...] = tuple(k / 10 for k in range(11))


class Load(Protocol):
    """Something that keeps the CPUs busy at a target utilization (0..1)."""

    def set(self, utilization: float) -> None: ...

    def close(self) -> None: ...


def _burn(target: Synchronized, stop: Synchronized, period_s: float) -> None:
    while not stop.value:
        started = time.monotonic()
        busy = period_s * target.value
        while time.monotonic() - started < busy:
            pass
        rest = period_s - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)


class CpuLoad:
    """One duty-cycle worker process per hardware thread (busy `u × period`, asleep the rest)."""

    def __init__(self, workers: int | None = None, period_s: float = 0.05) -> None:
        context = multiprocessing.get_context("spawn")
        self._target = context.Value("d", 0.0)
        self._stop = context.Value("b", 0)
        self._processes = [context.Process(target=_burn, args=(self._target, self._stop, period_s), daemon=True)
                           for _ in range(workers or os.cpu_count() or 1)]
        for process in self._processes:
            process.start()

    def set(self, utilization: float) -> None:
        self._target.value = min(max(utilization, 0.0), 1.0)

    def close(self) -> None:
        self._stop.value = 1
        for process in self._processes:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)


@dataclass
class StepReading:
    target: float
    utilization: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class CalibrationResult:
    curve: PowerCurve
    steps: list[StepReading]
    sensor: str


def isotonic(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights or [1.0] * len(values), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean1, w1, n1 = blocks.pop()
            mean0, w0, n0 = blocks.pop()
            blocks.append([(mean0 * w0 + mean1 * w1) / (w0 + w1), w0 + w1, n0 + n1])
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * int(count))
    return out


class _PowerReading:
    """Machine power from a provider: the sum of its W gauges, or of its J counters differenced."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        provider.open()
        specs = provider.specs()
        self.gauges = [i for i, s in enumerate(specs) if s.kind == Kind.GAUGE and s.unit == "W"]
        self.counters = [i for i, s in enumerate(specs) if s.kind == Kind.COUNTER and s.unit == "J"]
        if not self.gauges and not self.counters:
            raise ProviderError(f"provider {provider.name!r} gives no power (W) or energy (J) reading")
        self._last: tuple[float, float] | None = None

    def power_w(self, now: float) -> float | None:
        values = self.provider.read()
        if self.counters:
            energy = sum(values[i] or 0.0 for i in self.counters)
            last, self._last = self._last, (now, energy)
            if last is None or now <= last[0]:
                return None
            return (energy - last[1]) / (now - last[0])
        present = [values[i] for i in self.gauges if values[i] is not None]
        return sum(v for v in present if v is not None) if present else None


def calibrate(provider: Provider, load: Load, *, steps: Sequence[float] = STEPS, step_s: float = 10.0,
              settle_s: float = 2.0, interval_s: float = 1.0, proc_root: str | Path = "/proc",
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
              progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
    """Run the stepped load, read the sensor, and fit the curve (see the module docstring)."""
    if step_s <= settle_s + interval_s:
        raise ConfigError(f"--step ({step_s:g} s) must exceed the settling time ({settle_s:g} s) plus one "
                          f"reading interval ({interval_s:g} s)")
    reading = _PowerReading(provider)
    readings: list[StepReading] = []
    try:
        for number, target in enumerate(steps):
            load.set(target)
            sleep(settle_s)
            step = StepReading(target)
            reading.power_w(clock())  # start of the measured window
            before = read_cpu_times(proc_root)
            end = clock() + (step_s - settle_s)
            while clock() < end - 1e-9:
                sleep(interval_s)
                power = reading.power_w(clock())
                after = read_cpu_times(proc_root)
                if power is not None:
                    step.power_w.append(power)
                    step.utilization.append(utilization_between(before, after))
                before = after
            readings.append(step)
            if progress:
                progress(number + 1, len(steps))
    finally:
        load.set(0.0)
        provider.close()
    return CalibrationResult(fit_steps(readings, f"{provider.name}"), readings, provider.name)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fit_steps(readings: Sequence[StepReading], sensor: str) -> PowerCurve:
    usable = [r for r in readings if r.power_w]
    if len(usable) < 2:
        raise ProviderError(f"calibration: only {len(usable)} load step(s) gave {sensor} readings; need ≥ 2")
    rows = sorted((min(max(statistics.fmean(r.utilization), 0.0), 1.0), r) for r in usable)
    us = [u for u, _ in rows]
    for i in range(1, len(us)):  # utilizations must increase strictly
        us[i] = max(us[i], us[i - 1] + 1e-4)
    if us[-1] > 1.0:
        us = [u * 1.0 / us[-1] for u in us]
    weights = [float(len(r.power_w)) for _, r in rows]
    mid = isotonic([statistics.median(r.power_w) for _, r in rows], weights)
    low = isotonic([min(_quantile(r.power_w, 0.05), m) for (_, r), m in zip(rows, mid, strict=True)], weights)
    high = isotonic([max(_quantile(r.power_w, 0.95), m) for (_, r), m in zip(rows, mid, strict=True)], weights)
    low = [min(lo, m) for lo, m in zip(low, mid, strict=True)]
    high = [max(hi, m) for hi, m in zip(high, mid, strict=True)]
    scope = "CPU package/DRAM only, not wall power" if sensor == "rapl" else "machine power"
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return PowerCurve(tuple(zip(us, mid, strict=True)), f"calibrated with {sensor} on {when} ({scope})",
                      tuple(low), tuple(high))


def calibration_dir(directory: str | Path | None = None) -> Path:
    if directory is not None:
        return Path(directory)
    if os.environ.get(ENV_CALIBRATION_DIR):
        return Path(os.environ[ENV_CALIBRATION_DIR])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "wattwise" / "calibration"


def calibration_path(proc_root: str | Path = "/proc", directory: str | Path | None = None) -> Path:
    """Where this machine type's calibration lives: <dir>/<cpu model slug>-<threads>t.csv."""
    from wattwise.providers.machine_facts import read_machine_facts

    facts = read_machine_facts(proc_root, lscpu_text="")
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", facts.cpu_model.lower())).strip("-") or "unknown-cpu"
    return calibration_dir(directory) / f"{slug}-{facts.threads or os.cpu_count() or 1}t.csv"


def stored_calibration(proc_root: str | Path = "/proc", directory: str | Path | None = None) -> PowerCurve | None:
    path = calibration_path(proc_root, directory)
    if not path.is_file():
        return None
    curve = PowerCurve.from_csv(path)
    return PowerCurve(curve.points, f"calibration stored for this machine type ({path})", curve.low, curve.high)
