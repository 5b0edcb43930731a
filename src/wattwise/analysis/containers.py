"""Per-container energy: the machine's energy attributed by each container's share of the machine's CPU work.

The figures are those of analysis/energy.py, per container. For a phase with machine energy E, duration d,
baseline power P₀ (the mean machine power of the run's [BASELINE] phase, or a given value), the machine's
busy CPU time B (``cpu_busy_time_s``) and containers c with CPU time t_c (``cgroup_cpu_time_s`` increase,
detail = container name):

    share_c                 = t_c / B                       (t_c / Σ t_k where B is not measured, with a warning)
    attributed_energy_j_c   = E × share_c                   (idle power included, by CPU work)
    above_baseline_energy_j = max(0, E − P₀ × d) × share_c  (only what the machine drew above its baseline)

A container's share is of the machine, exactly like the unit's share of a `wattwise measure` run, so the
figures agree wherever they are shown; the rest (1 − Σ share) is the host's and the measurement's own work.
The old keys ``energy_gross_j`` and ``energy_surplus_j`` remain in the JSON as aliases of the new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from wattwise.analysis.phases import Series, load_series, machine_energy
from wattwise.analysis.stats import RUNTIME, flow_children
from wattwise.store import Store

CPU_METRIC = "cgroup_cpu_time_s"
MEMORY_METRIC = "cgroup_memory_b"
BASELINE = "[BASELINE]"


@dataclass
class ContainerEnergy:
    name: str
    cpu_time_s: float
    #: of the machine's busy CPU time (of the containers' CPU time where that is not measured)
    share: float
    attributed_energy_j: float | None
    above_baseline_energy_j: float | None
    cpu_share_of_machine: float | None
    memory_peak_b: float | None

    @property
    def energy_gross_j(self) -> float | None:  # the name before the energy figures were defined once
        return self.attributed_energy_j

    @property
    def energy_surplus_j(self) -> float | None:
        return self.above_baseline_energy_j


@dataclass
class PhaseContainers:
    phase: str
    duration_s: float
    machine_energy_j: float | None
    baseline_power_w: float | None
    above_baseline_energy_j: float | None
    containers: list[ContainerEnergy]
    warnings: list[str] = field(default_factory=list)

    @property
    def surplus_energy_j(self) -> float | None:  # the name before the energy figures were defined once
        return self.above_baseline_energy_j

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["surplus_energy_j"] = self.above_baseline_energy_j
        for c, d in zip(self.containers, out["containers"], strict=True):
            d["energy_gross_j"] = c.attributed_energy_j
            d["energy_surplus_j"] = c.above_baseline_energy_j
        return out


def _sum_over(windows: list[tuple[int, int]], fn: Callable[[int, int], float | None]) -> float | None:
    values = [fn(a, b) for a, b in windows]
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def baseline_power(store: Store, run_id: int, series: list[Series]) -> float | None:
    """Mean machine power during the run's [BASELINE] phase (W), None without one."""
    for p in store.phases(run_id):
        if p.name == BASELINE and p.end_us > p.start_us:
            energy = machine_energy(series, p.start_us, p.end_us).energy_j
            if energy is not None:
                return energy / ((p.end_us - p.start_us) / 1e6)
    return None


def split_energy(
    phase: str,
    windows: list[tuple[int, int]],
    series: list[Series],
    baseline_power_w: float | None,
) -> PhaseContainers:
    duration_s = sum(max(0, b - a) for a, b in windows) / 1e6
    energy = _sum_over(windows, lambda a, b: machine_energy(series, a, b).energy_j)
    warnings: list[str] = []
    surplus_total = None
    if energy is not None and baseline_power_w is not None:
        surplus_total = energy - baseline_power_w * duration_s
        if abs(surplus_total) <= 1e-9 * max(abs(energy), 1.0):  # rounding noise of equal powers
            surplus_total = 0.0
        if surplus_total < 0:
            warnings.append(
                f"phase {phase}: the machine drew less than its baseline ({baseline_power_w:.3g} W); "
                "surplus energy is counted as 0"
            )
            surplus_total = 0.0
    busy = [s for s in series if s.name == "cpu_busy_time_s"]
    machine_busy = (
        _sum_over(windows, lambda a, b: _sum_present(s.delta(a, b) for s in busy)) if busy else None
    )
    cpu: dict[str, float] = {}
    memory: dict[str, float] = {}
    for s in series:
        if s.name == CPU_METRIC:
            value = _sum_over(windows, s.delta)
            if value is not None:
                cpu[s.detail] = cpu.get(s.detail, 0.0) + max(0.0, value)
        elif s.name == MEMORY_METRIC:
            value = max((v for v in (s.peak(a, b) for a, b in windows) if v is not None), default=None)
            if value is not None:
                memory[s.detail] = max(memory.get(s.detail, 0.0), value)
    total_cpu = sum(cpu.values())
    if cpu and total_cpu <= 0:
        warnings.append(f"phase {phase}: the containers used no CPU time; energy is not split")
    denominator = machine_busy if machine_busy and machine_busy > 0 else total_cpu
    if cpu and total_cpu > 0 and not (machine_busy and machine_busy > 0):
        warnings.append(
            f"phase {phase}: the machine's busy CPU time is not measured: shares are of the containers' CPU "
            "time, so the host's own work is attributed to them"
        )
    containers = []
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        share = min(1.0, seconds / denominator) if total_cpu > 0 else 0.0
        containers.append(
            ContainerEnergy(
                name=name,
                cpu_time_s=seconds,
                share=share,
                attributed_energy_j=energy * share if energy is not None and total_cpu > 0 else None,
                above_baseline_energy_j=surplus_total * share
                if surplus_total is not None and total_cpu > 0
                else None,
                cpu_share_of_machine=min(1.0, seconds / machine_busy) if machine_busy else None,
                memory_peak_b=memory.get(name),
            )
        )
    return PhaseContainers(phase, duration_s, energy, baseline_power_w, surplus_total, containers, warnings)


def _sum_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def run_containers(
    store: Store,
    run_id: int,
    *,
    baseline_power_w: float | None = None,
    series: list[Series] | None = None,
    include_hidden: bool = False,
) -> list[PhaseContainers]:
    """Per-container energy for every phase of the run ([RUNTIME] rebuilt from its flow sub-phases)."""
    series = series if series is not None else load_series(store, run_id)
    run = store.get_run(run_id)
    if baseline_power_w is None:
        given = (run.settings or {}).get("baseline_power_w")
        baseline_power_w = float(given) if given is not None else baseline_power(store, run_id, series)
    phases = store.phases(run_id)
    children = flow_children(phases)
    out = []
    runtime_done = False
    for p in phases:
        if p.hidden and not include_hidden:
            continue
        if p.name == RUNTIME and children:
            windows = [(c.start_us, c.end_us) for c in children]
            runtime_done = True
        else:
            windows = [(p.start_us, p.end_us)]
        out.append(split_energy(p.name, windows, series, baseline_power_w))
    if children and not runtime_done:
        first = next(i for i, item in enumerate(out) if item.phase == children[0].name)
        out.insert(
            first, split_energy(RUNTIME, [(c.start_us, c.end_us) for c in children], series, baseline_power_w)
        )
    return out
