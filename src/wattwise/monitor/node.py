"""What the node as a whole uses: CPU time by mode, memory, RAPL energy, BMC power, GPU power/energy and the
processes on each GPU.

Every read is fresh, except IPMI DCMI: the BMC tool takes ~0.1–1 s per call and the BMC updates its
reading about once a second, so a background thread polls it (``ipmi_interval_s``) and a scrape takes
the last reading (dropped when older than three intervals).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wattwise.providers.base import CounterAccumulator, ProviderError
from wattwise.providers.gpu_tools import GpuDevice, GpuProcess, GpuReader, GpuSnapshot
from wattwise.providers.ipmi import DcmiPowerReading, IpmiDcmiProvider
from wattwise.providers.procstat import CpuTimes, read_cpu_times
from wattwise.providers.rapl import UJ_PER_J, read_rapl_zones

log = logging.getLogger(__name__)

MEMINFO_KEYS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached")


def read_meminfo(proc_root: str | Path = "/proc") -> dict[str, int]:
    """Selected /proc/meminfo fields in bytes."""
    path = Path(proc_root) / "meminfo"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
    result: dict[str, int] = {}
    for match in re.finditer(r"(?m)^(\w+):\s+(\d+)(?:\s+kB)?$", text):
        if match.group(1) in MEMINFO_KEYS:
            result[match.group(1)] = int(match.group(2)) * 1024
    if "MemTotal" not in result:
        raise ProviderError(f"{path} has no MemTotal line")
    return result


@dataclass(frozen=True)
class RaplCounter:
    detail: str  # package-0, package-0/dram
    domain: str  # package, dram, core, uncore, psys
    energy_j: float  # the zone's counter, corrected for wrap-around since the exporter started


@dataclass(frozen=True)
class NodeSample:
    cpu: CpuTimes
    memory_b: dict[str, int]
    rapl: tuple[RaplCounter, ...] = ()
    ipmi_power_w: float | None = None
    gpus: tuple[GpuDevice, ...] = ()
    errors: tuple[str, ...] = ()
    gpu_processes: tuple[GpuProcess, ...] = ()
    meter: str = "ipmi"  # which whole-node meter ipmi_power_w came from: ipmi, redfish, hwmon
    meter_reading: DcmiPowerReading | None = None

    @property
    def memory_used_b(self) -> int:
        """MemTotal − MemFree: like a cgroup's memory usage, this includes the page cache."""
        return max(0, self.memory_b.get("MemTotal", 0) - self.memory_b.get("MemFree", 0))

    def rapl_energy_j(self, domain: str) -> float:
        return sum(c.energy_j for c in self.rapl if c.domain == domain)


class PowerMeter(Protocol):
    def query(self) -> DcmiPowerReading: ...


class IpmiPoller:
    """Polls a whole-node power meter in a daemon thread; `latest()` never blocks on the BMC.

    The meter is IPMI DCMI (:class:`IpmiDcmiProvider`), Redfish (:class:`wattwise.providers.redfish.RedfishPower`)
    or hwmon power sensors (:class:`wattwise.providers.hwmon_power.HwmonPower`): anything whose ``query()``
    gives a :class:`DcmiPowerReading`. `stat`: which figure is the node's power, ``current`` (instantaneous)
    or ``average`` (over the meter's sampling period, when it gives one)."""

    def __init__(self, provider: IpmiDcmiProvider | PowerMeter, interval_s: float = 5.0, *, meter: str = "ipmi",
                 stat: str = "current") -> None:
        if stat not in ("current", "average"):
            raise ValueError(f"stat must be current or average, got {stat!r}")
        self.provider = provider
        self.interval_s = interval_s
        self.meter = meter
        self.stat = stat
        self._lock = threading.Lock()
        self._value: float | None = None
        self._reading: DcmiPowerReading | None = None
        self._at = 0.0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        try:
            reading = self.provider.query()
        except ProviderError as exc:
            with self._lock:
                self.last_error = str(exc)
            return
        with self._lock:
            value = reading.average_w if self.stat == "average" and reading.average_w is not None else reading.power_w
            self._value = value if reading.active else None
            self._reading = reading if reading.active else None
            self._at = time.monotonic()
            self.last_error = None

    def start(self) -> None:
        self.poll_once()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.poll_once()

        self._thread = threading.Thread(target=loop, name="wattwise-ipmi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> float | None:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > 3 * self.interval_s + 1:
                return None
            return self._value

    def latest_reading(self) -> DcmiPowerReading | None:
        """The whole last reading (current, average, minimum, maximum), under the same freshness rule."""
        with self._lock:
            if self._reading is None or time.monotonic() - self._at > 3 * self.interval_s + 1:
                return None
            return self._reading


@dataclass
class NodeReader:
    proc_root: Path = Path("/proc")
    powercap_root: Path | None = Path("/sys/class/powercap")
    ipmi: IpmiPoller | None = None
    gpu: GpuReader | None = None  # an opened GPU reader (wattwise.providers.gpu_tools)
    _rapl: dict[str, tuple[CounterAccumulator, float]] = field(default_factory=dict)
    rapl_available: bool = False

    def open(self) -> None:
        """Decide which node sources exist here (RAPL package zones readable under powercap_root)."""
        if self.powercap_root is None:
            return
        try:
            zones = read_rapl_zones(self.powercap_root)
        except ProviderError:
            zones = []
        self.rapl_available = any(z.domain == "package" and z.energy_uj is not None for z in zones)
        if self.rapl_available:
            self._read_rapl()

    def _read_rapl(self) -> tuple[RaplCounter, ...]:
        assert self.powercap_root is not None
        counters: list[RaplCounter] = []
        for zone in read_rapl_zones(self.powercap_root):
            if zone.energy_uj is None:
                continue
            state = self._rapl.get(zone.detail)
            if state is None:
                accumulator = CounterAccumulator(zone.energy_uj, zone.max_energy_range_uj)
                self._rapl[zone.detail] = state = (accumulator, float(zone.energy_uj))
            accumulator, origin = state
            total_uj = origin + accumulator.update(zone.energy_uj)
            counters.append(RaplCounter(zone.detail, zone.domain, total_uj / UJ_PER_J))
        return tuple(counters)

    def read(self) -> NodeSample:
        errors: list[str] = []
        cpu = read_cpu_times(self.proc_root)
        memory = read_meminfo(self.proc_root)
        rapl: tuple[RaplCounter, ...] = ()
        if self.rapl_available:
            try:
                rapl = self._read_rapl()
            except ProviderError as exc:
                errors.append(f"rapl: {exc}")
        ipmi_w = self.ipmi.latest() if self.ipmi is not None else None
        meter_reading = self.ipmi.latest_reading() if self.ipmi is not None else None
        meter = self.ipmi.meter if self.ipmi is not None else "ipmi"
        snapshot = GpuSnapshot()
        if self.gpu is not None:
            try:
                snapshot = self.gpu.read()
            except ProviderError as exc:
                errors.append(f"gpu: {exc}")
        return NodeSample(cpu, memory, rapl, ipmi_w, snapshot.devices, tuple(errors), snapshot.processes, meter,
                          meter_reading)

