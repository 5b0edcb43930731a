"""Synthetic runs with known figures, written through the real Store API (tests, benchmarks, demos).

`scenario_run` has containers and flow sub-phases shaped like a `wattwise run usage_scenario.yml` run;
`simple_run` is a command run with a given energy; `large_run` has many samples for benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store

T0 = 1_720_000_000_000_000  # 2024-07-03T09:46:40Z, inside the shipped DE trace


def add_series(
    store: Store, run_id: int, spec: MetricSpec, t_s: np.ndarray, values: np.ndarray, *, t0_us: int = T0
) -> int:
    metric_id = store.add_metric(run_id, spec, spec.name.split("_")[0])
    t_us = (t0_us + np.asarray(t_s) * 1e6).astype(np.int64)
    rows = list(zip(t_us.tolist(), np.asarray(values, dtype=float).tolist(), strict=True))
    for i in range(0, len(rows), 200_000):
        store.add_samples([(metric_id, t, v) for t, v in rows[i : i + 200_000]])
    return metric_id


def scenario_run(
    store: Store,
    *,
    power_w: float = 100.0,
    idle_w: float = 50.0,
    sci: dict[str, Any] | None = None,
    name: str = "scenario",
    hidden_setup: bool = True,
) -> int:
    """0–10 s baseline at idle_w; 10–30 s runtime at power_w (reached 0.5 s after 10 s), split into
    flow steps 'setup' (10–12 s, hidden when hidden_setup), 'load' (12–22 s) and 'query' (22–30 s).
    Two containers: 'db' uses 1 CPU-s/s, 'web' 3 CPU-s/s during the runtime.
    A 'sci_r' counter counts 40 requests in 'query'."""
    run_id = store.create_run(
        name,
        "scenario",
        settings={"interval_s": 0.5, "intensity_g_per_kwh": 400.0, "pue": 1.0, "sci": sci or {}},
    )
    t = np.arange(0, 30.01, 0.5)
    power = np.where(t <= 10, idle_w, power_w)
    add_series(store, run_id, MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine"), t, power)
    busy = np.where(t < 10, 0.0, (t - 10) * 4.5)
    add_series(store, run_id, MetricSpec("cpu_busy_time_s", "s", Kind.COUNTER, "machine"), t, busy)
    for container, rate in (("db", 1.0), ("web", 3.0)):
        add_series(
            store,
            run_id,
            MetricSpec("cgroup_cpu_time_s", "s", Kind.COUNTER, container),
            t,
            np.where(t < 10, 0.0, (t - 10) * rate),
        )
        add_series(
            store,
            run_id,
            MetricSpec("cgroup_memory_b", "B", Kind.GAUGE, container),
            t,
            np.full_like(t, 1e8 * rate),
        )
    add_series(store, run_id, MetricSpec("network_rx_b", "B", Kind.COUNTER, "machine"), t, t * 1e8)
    add_series(store, run_id, MetricSpec("network_tx_b", "B", Kind.COUNTER, "machine"), t, t * 0.0)
    add_series(
        store, run_id, MetricSpec("sci_r", "1", Kind.COUNTER, "scenario"), t, np.clip((t - 22) * 5, 0, 40)
    )
    def s(x: float) -> int:
        return T0 + int(x * 1e6)

    store.add_phase(run_id, "[BASELINE]", s(0), s(10))
    store.add_phase(run_id, "[RUNTIME]", s(10), s(30))
    store.add_phase(run_id, "setup", s(10), s(12), parent="[RUNTIME]", hidden=hidden_setup)
    store.add_phase(run_id, "load", s(12), s(22), parent="[RUNTIME]")
    store.add_phase(run_id, "query", s(22), s(30), parent="[RUNTIME]")
    store.add_notes(run_id, [(s(12), "flow", "load starts"), (s(22), "flow", "query starts")])
    store.add_log(run_id, "web", "stdout", "listening on :80", s(10.5))
    store.finish_run(run_id, "finished")
    return run_id


def simple_run(store: Store, energy_j: float, duration_s: float = 10.0, name: str = "job") -> int:
    """A command run whose [RUNTIME] uses `energy_j` at constant power over `duration_s`."""
    run_id = store.create_run(name, settings={"intensity_g_per_kwh": 300.0, "pue": 1.2})
    t = np.linspace(0, duration_s, 21)
    add_series(
        store,
        run_id,
        MetricSpec("rapl_energy_j", "J", Kind.COUNTER, "package-0"),
        t,
        t / duration_s * energy_j,
    )
    store.add_phase(run_id, "[RUNTIME]", T0, T0 + int(duration_s * 1e6))
    store.finish_run(run_id, "finished")
    return run_id


def large_run(
    store: Store, samples: int = 1_000_000, metrics: int = 4, interval_s: float = 0.01, name: str = "large"
) -> int:
    """A finished command run with `samples` samples in total, spread over `metrics` metrics."""
    per_metric = samples // metrics
    duration_s = per_metric * interval_s
    run_id = store.create_run(
        name,
        settings={
            "interval_s": interval_s,
            "intensity_g_per_kwh": 300.0,
            "pue": 1.0,
            "unit_label": "command",
        },
    )
    t = np.arange(per_metric) * interval_s
    rng = np.random.default_rng(1)
    power = 60 + 40 * (np.sin(t / 30) > 0) + rng.normal(0, 3, per_metric)
    specs = [
        (MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine"), power),
        (
            MetricSpec("cpu_busy_time_s", "s", Kind.COUNTER, "machine"),
            np.cumsum(rng.uniform(0, 0.04, per_metric)),
        ),
        (
            MetricSpec("cgroup_cpu_time_s", "s", Kind.COUNTER, "command"),
            np.cumsum(rng.uniform(0, 0.02, per_metric)),
        ),
        (MetricSpec("cgroup_memory_b", "B", Kind.GAUGE, "command"), 1e8 + 1e6 * np.sqrt(t)),
    ]
    for spec, values in specs[:metrics]:
        add_series(store, run_id, spec, t, values)
    for i in range(metrics - len(specs)):
        add_series(
            store,
            run_id,
            MetricSpec("temperature_c", "degC", Kind.GAUGE, f"sensor{i}"),
            t,
            50 + rng.normal(0, 1, per_metric),
        )
    third = int(duration_s / 3 * 1e6)
    store.add_phase(run_id, "[BASELINE]", T0, T0 + third)
    store.add_phase(run_id, "[RUNTIME]", T0 + third, T0 + int(duration_s * 1e6))
    store.add_notes(run_id, [(T0 + third + k * third // 5, "bench", f"mark {k}") for k in range(5)])
    store.finish_run(run_id, "finished")
    return run_id
