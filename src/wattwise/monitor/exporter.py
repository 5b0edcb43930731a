"""The wattwise Prometheus exporter: per-unit and node metrics, attributed power, energy and emissions.

Every scrape walks the cgroup hierarchies afresh (:mod:`wattwise.monitor.discovery`), reads the node
(:mod:`wattwise.monitor.node`), shares the node power among the live units for the interval since
the previous scrape (:mod:`wattwise.monitor.attribution`) and integrates each unit's power into energy
and emissions counters kept in this process, so that they only grow while the exporter lives.
A scrape within ``min_interval_s`` of the previous attribution point re-reads everything but keeps
the previous power figures (the interval would be too short for CPU shares to mean anything).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.carbon.live import CachedIntensity, IntensityError, IntensityReading
from wattwise.errors import ConfigError
from wattwise.monitor.attribution import (
    DEFAULT_CPU_FRACTION,
    DEFAULT_MEMORY_FRACTION,
    PowerSplit,
    check_fractions,
    emissions_g,
    split_node_power,
    unit_shares,
)
from wattwise.monitor.discovery import (
    MANAGERS,
    StaticUsage,
    Unit,
    discover_units,
    is_populated,
    read_static,
    read_usage,
    rebase_mounts,
    unit_process,
)
from wattwise.monitor.exposition import Family, format_value, label_text, render
from wattwise.monitor.gpus import GpuShare, gpu_users, gpus_from_environment, share_gpus, unit_pids
from wattwise.monitor.metadata import OwnerResolver, UnitOwner, process_environ
from wattwise.monitor.node import NodeReader, NodeSample
from wattwise.providers.cgroup import CgroupMounts, CgroupUsage
from wattwise.providers.estimate import PowerCurve
from wattwise.providers.procstat import utilization_between

log = logging.getLogger(__name__)

PREFIX = "wattwise_"
UNIT_LABELS = ("hostname", "manager", "unit", "user", "project")


@dataclass
class ExporterConfig:
    mountinfo: Path = Path("/proc/self/mountinfo")
    cgroup_root: Path | None = None  # where the mountinfo's cgroup mount points are read (fixtures)
    powercap_root: Path | None = Path("/sys/class/powercap")
    proc_root: Path = Path("/proc")
    hostname: str = field(default_factory=socket.gethostname)
    pue: float = 1.0
    cpu_fraction: float = DEFAULT_CPU_FRACTION
    memory_fraction: float = DEFAULT_MEMORY_FRACTION
    managers: frozenset[str] = frozenset(MANAGERS)
    static_refresh_s: float = 60.0  # memory limit and cpuset are re-read at most this often
    min_interval_s: float = 1.0

    def check(self) -> None:
        check_fractions(self.cpu_fraction, self.memory_fraction)
        if self.pue < 1.0:
            raise ConfigError(f"PUE must be at least 1.0, got {self.pue}")
        unknown = sorted(self.managers - set(MANAGERS))
        if unknown:
            raise ConfigError(f"unknown unit manager(s) {', '.join(unknown)}: allowed are {', '.join(MANAGERS)}")
        if not self.hostname:
            raise ConfigError("the hostname label must not be empty")


class _UnitState:
    __slots__ = ("alive", "cpu_base_s", "cpu_share", "emissions_g", "energy_j", "first_seen_s", "gpu_energy_j",
                 "gpu_env", "gpu_power", "labels", "memory_share", "owner", "power_w", "procs_hint", "static",
                 "static_at_s", "unit", "usage")

    def __init__(self, unit: Unit, now_s: float) -> None:
        self.unit = unit
        self.owner: UnitOwner | None = None
        self.labels = ""
        self.first_seen_s = now_s
        self.cpu_base_s: float | None = None  # cgroup CPU seconds at the last attribution point
        self.energy_j = 0.0
        self.emissions_g = 0.0
        self.power_w = 0.0
        self.cpu_share = 0.0
        self.memory_share = 0.0
        self.static: StaticUsage | None = None
        self.static_at_s = 0.0
        self.usage: CgroupUsage | None = None
        self.alive = False
        self.procs_hint: str | None = None
        self.gpu_power: dict[str, tuple[float, str]] = {}  # gpu → (W with PUE, split) in the last interval
        self.gpu_energy_j: dict[str, float] = {}  # gpu → J with PUE since first seen
        self.gpu_env: list[str] | None = None  # GPUs named by a Slurm job's environment, once read


@dataclass
class _Point:
    """The node at the last attribution point."""

    t_s: float
    node: NodeSample


class MonitorExporter:
    def __init__(
        self,
        config: ExporterConfig,
        intensity: CachedIntensity,
        *,
        node: NodeReader | None = None,
        owners: OwnerResolver | None = None,
        power_curve: PowerCurve | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config.check()
        self.config = config
        self.intensity = intensity
        self.node = node or NodeReader(config.proc_root, config.powercap_root)
        self.owners = owners or OwnerResolver(config.proc_root)
        self._curve = power_curve
        self.clock = clock
        self.mounts: CgroupMounts | None = None
        self._states: dict[tuple[str, str], _UnitState] = {}
        self._point: _Point | None = None
        self._split: PowerSplit | None = None
        self._estimate_w: float | None = None
        self._node_energy_j = 0.0
        self._node_emissions_g = 0.0
        self._gpu_power_w: dict[str, float] = {}
        self._intensity: IntensityReading | None = None
        self._lock = threading.Lock()
        self.start_time_s = clock()
        self.scrapes = 0
        self.last_duration_s = 0.0
        self._host_label = label_text([("hostname", config.hostname)])

    @property
    def curve(self) -> PowerCurve:
        if self._curve is None:
            from wattwise.providers.estimate import default_power_curve

            self._curve = default_power_curve()
        return self._curve

    def open(self) -> None:
        """Find the hierarchies and node sources, and take the first reading (the origin of the
        first interval): the first scrape then already has power figures."""
        mounts = CgroupMounts.from_mountinfo(self.config.mountinfo)
        self.mounts = rebase_mounts(mounts, self.config.cgroup_root)
        if not self.mounts.v1 and self.mounts.v2 is None:
            raise ConfigError(f"no cgroup hierarchy in {self.config.mountinfo}")
        self.node.open()
        with self._lock:
            self._collect()

    # --- one scrape ------------------------------------------------------------------------------

    def scrape(self) -> str:
        with self._lock:
            started = time.perf_counter()
            families = self._collect()
            self.last_duration_s = time.perf_counter() - started
            self.scrapes += 1
            families.append(self._self_family())
            return render(families)

    def _collect(self) -> list[Family]:
        if self.mounts is None:
            raise RuntimeError("MonitorExporter.open() first")
        now = self.clock()
        node = self.node.read()
        units = discover_units(self.mounts, self.config.managers)
        first = self._point is None
        seen: set[tuple[str, str]] = set()
        for unit in units:
            key = unit.key
            seen.add(key)
            state = self._states.get(key)
            new = state is None
            if state is None:
                state = self._states[key] = _UnitState(unit, now)
            else:
                state.unit = unit
            if state.static is None or now - state.static_at_s >= self.config.static_refresh_s:
                state.static = read_static(unit)
                state.static_at_s = now
            previous = state.usage
            usage = state.usage = read_usage(unit, state.static)
            cpu_now = usage.cpu_time_s or 0.0
            if state.cpu_base_s is None:
                # a unit met at the first reading starts counting now; one created since the previous
                # attribution point has used all of its CPU time in this interval
                state.cpu_base_s = cpu_now if first else 0.0
            advanced = previous is not None and cpu_now > (previous.cpu_time_s or 0.0)
            if state.owner is None:
                found = unit_process(unit)
                state.alive = found is not None
                if found is not None:
                    pid, state.procs_hint = found
                    state.owner = self.owners.resolve(unit, pid)
                    state.labels = label_text(zip(UNIT_LABELS, (
                        self.config.hostname, unit.manager, unit.unit_id, state.owner.user,
                        state.owner.project), strict=True))
            elif new or not advanced:
                state.alive, state.procs_hint = is_populated(unit, state.procs_hint)
            else:
                state.alive = True  # it used CPU since the last scrape: no need to look for processes
        for key in [k for k in self._states if k not in seen]:
            del self._states[key]  # the cgroup is gone
        self._current_intensity(now)
        self._attribute(now, node)
        return self._families(node)

    def _attribute(self, now: float, node: NodeSample) -> None:
        point = self._point
        if point is not None and now - point.t_s < self.config.min_interval_s:
            return
        if point is None:
            self._point = _Point(now, node)
            return
        dt = now - point.t_s
        busy_delta = node.cpu.busy_s - point.node.cpu.busy_s
        rapl_package_w = rapl_dram_w = None
        if node.rapl and point.node.rapl:
            rapl_package_w = (node.rapl_energy_j("package") - point.node.rapl_energy_j("package")) / dt
            if any(c.domain == "dram" for c in node.rapl):
                rapl_dram_w = (node.rapl_energy_j("dram") - point.node.rapl_energy_j("dram")) / dt
        gpu_w = 0.0
        before = {g.label: g for g in point.node.gpus}
        self._gpu_power_w = {}
        for gpu in node.gpus:
            if gpu.power_w is not None:
                power = gpu.power_w
            elif gpu.energy_j is not None and gpu.label in before and before[gpu.label].energy_j is not None:
                power = max(0.0, (gpu.energy_j - before[gpu.label].energy_j) / dt)  # type: ignore[operator]
            else:
                continue
            self._gpu_power_w[gpu.label] = power
            gpu_w += power
        self._estimate_w = None
        if rapl_package_w is None and node.ipmi_power_w is None:
            self._estimate_w = self.curve.power_w(utilization_between(point.node.cpu, node.cpu))
        alive = [s for s in self._states.values() if s.alive and s.owner is not None]
        gpu_shares = self._gpu_shares(node, alive) if self._gpu_power_w else []
        split = split_node_power(
            rapl_package_w=rapl_package_w, rapl_dram_w=rapl_dram_w, ipmi_w=node.ipmi_power_w,
            estimate_w=self._estimate_w, gpu_w=gpu_w, gpu_attributed_w=sum(g.power_w for g in gpu_shares),
            cpu_fraction=self.config.cpu_fraction, memory_fraction=self.config.memory_fraction, meter=node.meter)
        self._split = split
        intensity = self._intensity
        cpu_deltas = []
        for state in alive:
            cpu_now = (state.usage.cpu_time_s if state.usage else None) or 0.0
            base = state.cpu_base_s or 0.0
            cpu_deltas.append(cpu_now - base if cpu_now >= base else cpu_now)
        memory = [float((s.usage.memory_b if s.usage else None) or 0) for s in alive]
        shares = unit_shares(cpu_deltas, memory, busy_delta, float(node.memory_used_b), split,
                             self.config.pue)
        intensity_g = intensity.intensity_g_per_kwh if intensity else 0.0
        pue = self.config.pue
        for state in self._states.values():
            state.gpu_power = {}
        for gpu_share in gpu_shares:
            gpu_state = self._states[gpu_share.unit]
            gpu_state.gpu_power[gpu_share.gpu] = (pue * gpu_share.power_w, gpu_share.split)
            gpu_state.gpu_energy_j[gpu_share.gpu] = (gpu_state.gpu_energy_j.get(gpu_share.gpu, 0.0)
                                                     + pue * gpu_share.power_w * dt)
        for state, share in zip(alive, shares, strict=True):
            state.cpu_share = share.cpu_share
            state.memory_share = share.memory_share
            state.power_w = share.power_w + sum(w for w, _ in state.gpu_power.values())
            energy = state.power_w * dt
            state.energy_j += energy
            state.emissions_g += emissions_g(energy, intensity_g)
        for state in self._states.values():
            if not (state.alive and state.owner is not None):
                state.power_w = state.cpu_share = state.memory_share = 0.0
            state.cpu_base_s = (state.usage.cpu_time_s if state.usage else None) or 0.0
        if split is not None:
            node_energy = split.node_w * dt
            self._node_energy_j += node_energy
            self._node_emissions_g += emissions_g(node_energy * self.config.pue, intensity_g)
        self._point = _Point(now, node)

    def _gpu_shares(self, node: NodeSample, alive: list[_UnitState]) -> list[GpuShare]:
        """The GPUs' power of the interval shared among the live units using them (wattwise.monitor.gpus)."""
        claims: dict[tuple[str, str], list[str]] = {}
        for state in alive:
            if state.unit.manager != "slurm":
                continue
            if state.gpu_env is None:
                for pid in unit_pids(state.unit.directories(), limit=64):
                    environ = process_environ(str(self.config.proc_root), pid)
                    found = gpus_from_environment(environ, node.gpus)
                    if found is not None or "SLURM_JOB_ID" in environ:
                        state.gpu_env = found or []
                        break
            if state.gpu_env:
                claims[state.unit.key] = state.gpu_env
        users = gpu_users(node.gpu_processes, str(self.config.proc_root), {s.unit.key for s in alive}, claims)
        return share_gpus(self._gpu_power_w, users)

    def _current_intensity(self, now: float) -> IntensityReading | None:
        try:
            self._intensity = self.intensity.current(now, block=False)
        except IntensityError as exc:
            log.warning("no grid intensity: %s", exc)
            self._intensity = None
        return self._intensity

    # --- rendering -------------------------------------------------------------------------------

    def _families(self, node: NodeSample) -> list[Family]:
        p = PREFIX
        f_cpu = Family(p + "unit_cpu_seconds_total", "counter", "CPU time used by the unit's cgroup.")
        f_user = Family(p + "unit_cpu_user_seconds_total", "counter", "CPU time in user mode.")
        f_sys = Family(p + "unit_cpu_system_seconds_total", "counter", "CPU time in system mode.")
        f_cpus = Family(p + "unit_cpus", "gauge", "CPUs the unit may run on (its cpuset).")
        f_mem = Family(p + "unit_memory_used_bytes", "gauge", "Memory charged to the unit, page cache included.")
        f_limit = Family(p + "unit_memory_limit_bytes", "gauge", "Memory limit of the unit (absent if none).")
        f_rss = Family(p + "unit_memory_rss_bytes", "gauge", "Anonymous memory (RSS) of the unit.")
        f_cache = Family(p + "unit_memory_cache_bytes", "gauge", "Page cache charged to the unit.")
        f_fail = Family(p + "unit_memory_failures_total", "counter",
                        "Times the unit hit its memory limit (v1 memory.failcnt, v2 memory.events max).")
        f_oom = Family(p + "unit_oom_kills_total", "counter", "Processes of the unit killed by the OOM killer.")
        f_cshare = Family(p + "unit_cpu_share_ratio", "gauge",
                          "The unit's share of the node's busy CPU time in the last interval.")
        f_mshare = Family(p + "unit_memory_share_ratio", "gauge", "The unit's share of the node's used memory.")
        f_power = Family(p + "unit_power_watts", "gauge",
                         "Node power attributed to the unit in the last interval, PUE included.")
        f_energy = Family(p + "unit_energy_joules_total", "counter",
                          "Attributed energy of the unit since this exporter first saw it, PUE included.")
        f_co2 = Family(p + "unit_emissions_grams_total", "counter",
                       "CO2-equivalent emissions of the unit's attributed energy, in grams.")
        f_start = Family(p + "unit_start_time_seconds", "gauge",
                         "When this exporter first saw the unit (Unix time).")
        optional = (
            (f_user, "cpu_user_s"), (f_sys, "cpu_system_s"), (f_cpus, "cpu_count"), (f_mem, "memory_b"),
            (f_limit, "memory_limit_b"), (f_rss, "memory_rss_b"),
            (f_cache, "memory_cache_b"), (f_fail, "memory_fail_count"), (f_oom, "oom_kill_count"),
        )
        counts: dict[str, int] = dict.fromkeys(MANAGERS, 0)
        exported = sorted((k, s) for k, s in self._states.items() if s.alive and s.owner is not None)
        fmt = format_value
        optional_appends = [(family.samples.append, family.name + "{", attribute) for family, attribute in optional]
        per_state = [(family.samples.append, family.name + "{", attribute) for family, attribute in (
            (f_cshare, "cpu_share"), (f_mshare, "memory_share"), (f_power, "power_w"), (f_energy, "energy_j"),
            (f_co2, "emissions_g"), (f_start, "first_seen_s"))]
        cpu_append, cpu_name = f_cpu.samples.append, f_cpu.name + "{"
        empty = CgroupUsage()
        for (manager, _), state in exported:
            counts[manager] = counts.get(manager, 0) + 1
            labels = state.labels + "} "
            usage = state.usage or empty
            cpu_append(cpu_name + labels + fmt(usage.cpu_time_s or 0.0))
            for append, name, attribute in optional_appends:
                value = getattr(usage, attribute)
                if value is not None:
                    append(name + labels + fmt(value))
            for append, name, attribute in per_state:
                append(name + labels + fmt(getattr(state, attribute)))
        f_info = Family(p + "unit_info", "gauge",
                        "1 for each unit with metadata from its manager: libvirt (vm_uuid, vm_name), Kubernetes "
                        "(namespace, pod, qos_class).")
        for _, state in exported:
            if state.owner is not None and state.owner.info:
                f_info.add(state.labels + "," + label_text(state.owner.info), 1)
        f_gpu_power = Family(p + "unit_gpu_power_watts", "gauge",
                             "GPU power attributed to the unit in the last interval, PUE included (split: exclusive, "
                             "utilization or even); part of wattwise_unit_power_watts.")
        f_gpu_energy = Family(p + "unit_gpu_energy_joules_total", "counter",
                              "GPU energy attributed to the unit since this exporter first saw it, PUE included; "
                              "part of wattwise_unit_energy_joules_total.")
        for _, state in exported:
            if state.gpu_energy_j:
                labels = state.labels
                for gpu, energy in sorted(state.gpu_energy_j.items()):
                    gpu_labels = labels + "," + label_text([("gpu", gpu)])
                    f_gpu_energy.add(gpu_labels, energy)
                    if gpu in state.gpu_power:
                        watts, how = state.gpu_power[gpu]
                        f_gpu_power.add(gpu_labels + "," + label_text([("split", how)]), watts)
        units = [f_cpu, f_user, f_sys, f_cpus, f_mem, f_limit, f_rss, f_cache, f_fail, f_oom,
                 f_cshare, f_mshare, f_power, f_energy, f_co2, f_start, f_info, f_gpu_power, f_gpu_energy]
        return [*units, *self._node_families(node, counts)]

    def _node_families(self, node: NodeSample, counts: dict[str, int]) -> list[Family]:
        p = PREFIX
        host = self._host_label
        hostname = self.config.hostname
        cpu = Family(p + "node_cpu_seconds_total", "counter", "CPU time of the node by mode, summed over CPUs.")
        for mode, seconds in node.cpu.seconds_by_mode.items():
            cpu.add(label_text([("hostname", hostname), ("mode", mode)]), seconds)
        cpus = Family(p + "node_cpus", "gauge", "CPUs of the node.")
        cpus.add(host, node.cpu.cpu_count)
        memory = []
        for key, name, text in (("MemTotal", "total", "Total usable memory of the node."),
                                ("MemFree", "free", "Memory not used at all."),
                                ("MemAvailable", "available", "Memory available for new work.")):
            family = Family(p + f"node_memory_{name}_bytes", "gauge", text)
            if key in node.memory_b:
                family.add(host, node.memory_b[key])
            memory.append(family)
        used = Family(p + "node_memory_used_bytes", "gauge",
                      "MemTotal - MemFree: the denominator of the units' memory shares.")
        used.add(host, node.memory_used_b)
        memory.append(used)
        rapl = Family(p + "rapl_energy_joules_total", "counter",
                      "RAPL zone energy, corrected for counter wrap-around (package and dram add up; "
                      "core and uncore are inside their package; psys contains the packages).")
        for counter in node.rapl:
            rapl.add(label_text([("hostname", hostname), ("zone", counter.detail),
                                 ("domain", counter.domain)]), counter.energy_j)
        ipmi = Family(p + "ipmi_power_watts", "gauge", "Whole-node power from the BMC (IPMI DCMI).")
        if node.ipmi_power_w is not None and node.meter == "ipmi":
            ipmi.add(host, node.ipmi_power_w)
        meter = Family(p + "node_meter_power_watts", "gauge",
                       "Whole-node power meter (meter: ipmi, redfish, hwmon) by statistic: current, and the "
                       "average, minimum and maximum over the meter's sampling period where it gives them.")
        meter_period = Family(p + "node_meter_sampling_period_seconds", "gauge",
                              "The period the meter's average, minimum and maximum cover.")
        reading = node.meter_reading
        if reading is not None:
            for stat, value in (("current", reading.power_w), ("average", reading.average_w),
                                ("minimum", reading.minimum_w), ("maximum", reading.maximum_w)):
                if value is not None:
                    meter.add(label_text([("hostname", hostname), ("meter", node.meter), ("stat", stat)]), value)
            if reading.sampling_period_s is not None:
                meter_period.add(label_text([("hostname", hostname), ("meter", node.meter)]),
                                 reading.sampling_period_s)
        gpu_power = Family(p + "gpu_power_watts", "gauge", "GPU board power.")
        gpu_energy = Family(p + "gpu_energy_joules_total", "counter", "GPU energy since the exporter started.")
        for gpu in node.gpus:
            labels = label_text([("hostname", hostname), ("gpu", gpu.label)])
            gpu_w = gpu.power_w if gpu.power_w is not None else self._gpu_power_w.get(gpu.label)
            if gpu_w is not None:
                gpu_power.add(labels, gpu_w)
            if gpu.energy_j is not None:
                gpu_energy.add(labels, gpu.energy_j)
        estimate = Family(p + "node_estimated_power_watts", "gauge",
                          "Node power estimated from CPU utilization (only where RAPL and IPMI are absent); "
                          f"curve: {self.curve.source if self._estimate_w is not None else 'n/a'}.")
        if self._estimate_w is not None:
            estimate.add(host, self._estimate_w)
        power = Family(p + "node_power_watts", "gauge",
                       "The node reading shared among units in the last interval, before PUE.")
        split_family = Family(p + "node_power_split_watts", "gauge",
                              "The node power in the parts attributed by CPU share, by memory share, evenly "
                              "(fixed), by GPU use (gpu), and not at all (GPUs no unit used), before PUE.")
        split = self._split
        if split is not None:
            power.add(label_text([("hostname", hostname), ("source", split.source)]), split.node_w)
            for part, value in (("cpu", split.cpu_w), ("memory", split.memory_w), ("fixed", split.fixed_w),
                                ("gpu", split.gpu_attributed_w), ("unattributed", split.unattributed_w)):
                split_family.add(label_text([("hostname", hostname), ("part", part)]), value)
        node_energy = Family(p + "node_energy_joules_total", "counter",
                             "Integral of the node power since the exporter started, before PUE.")
        node_energy.add(host, self._node_energy_j)
        node_co2 = Family(p + "node_emissions_grams_total", "counter",
                          "Emissions of the node energy times PUE since the exporter started, in grams.")
        node_co2.add(host, self._node_emissions_g)
        pue = Family(p + "pue_ratio", "gauge", "Power usage effectiveness applied to unit power.")
        pue.add(host, self.config.pue)
        grid = Family(p + "grid_intensity_grams_per_kwh", "gauge",
                      "Grid carbon intensity used for emissions (gCO2e/kWh).")
        stale = Family(p + "grid_intensity_stale", "gauge",
                       "1 when the intensity is a last-good or fallback value because its source failed.")
        if self._intensity is not None:
            now_intensity = self._intensity
            labels = label_text([("hostname", hostname), ("source", now_intensity.source),
                                 ("zone", now_intensity.zone)])
            grid.add(labels, now_intensity.intensity_g_per_kwh)
            stale.add(host, 1 if now_intensity.stale else 0)
        units = Family(p + "exporter_units", "gauge", "Live units exported, by manager.")
        for manager, count in sorted(counts.items()):
            units.add(label_text([("hostname", hostname), ("manager", manager)]), count)
        started = Family(p + "exporter_start_time_seconds", "gauge", "When this exporter process started.")
        started.add(host, self.start_time_s)
        return [cpu, cpus, *memory, rapl, ipmi, meter, meter_period, gpu_power, gpu_energy, estimate, power,
                split_family, node_energy, node_co2, pue, grid, stale, units, started]

    def _self_family(self) -> Family:
        family = Family(PREFIX + "exporter_scrape_duration_seconds", "gauge",
                        "How long the previous scrape took to collect (walk, reads, attribution).")
        family.add(self._host_label, self.last_duration_s)
        return family
