"""What a scenario run stores besides samples: logs, notes, custom metrics, SCI, per-service figures."""

from __future__ import annotations

from typing import Any

from wattwise.measure.scenario.backends import Unit
from wattwise.measure.scenario.model import Scenario
from wattwise.measure.scenario.outputs import Collected
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store

_FIGURES = (
    ("cgroup_cpu_time_s", "cpu_time_s", "delta"),
    ("cgroup_memory_b", "memory_peak_b", "peak"),
    ("network_rx_b", "network_rx_b", "delta"),
    ("network_tx_b", "network_tx_b", "delta"),
)


class Results:
    """Storing a run's outputs; `ScenarioRun` sets the attributes."""

    store: Store
    run_id: int
    scenario: Scenario
    collected: Collected
    logs: list[tuple[str, str, str, int | None]]
    units: dict[str, Unit]

    def _store_outputs(self) -> None:
        store, run_id = self.store, self.run_id
        for source, stream, text, t_us in self.logs:
            store.add_log(run_id, source, stream, text, t_us)
        store.add_notes(run_id, sorted(self.collected.notes, key=lambda note: note[0]))
        units = {m.name: m.unit for m in self.scenario.custom_metrics.values()}
        for metric_name, samples in self.collected.metric_samples.items():
            by_source: dict[str, list[tuple[int, float]]] = {}
            for t_us, value, source in samples:
                by_source.setdefault(source, []).append((t_us, value))
            for source, rows in by_source.items():
                spec = MetricSpec(
                    metric_name,
                    units[metric_name],
                    Kind.GAUGE,
                    source,
                    description=f"custom metric {metric_name} of the scenario (printed by {source})",
                )
                metric_id = store.add_metric(run_id, spec, "custom")
                store.add_samples([(metric_id, t, v) for t, v in sorted(rows)])
        settings = dict(store.get_run(run_id).settings or {})
        sci = self._sci()
        if sci is not None:
            settings["sci"] = sci
        settings["containers"] = {
            name: unit.container for name, unit in self.units.items() if unit.container is not None
        }
        store.update_run(run_id, settings=settings)

    def _sci(self) -> dict[str, Any] | None:
        unit_metric = next((m for m in self.scenario.custom_metrics.values() if m.sci), None)
        if unit_metric is None and self.scenario.sci is None:
            return None
        sci: dict[str, Any] = dict(self.scenario.sci or {})
        if unit_metric is not None:
            values = [v for _, v, _ in self.collected.metric_samples.get(unit_metric.name, [])]
            sci["R"] = sum(values)
            sci.setdefault("R_d", unit_metric.unit)
            sci["R_source"] = f"custom metric {unit_metric.name}"
        else:
            sci["R"] = self.collected.sci_r
            sci["R_source"] = f"GMT_SCI_R lines ({self.collected.sci_lines})"
        return sci

    def _summarize(self) -> dict[str, Any]:
        from wattwise.analysis import load_series, summarize_run

        series = load_series(self.store, self.run_id)
        summary: dict[str, Any] = summarize_run(self.store, self.run_id, series=series)

        def service_figures(name: str, start: int, end: int) -> dict[str, float | None]:
            figures: dict[str, float | None] = {}
            for metric, key, how in _FIGURES:
                values = [getattr(s, how)(start, end) for s in series if s.name == metric and s.detail == name]
                present = [v for v in values if v is not None]
                figures[key] = (max(present) if how == "peak" else sum(present)) if present else None
            return figures

        def combined(parts: list[dict[str, float | None]]) -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            for _, key, how in _FIGURES:
                present = [value for p in parts if (value := p.get(key)) is not None]
                out[key] = (max(present) if how == "peak" else sum(present)) if present else None
            return out

        for phase in summary["phases"]:
            phase["services"] = {name: service_figures(name, phase["start_us"], phase["end_us"]) for name in self.units}
        for phase in summary["phases"]:
            parts = phase.get("rebuilt_from")
            if parts:  # [RUNTIME] made of its visible flow steps: so are the services' figures
                children = [p for p in summary["phases"] if p.get("parent") == phase["name"] and p["name"] in parts]
                phase["services"] = {
                    name: combined([child["services"][name] for child in children]) for name in self.units
                }
        settings = self.store.get_run(self.run_id).settings or {}
        summary["backend"] = self.scenario.backend
        summary["sci"] = settings.get("sci")
        try:
            self.store.update_run(self.run_id, results=summary)
        except Exception as exc:  # a cache: the run page computes it again
            summary.setdefault("warnings", []).append(f"the summary could not be stored: {type(exc).__name__}")
        return summary
