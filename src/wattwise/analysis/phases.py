"""Per-phase summaries of a stored run: duration, energy, power, resource use, carbon.

Machine energy comes from the best source the run has, in this order:
1. IPMI DCMI power (the whole machine, at the wall) integrated over time;
2. RAPL package (+ DRAM) energy counters, plus GPU energy counters or integrated GPU power;
3. the estimated machine power (load→power curve), integrated, plus GPU figures where measured.
The summary says which source it used and whether the figure is estimated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wattwise.analysis import series as ts
from wattwise.carbon.static import carbon_g
from wattwise.providers.estimate import INTERVAL_FIGURES, estimate_interval
from wattwise.store import Store


@dataclass
class Series:
    metric_id: int
    name: str
    unit: str
    kind: str
    provider: str
    detail: str
    estimated: bool
    t_us: np.ndarray
    values: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.name}[{self.detail}]" if self.detail else self.name

    def covers(self, start_us: float, end_us: float) -> bool:
        """Whether the series was sampled at some point of the window (a unit attached later is not)."""
        return len(self.t_us) > 0 and self.t_us[0] <= end_us and self.t_us[-1] >= start_us

    def delta(self, start_us: float, end_us: float) -> float | None:
        if not self.covers(start_us, end_us):
            return None
        return ts.counter_delta_raw(self.t_us, self.values, start_us, end_us)

    def integral(self, start_us: float, end_us: float) -> float | None:
        if not self.covers(start_us, end_us):
            return None
        return ts.gauge_integral_raw(self.t_us, self.values, start_us, end_us)

    def amount(self, start_us: float, end_us: float) -> float | None:
        """Counter: difference; gauge: time integral (value·s)."""
        if self.kind == "counter":
            return self.delta(start_us, end_us)
        return self.integral(start_us, end_us)

    def peak(self, start_us: float, end_us: float) -> float | None:
        if not self.covers(start_us, end_us):
            return None
        if self.kind == "counter":
            return ts.counter_peak_rate_raw(self.t_us, self.values, start_us, end_us)
        return ts.gauge_max_raw(self.t_us, self.values, start_us, end_us)

    def mean(self, start_us: float, end_us: float) -> float | None:
        """Time-weighted mean of a gauge; mean rate (per s) of a counter."""
        amount = self.amount(start_us, end_us)
        duration_s = (end_us - start_us) / 1e6
        return None if amount is None or duration_s <= 0 else amount / duration_s


def counter_delta(series: Series, start_us: float, end_us: float) -> float | None:
    return series.delta(start_us, end_us)


def gauge_integral(series: Series, start_us: float, end_us: float) -> float | None:
    return series.integral(start_us, end_us)


def read_samples(
    store: Store, metric_id: int, start_us: float | None = None, end_us: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of one metric as arrays (the store's fast cursor path)."""
    return store.samples(
        metric_id, None if start_us is None else int(start_us), None if end_us is None else int(end_us)
    )


def load_series(store: Store, run_id: int) -> list[Series]:
    out = []
    for metric in store.metrics(run_id):
        t_us, values = read_samples(store, metric.id)
        if metric.kind == "counter":  # a counter that went down was reset: never a negative amount
            values = ts.reset_corrected(values)
        out.append(
            Series(
                metric.id,
                metric.name,
                metric.unit,
                metric.kind,
                metric.provider,
                metric.detail,
                metric.estimated,
                t_us,
                values,
            )
        )
    return out


@dataclass
class EnergyFigure:
    energy_j: float | None
    peak_power_w: float | None
    source: str
    estimated: bool
    by_source: dict[str, float] = field(default_factory=dict)


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _is_rapl_total_zone(series: Series) -> bool:
    # package and dram zones only: core/uncore (pp0/pp1) lie inside the package, psys contains it
    detail = series.detail.lower()
    return not any(part in detail for part in ("core", "pp0", "pp1", "psys"))


def machine_energy(series: list[Series], start_us: float, end_us: float) -> EnergyFigure:
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    by_source: dict[str, float] = {}
    for name, group in by_name.items():
        if name.endswith("_energy_j") or (name.endswith("_power_w") and group[0].kind == "gauge"):
            chosen = [s for s in group if name != "rapl_energy_j" or _is_rapl_total_zone(s)]
            amount = _sum(s.amount(start_us, end_us) for s in chosen)
            if amount is not None:
                by_source[name] = amount

    def peak(names: tuple[str, ...]) -> float | None:
        return _sum(
            _sum(s.peak(start_us, end_us) for s in by_name.get(n, []) if n != "rapl_energy_j" or _is_rapl_total_zone(s))
            for n in names
        )

    gpu_names = tuple(n for n in ("gpu_energy_j", "gpu_power_w") if n in by_source)
    gpu_j = _sum(by_source[n] for n in gpu_names)
    if "ipmi_power_w" in by_source:
        return EnergyFigure(by_source["ipmi_power_w"], peak(("ipmi_power_w",)), "ipmi", False, by_source)
    if "rapl_energy_j" in by_source:
        total = by_source["rapl_energy_j"] + (gpu_j or 0.0)
        source = "rapl" + ("+gpu" if gpu_names else "")
        return EnergyFigure(total, peak(("rapl_energy_j", *gpu_names)), source, False, by_source)
    if "estimated_power_w" in by_source:
        total = by_source["estimated_power_w"] + (gpu_j or 0.0)
        source = "estimate" + ("+gpu" if gpu_names else "")
        return EnergyFigure(total, peak(("estimated_power_w", *gpu_names)), source, True, by_source)
    if gpu_names:
        return EnergyFigure(gpu_j, peak(gpu_names), "gpu", False, by_source)
    return EnergyFigure(None, None, "none", False, by_source)


