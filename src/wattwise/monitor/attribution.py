"""How node power is shared among compute units. Pure functions; docs/monitoring.md has the same text.

Between two scrapes (interval Δt) the exporter knows, for the node:

* ΔB — busy CPU seconds (all modes but idle and iowait, /proc/stat), summed over CPUs;
* M  — memory in use, MemTotal − MemFree (includes the page cache, like a cgroup's usage);
* the node power, split into three parts (:func:`split_node_power`):

  ==================  =======================  =============================  ==============================
  sources             P_cpu                    P_mem                          P_fixed
  ==================  =======================  =============================  ==============================
  RAPL and IPMI       Σ package power (ΔE/Δt)  Σ dram power                   IPMI − RAPL − GPU (≥ 0)
  RAPL only           Σ package power          Σ dram power (0 without dram)  0
  IPMI only           f_cpu · (IPMI − GPU)     f_mem · (IPMI − GPU)           (1 − f_cpu − f_mem)·(IPMI − GPU)
  neither (estimate)  f_cpu · P_est            f_mem · P_est                  (1 − f_cpu − f_mem) · P_est
  ==================  =======================  =============================  ==============================

  with the documented default split f_cpu = 0.7, f_mem = 0.1 (fixed part 0.2: fans, disks, network,
  power-supply losses), and P_est the load→power curve at the node's CPU utilization. GPU power is
  taken out of a whole-node reading before the split and attributed by GPU use instead
  (:mod:`wattwise.monitor.gpus`): P_u gains PUE · Σ_g share_u,g · P_g.

and, for each unit u of the N units alive at the scrape:

* Δc_u — CPU seconds of its cgroup in the interval; M_u — its memory usage now.
* CPU share      s_u = Δc_u / max(ΔB, Σ_v Δc_v)
* memory share   m_u = M_u / max(M, Σ_v M_v)
* power          P_u = PUE · (s_u · P_cpu + m_u · P_mem + P_fixed / N)
* energy         E_u += P_u · Δt                       (a counter kept by the exporter process)
* emissions      G_u += P_u · Δt / 3.6e6 · I           (I: grid intensity in g/kWh at the scrape)

The denominators take the larger of the node figure and the sum over units so that shares never add
up to more than 1 when cgroup and /proc accounting disagree slightly. CPU time of processes outside any
unit (system daemons) keeps its share of P_cpu unattributed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wattwise.errors import ConfigError
from wattwise.units import J_PER_KWH

DEFAULT_CPU_FRACTION = 0.7
DEFAULT_MEMORY_FRACTION = 0.1


@dataclass(frozen=True)
class PowerSplit:
    """Node power in three parts, all in watts, before PUE."""

    source: str  # rapl+ipmi, rapl, ipmi, estimate
    node_w: float  # the node reading the split comes from
    cpu_w: float
    memory_w: float
    fixed_w: float
    unattributed_w: float = 0.0  # power of GPUs no unit used
    gpu_attributed_w: float = 0.0  # power of GPUs charged to the units using them

    @property
    def attributable_w(self) -> float:
        return self.cpu_w + self.memory_w + self.fixed_w


def check_fractions(cpu_fraction: float, memory_fraction: float) -> None:
    if cpu_fraction < 0 or memory_fraction < 0 or cpu_fraction + memory_fraction > 1 + 1e-12:
        raise ConfigError(
            f"power split fractions must be ≥ 0 with cpu + memory ≤ 1, got cpu={cpu_fraction}, "
            f"memory={memory_fraction}")


def split_node_power(
    *,
    rapl_package_w: float | None = None,
    rapl_dram_w: float | None = None,
    ipmi_w: float | None = None,
    estimate_w: float | None = None,
    gpu_w: float = 0.0,
    gpu_attributed_w: float = 0.0,
    cpu_fraction: float = DEFAULT_CPU_FRACTION,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
    meter: str = "ipmi",
) -> PowerSplit | None:
    """The split of the table above, from whichever readings exist (None: no power known).

    `ipmi_w`: a whole-node reading, from the meter named by `meter` (ipmi, redfish, hwmon: the source label).

    `gpu_w`: all GPUs' power; `gpu_attributed_w`: the part of it charged to units (wattwise.monitor.gpus).
    The GPUs are part of the node reading: inside a whole-node (IPMI) reading, added to RAPL or the estimate."""
    check_fractions(cpu_fraction, memory_fraction)
    gpu_w = max(0.0, gpu_w)
    if rapl_package_w is not None:
        package = max(0.0, rapl_package_w)
        dram = max(0.0, rapl_dram_w or 0.0)
        if ipmi_w is not None:
            rest = max(0.0, ipmi_w - package - dram - gpu_w)
            return _with_gpu(PowerSplit(f"rapl+{meter}", ipmi_w, package, dram, rest), gpu_w, gpu_attributed_w)
        return _with_gpu(PowerSplit("rapl", package + dram + gpu_w, package, dram, 0.0), gpu_w, gpu_attributed_w)
    if ipmi_w is not None:
        base = max(0.0, ipmi_w - gpu_w)
        return _with_gpu(PowerSplit(meter, ipmi_w, cpu_fraction * base, memory_fraction * base,
                                    (1 - cpu_fraction - memory_fraction) * base), min(gpu_w, ipmi_w),
                         gpu_attributed_w)
    if estimate_w is not None:
        base = max(0.0, estimate_w)
        return _with_gpu(PowerSplit("estimate", base + gpu_w, cpu_fraction * base, memory_fraction * base,
                                    (1 - cpu_fraction - memory_fraction) * base), gpu_w, gpu_attributed_w)
    return None


def _with_gpu(split: PowerSplit, gpu_w: float, attributed_w: float) -> PowerSplit:
    attributed = min(max(0.0, attributed_w), gpu_w)
    return PowerSplit(split.source, split.node_w, split.cpu_w, split.memory_w, split.fixed_w,
                      gpu_w - attributed, attributed)


@dataclass(frozen=True)
class UnitShare:
    cpu_share: float
    memory_share: float
    power_w: float  # including PUE


def unit_shares(
    cpu_deltas_s: Sequence[float],
    memory_b: Sequence[float],
    node_busy_delta_s: float,
    node_memory_used_b: float,
    split: PowerSplit | None,
    pue: float = 1.0,
) -> list[UnitShare]:
    """Shares and power of each unit, in the order given (see the module doc for the formula)."""
    n = len(cpu_deltas_s)
    if n == 0:
        return []
    cpu = [max(0.0, c) for c in cpu_deltas_s]
    memory = [max(0.0, m) for m in memory_b]
    cpu_total = max(node_busy_delta_s, sum(cpu))
    memory_total = max(node_memory_used_b, sum(memory))
    shares: list[UnitShare] = []
    for c, m in zip(cpu, memory, strict=True):
        s = c / cpu_total if cpu_total > 0 else 0.0
        mm = m / memory_total if memory_total > 0 else 0.0
        power = 0.0 if split is None else pue * (s * split.cpu_w + mm * split.memory_w + split.fixed_w / n)
        shares.append(UnitShare(s, mm, power))
    return shares


def emissions_g(energy_j: float, intensity_g_per_kwh: float) -> float:
    return energy_j / J_PER_KWH * intensity_g_per_kwh
