"""Runs from the wattwise store as power runs: the machine's power series and the run's notes as events.

The machine power is taken from the best source the run has (the same order as the run summaries):
IPMI power, else RAPL package/DRAM energy counters (differentiated) plus GPU energy or power, else the
estimated machine power plus GPU. The samples of the first series of that source make the time grid;
counters are differentiated between grid points, gauges held from one sample to the next.

The job's launch and end are the run's ``[RUNTIME]`` phase when it has one (what `wattwise measure`
records); otherwise the --before/--after windows apply as for pinpoint folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wattwise.jobmodel.pinpoint import Event, PowerRun, RunError

_GPU = ("gpu_energy_j", "gpu_power_w")


def parse_run_id(spec: str) -> int:
    text = spec.removeprefix("run:")
    if not text.isdigit():
        raise RunError(f"{spec!r}: a run id is run:ID or ID with ID a whole number")
    return int(text)


def _is_rapl_total_zone(detail: str) -> bool:
    detail = detail.lower()
    return "core" not in detail and "pp0" not in detail and "pp1" not in detail


def choose_power_series(series: Sequence[Any]) -> tuple[str, list[Any]]:
    """(source name, series to add up) for the machine's power; series are `analysis.phases.Series`."""
    by_name: dict[str, list[Any]] = {}
    for s in series:
        if len(s.t_us) >= 2:
            by_name.setdefault(s.name, []).append(s)
    gpu = [s for n in _GPU for s in by_name.get(n, [])]
    if "ipmi_power_w" in by_name:
        return "ipmi", by_name["ipmi_power_w"]
    if "rapl_energy_j" in by_name:
        zones = [s for s in by_name["rapl_energy_j"] if _is_rapl_total_zone(s.detail)]
        return "rapl" + ("+gpu" if gpu else ""), zones + gpu
    if "estimated_power_w" in by_name:
        return "estimate" + ("+gpu" if gpu else ""), by_name["estimated_power_w"] + gpu
    if gpu:
        return "gpu", gpu
    return "none", []


def power_on_grid(chosen: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(edges_s, power_w): the grid is the first series' sample times; each series is differentiated
    (counters) or held (gauges) onto it and the results are added."""
    grid_us = np.unique(np.asarray(chosen[0].t_us, dtype=np.float64))
    if len(grid_us) < 2:
        raise RunError("the power series has fewer than two samples")
    total = np.zeros(len(grid_us) - 1)
    dt_s = np.diff(grid_us) / 1e6
    for s in chosen:
        t = np.asarray(s.t_us, dtype=np.float64)
        v = np.asarray(s.values, dtype=np.float64)
        if s.kind == "counter":
            cumulative = np.interp(grid_us, t, v)
            total += np.diff(cumulative) / dt_s
        else:
            index = np.clip(np.searchsorted(t, grid_us[:-1], side="right") - 1, 0, len(v) - 1)
            total += v[index]
    return grid_us / 1e6, total


def read_store_run(spec: str, db: str | None, *, before_s: float | None = None,
                   after_s: float | None = None, store: Any = None) -> PowerRun:
    """Read run ``spec`` (run:ID or ID) from the database ``db`` (or the open ``store``)."""
    run_id = parse_run_id(spec)
    own_store = store is None
    if own_store:
        from wattwise.store import open_store

        store = open_store(db)
    try:
        from wattwise.analysis.phases import load_series

        store.get_run(run_id)
        source, chosen = choose_power_series(load_series(store, run_id))
        if not chosen:
            raise RunError(f"run:{run_id}: has no power or energy series (IPMI, RAPL, GPU or estimate)")
        edges, power = power_on_grid(chosen)
        events = [Event(n.t_us / 1e6, n.text, i + 1) for i, n in enumerate(store.notes(run_id))]
        runtime = [p for p in store.phases(run_id) if p.name == "[RUNTIME]"]
    finally:
        if own_store:
            store.close()
    run = PowerRun(f"run:{run_id}", f"run:{run_id}", edges, power, events,
                   events_source=f"run:{run_id} notes", notes={"power_source": source})
    if runtime:
        run.launch_s = max(runtime[0].start_us / 1e6, run.start_s)
        run.exit_s = min(runtime[-1].end_us / 1e6, run.end_s)
    elif before_s is not None or after_s is not None:
        run.with_windows(before_s, after_s)
    if not events:
        raise RunError(f"run:{run_id}: has no notes, so it cannot be cut into phases; let the program print "
                       f"note lines ('<unix time> <label>') and measure it with --read-notes-stdout")
    return run