@dataclass
class PhaseSummary:
    name: str
    start_us: int
    end_us: int
    duration_s: float
    energy_j: float | None
    mean_power_w: float | None
    peak_power_w: float | None
    carbon_g: float | None
    estimated: bool
    energy_source: str
    samples: int
    cpu_utilization_mean: float | None = None
    unit_cpu_time_s: float | None = None
    unit_cpu_share: float | None = None
    unit_energy_j: float | None = None
    unit_memory_peak_b: float | None = None
    network_rx_b: float | None = None
    network_tx_b: float | None = None
    energy_by_source_j: dict[str, float] = field(default_factory=dict)
    parent: str | None = None
    hidden: bool = False
    #: names of the visible flow sub-phases this phase's figures were summed from ([RUNTIME] only)
    rebuilt_from: list[str] = field(default_factory=list)
    #: interval of the estimated figures (providers.estimate.estimate_interval); None when measured
    energy_j_low: float | None = None
    energy_j_high: float | None = None
    mean_power_w_low: float | None = None
    mean_power_w_high: float | None = None
    carbon_g_low: float | None = None
    carbon_g_high: float | None = None
    unit_energy_j_low: float | None = None
    unit_energy_j_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_phase(
    series: list[Series],
    name: str,
    start_us: int,
    end_us: int,
    *,
    intensity_g_per_kwh: float,
    pue: float = 1.0,
    unit_label: str | None = None,
    parent: str | None = None,
    hidden: bool = False,
) -> PhaseSummary:
    duration_s = max(0.0, (end_us - start_us) / 1e6)
    figure = machine_energy(series, start_us, end_us)
    mean_power = figure.energy_j / duration_s if figure.energy_j is not None and duration_s > 0 else None

    def find(name_: str, detail: str | None = None) -> list[Series]:
        return [s for s in series if s.name == name_ and (detail is None or s.detail == detail)]

    utilization = find("cpu_utilization_ratio")
    busy = find("cpu_busy_time_s")
    # the unit is a cgroup (a measured command, a container) or, for the Python tracker, its own process
    unit_cpu = find("cgroup_cpu_time_s", unit_label) or find("process_cpu_time_s", unit_label)
    unit_memory = find("cgroup_memory_b", unit_label) or find("process_memory_b", unit_label)
    rx = find("network_rx_b", "machine") or find("network_rx_b")
    tx = find("network_tx_b", "machine") or find("network_tx_b")
    unit_cpu_s = _sum(s.delta(start_us, end_us) for s in unit_cpu)
    machine_busy_s = _sum(s.delta(start_us, end_us) for s in busy)
    share = None
    if unit_cpu_s is not None and machine_busy_s:
        share = min(1.0, max(0.0, unit_cpu_s / machine_busy_s))
    unit_energy = None
    if share is not None and figure.energy_j is not None:
        unit_energy = figure.energy_j * share
    sample_count = sum(ts.samples_in(s.t_us, start_us, end_us) for s in series)
    carbon = None if figure.energy_j is None else carbon_g(figure.energy_j, intensity_g_per_kwh, pue)
    interval = estimate_interval(
        {"energy_j": figure.energy_j, "mean_power_w": mean_power, "carbon_g": carbon, "unit_energy_j": unit_energy},
        figure.by_source.get("estimated_power_w"),
        _sum(s.amount(start_us, end_us) for s in find("estimated_power_low_w")),
        _sum(s.amount(start_us, end_us) for s in find("estimated_power_high_w")),
    ) if figure.estimated else {}
    summary = PhaseSummary(
        name=name,
        start_us=start_us,
        end_us=end_us,
        duration_s=duration_s,
        energy_j=figure.energy_j,
        mean_power_w=mean_power,
        peak_power_w=figure.peak_power_w,
        carbon_g=None if figure.energy_j is None else carbon_g(figure.energy_j, intensity_g_per_kwh, pue),
        estimated=figure.estimated,
        energy_source=figure.source,
        samples=sample_count,
        cpu_utilization_mean=utilization[0].mean(start_us, end_us) if utilization else None,
        unit_cpu_time_s=unit_cpu_s,
        unit_cpu_share=share,
        unit_energy_j=unit_energy,
        unit_memory_peak_b=_max(s.peak(start_us, end_us) for s in unit_memory),
        network_rx_b=_sum(s.delta(start_us, end_us) for s in rx),
        network_tx_b=_sum(s.delta(start_us, end_us) for s in tx),
        energy_by_source_j=figure.by_source,
        parent=parent,
        hidden=hidden,
    )
    for key, value in interval.items():  # energy_j_low … unit_energy_j_high
        setattr(summary, key, value)
    return summary


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def combine_phases(name: str, parts: list[PhaseSummary], *, template: PhaseSummary | None = None) -> PhaseSummary:
    """One summary from disjoint phases (e.g. [RUNTIME] from its visible flow sub-phases): amounts are
    summed, means weighted by duration, peaks are the largest."""
    duration = sum(p.duration_s for p in parts)
    energy = _sum(p.energy_j for p in parts)
    weighted = [(p.duration_s, p.cpu_utilization_mean) for p in parts if p.cpu_utilization_mean is not None]
    weight = sum(d for d, _ in weighted)
    by_source: dict[str, float] = {}
    for p in parts:
        for key, value in p.energy_by_source_j.items():
            by_source[key] = by_source.get(key, 0.0) + value
    unit_cpu = _sum(p.unit_cpu_time_s for p in parts)
    unit_energy = _sum(p.unit_energy_j for p in parts)
    combined = PhaseSummary(
        name=name,
        start_us=min(p.start_us for p in parts),
        end_us=max(p.end_us for p in parts),
        duration_s=duration,
        energy_j=energy,
        mean_power_w=energy / duration if energy is not None and duration > 0 else None,
        peak_power_w=_max(p.peak_power_w for p in parts),
        carbon_g=_sum(p.carbon_g for p in parts),
        estimated=any(p.estimated for p in parts),
        energy_source=parts[0].energy_source,
        samples=sum(p.samples for p in parts),
        cpu_utilization_mean=sum(d * v for d, v in weighted) / weight if weight > 0 else None,
        unit_cpu_time_s=unit_cpu,
        unit_cpu_share=(unit_energy / energy) if unit_energy is not None and energy else None,
        unit_energy_j=unit_energy,
        unit_memory_peak_b=_max(p.unit_memory_peak_b for p in parts),
        network_rx_b=_sum(p.network_rx_b for p in parts),
        network_tx_b=_sum(p.network_tx_b for p in parts),
        energy_by_source_j=by_source,
        parent=template.parent if template else None,
        hidden=template.hidden if template else False,
        rebuilt_from=[p.name for p in parts],
    )
    for key in (f"{figure}_{bound}" for figure in INTERVAL_FIGURES for bound in ("low", "high")):
        if key != "mean_power_w_low" and key != "mean_power_w_high" and all(getattr(p, key) is not None for p in parts):
            setattr(combined, key, _sum(getattr(p, key) for p in parts))
    if combined.energy_j_low is not None and combined.energy_j_high is not None and duration > 0:
        combined.mean_power_w_low = combined.energy_j_low / duration
        combined.mean_power_w_high = combined.energy_j_high / duration
    return combined


