"""Machine CPU time from /proc/stat: utilization (0..1) and busy CPU seconds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError
from wattwise.providers.files import KernelFile

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative machine CPU time in seconds, summed over all CPUs."""

    seconds_by_mode: dict[str, float]
    cpu_count: int

    @property
    def idle_s(self) -> float:
        return self.seconds_by_mode["idle"] + self.seconds_by_mode["iowait"]

    @property
    def total_s(self) -> float:
        # guest time is already counted inside user/nice
        return sum(self.seconds_by_mode[m] for m in _MODES)

    @property
    def busy_s(self) -> float:
        return self.total_s - self.idle_s


def read_cpu_times(proc_root: str | Path = "/proc", reader: KernelFile | None = None) -> CpuTimes:
    """Parse the aggregate `cpu` line of /proc/stat (values in USER_HZ ticks).

    Pass a `KernelFile` of that path to re-read it without opening it again (what the providers do)."""
    path = Path(proc_root) / "stat"
    try:
        text = reader.read_text() if reader is not None else path.read_text()
    except OSError as exc:
        raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
    # only the aggregate line is parsed: the rest of the file (intr, softirq) can be thousands of numbers
    first, _, _ = text.partition("\n")
    totals = [int(x) for x in first.split()[1:]] if first.startswith("cpu ") else None
    cpus = text.count("\ncpu")
    if totals is None or len(totals) < 4:
        raise ProviderError(f"{path} has no aggregate 'cpu' line")
    totals += [0] * (len(_MODES) - len(totals))
    return CpuTimes({m: totals[i] / USER_HZ for i, m in enumerate(_MODES)}, max(cpus, 1))


def utilization_between(before: CpuTimes, after: CpuTimes) -> float:
    """Share of CPU time that was busy between two readings, 0..1."""
    total = after.total_s - before.total_s
    if total <= 0:
        return 0.0
    return min(1.0, max(0.0, (after.busy_s - before.busy_s) / total))


class CpuUtilizationProvider(Provider):
    name = "cpu"
    description = "Machine CPU utilization and busy CPU seconds from /proc/stat"
    metric_units = {"cpu_utilization_ratio": "ratio", "cpu_busy_time_s": "s"}

    def __init__(self, proc_root: str | Path = "/proc") -> None:
        self.proc_root = Path(proc_root)
        self._stat = KernelFile(self.proc_root / "stat")
        self._first: CpuTimes | None = None
        self._previous: CpuTimes | None = None

    def availability(self) -> Availability:
        try:
            read_cpu_times(self.proc_root)
        except ProviderError as exc:
            return Availability.no(str(exc))
        return Availability.yes()

    def open(self) -> None:
        self._first = self._previous = read_cpu_times(self.proc_root)

    def specs(self) -> Sequence[MetricSpec]:
        return [
            MetricSpec(
                "cpu_utilization_ratio",
                "ratio",
                Kind.GAUGE,
                "machine",
                description="busy share of all CPUs since the previous sample",
            ),
            MetricSpec(
                "cpu_busy_time_s",
                "s",
                Kind.COUNTER,
                "machine",
                description="CPU seconds not idle, summed over CPUs",
            ),
        ]

    def read(self) -> Sequence[float | None]:
        assert self._first is not None and self._previous is not None, "open() first"
        now = read_cpu_times(self.proc_root, self._stat)
        utilization = utilization_between(self._previous, now)
        self._previous = now
        return [utilization, now.busy_s - self._first.busy_s]

    def close(self) -> None:
        self._stat.close()
