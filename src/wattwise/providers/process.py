"""One process's own CPU time and memory from /proc/<pid>/stat and /proc/<pid>/statm (for the measuring
process itself, its CPU time from the kernel's per-process clock, which has nanosecond rather than 10 ms steps).

Used where the measured work runs inside the measuring process (the Python tracker) and so cannot be moved into a
cgroup of its own: the process's share of the machine's busy CPU time attributes the machine's energy to it, as
a unit's cgroup does for `wattwise measure`. The CPU time counts every thread of the process and the children it
has waited for (`cutime`/`cstime`), so `subprocess.run(...)` inside the tracked code is counted when it returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope
from wattwise.providers.files import KernelFile

__all__ = ["ProcessProvider", "read_process_cpu_s"]

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process_cpu_s(stat_text: str) -> float:
    """utime + stime + cutime + cstime of a /proc/<pid>/stat line, in seconds."""
    # the command name (field 2) is in parentheses and may contain spaces or ')': split after the last ')'
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 15:
        raise ProviderError("malformed /proc/<pid>/stat line")
    # rest starts at field 3 (state); utime is field 14 → index 11
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / USER_HZ


class ProcessProvider(Provider):
    """CPU seconds (counter) and resident memory (gauge) of one process and its waited-for children."""

    name = "process"
    description = "CPU time and resident memory of one process (/proc/<pid>/stat, statm)"
    scope = Scope.UNIT
    default_interval_s = 0.1
    metric_units = {"process_cpu_time_s": "s", "process_memory_b": "B"}

    def __init__(self, pid: int | None = None, label: str = "process", proc_root: str | Path = "/proc") -> None:
        self.pid = os.getpid() if pid is None else pid
        self.label = label
        self.root = Path(proc_root) / str(self.pid)
        self._stat = KernelFile(self.root / "stat")
        self._statm = KernelFile(self.root / "statm")
        self._origin_s = 0.0
        # the measuring process itself: the kernel's per-process CPU clock (nanoseconds) instead of /proc's
        # 10 ms ticks, so that a short phase (a 20 ms test) still gets its CPU time
        self._self_clock = self.pid == os.getpid() and Path(proc_root) == Path("/proc")

    def availability(self) -> Availability:
        if (self.root / "stat").exists():
            return Availability.yes(f"process {self.pid}")
        return Availability.no(f"{self.root / 'stat'} does not exist")

    def open(self) -> None:
        self._origin_s = self._cpu_s()

    def specs(self) -> Sequence[MetricSpec]:
        return (
            MetricSpec("process_cpu_time_s", "s", Kind.COUNTER, self.label,
                       description="CPU seconds used by the process and its waited-for children"),
            MetricSpec("process_memory_b", "B", Kind.GAUGE, self.label, description="resident memory of the process"),
        )

    def read(self) -> Sequence[float | None]:
        cpu_s = self._cpu_s() - self._origin_s
        try:
            pages = int(self._statm.read_text().split()[1])
            memory_b: float | None = float(pages * PAGE_SIZE)
        except (OSError, IndexError, ValueError):
            memory_b = None
        return (max(0.0, cpu_s), memory_b)

    def _cpu_s(self) -> float:
        if self._self_clock:
            children = os.times()
            return time.process_time() + children.children_user + children.children_system
        try:
            return read_process_cpu_s(self._stat.read_text())
        except OSError as exc:
            raise ProviderError(f"cannot read {self.root / 'stat'}: {exc.strerror}") from exc

    def close(self) -> None:
        self._stat.close()
        self._statm.close()