def rebuild_runtime(phases: list[PhaseSummary], runtime: str = "[RUNTIME]") -> list[PhaseSummary]:
    """Replace (or add) `runtime` by the combination of its visible flow sub-phases, when it has any."""
    children = [p for p in phases if p.parent == runtime and not p.hidden]
    if not children:
        return phases
    out = list(phases)
    current = next((p for p in out if p.name == runtime), None)
    rebuilt = combine_phases(runtime, children, template=current)
    if current is not None:
        out[out.index(current)] = rebuilt
    else:
        out.insert(out.index(children[0]), rebuilt)
    return out


def summarize_run(
    store: Store,
    run_id: int,
    *,
    intensity_g_per_kwh: float | None = None,
    pue: float | None = None,
    series: list[Series] | None = None,
) -> dict[str, Any]:
    """The run's phases with their figures. Intensity and PUE default to what the run recorded."""
    run = store.get_run(run_id)
    settings = run.settings or {}
    intensity = intensity_g_per_kwh if intensity_g_per_kwh is not None else settings.get("intensity_g_per_kwh", 0.0)
    pue = pue if pue is not None else settings.get("pue", 1.0)
    series = series if series is not None else load_series(store, run_id)
    unit_label = settings.get("unit_label")
    phases = [
        summarize_phase(
            series,
            p.name,
            p.start_us,
            p.end_us,
            intensity_g_per_kwh=intensity,
            pue=pue,
            unit_label=unit_label,
            parent=p.parent,
            hidden=p.hidden,
        )
        for p in store.phases(run_id)
    ]
    phases = rebuild_runtime(phases)
    from wattwise.analysis.energy import add_energy_figures

    given = settings.get("baseline_power_w")
    return add_energy_figures(
        {
            "run_id": run.id,
            "name": run.name,
            "status": run.status,
            "estimated": any(p.estimated for p in phases),
            # the estimate's curve: model, interval, facts found and assumed (None when measured)
            "estimate_source": settings.get("power_curve") if any(p.estimated for p in phases) else None,
            "intensity_g_per_kwh": intensity,
            "intensity_source": settings.get("intensity_source", ""),
            "pue": pue,
            "phases": [p.to_dict() for p in phases],
            "warnings": list(run.warnings or []),
        },
        float(given) if given is not None else None,
    )
