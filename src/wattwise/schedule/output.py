"""Outputs of a simulation: ``jobs.csv``, ``summary.json`` and plots."""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wattwise.schedule.jobs import Job
from wattwise.schedule.profile import slot_profile
from wattwise.schedule.simulate import CSV_COLUMNS, JobResult, Simulation, summary

LENGTH_CLASSES_H = (0, 1, 2, 4, 8, 16, 24, 48, math.inf)


def write_jobs_csv(results: Sequence[JobResult], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            row = []
            for name in CSV_COLUMNS:
                value = getattr(r, name)
                if isinstance(value, bool):
                    value = str(value).lower()
                elif isinstance(value, float):
                    value = f"{value:.6f}".rstrip("0").rstrip(".") if math.isfinite(value) else ""
                row.append(value)
            writer.writerow(row)


def write_summary(sim: Simulation, path: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    data = summary(sim)
    data["by_length"] = savings_by_length(sim.results)
    if extra:
        data.update(extra)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def savings_by_length(results: Sequence[JobResult]) -> list[dict[str, Any]]:
    """Carbon saved against agnostic per class of job length (hours)."""
    rows = []
    for lo, hi in itertools.pairwise(LENGTH_CLASSES_H):
        chosen = [r for r in results if lo * 3600 <= r.length_s < hi * 3600]
        if not chosen:
            continue
        base = math.fsum(r.agnostic_carbon_g for r in chosen)
        got = math.fsum(r.carbon_g for r in chosen)
        rows.append({"length_h": f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">{lo:g}", "jobs": len(chosen),
                     "carbon_g": got, "agnostic_carbon_g": base,
                     "saving_pct": 100.0 * (base - got) / base if base > 0 else 0.0})
    return rows


def power_series(results: Sequence[JobResult], jobs: Sequence[Job], n_slots: int, resolution_s: float) -> np.ndarray:
    """Mean power (W) of all jobs in each slot of the grid, every startup included."""
    energy = np.zeros(n_slots + 1)
    diff = np.zeros(n_slots + 2)
    by_id = {job.id: job for job in jobs}
    for r in results:
        job = by_id[r.id]
        model = job.model
        if not model.startup and len(model.work) == 1:
            start, _, n = r.blocks[0]
            power = model.work[0].power_w
            diff[start] += power * resolution_s
            diff[start + n - 1] -= power * resolution_s
            energy[start + n - 1] += power * (job.length_s - (n - 1) * resolution_s)
            continue
        p = slot_profile(model, resolution_s)
        for start, k0, k1 in r.blocks:
            energy[start:start + p.n_startup] += p.startup_j
            w0 = start + p.n_startup
            energy[w0:w0 + k1 - k0] += p.work_j[k0:k1]
    energy += np.cumsum(diff)[: n_slots + 1]
    return energy[:n_slots] / resolution_s


def _times(sim: Simulation, first: int, last: int) -> np.ndarray:
    R = sim.options.resolution_s
    seconds = sim.origin_s + R * np.arange(first, last)
    return (seconds * 1e6).astype("datetime64[us]")


def _coarsen(values: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return values
    n = values.size // factor * factor
    coarse: np.ndarray = values[:n].reshape(-1, factor).mean(axis=1)
    return coarse


def plot_schedule(sim: Simulation, jobs: Sequence[Job], path: Path, max_gantt: int = 40) -> None:
    """The carbon curve, the jobs' runs (for few jobs) and the cluster power of the policy and agnostic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = sim.options.resolution_s
    results = sim.results
    n = sim.intensity.size
    first = min(min(b[0] for b in r.blocks) for r in results)
    first = min(first, min(math.floor(r.arrival_s / R) for r in results))
    last = max(math.ceil(r.deadline_s / R) for r in results)
    last = min(n, max(last, max(math.ceil(r.exit_s / R) for r in results)) + 1)
    first = max(0, first - 1)
    factor = max(1, (last - first) // 4000)
    span = slice(first, last)
    times = _times(sim, first, last)[::factor][: len(_coarsen(sim.intensity[span], factor))]
    gantt = len(results) <= max_gantt
    panels = 3 if gantt else 2
    fig, axes = plt.subplots(panels, 1, figsize=(12, 3.2 * panels), sharex=True,
                             gridspec_kw={"height_ratios": [2, 3, 2] if gantt else [2, 2]})
    ax = axes[0]
    ax.step(times, _coarsen(sim.intensity[span], factor), where="post", color="black", lw=1, label="actual")
    if sim.forecast is not sim.intensity:
        ax.step(times, _coarsen(sim.forecast[span], factor), where="post", color="tab:gray", lw=0.8, ls="--",
                label="forecast seen by the policy")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("g CO₂e/kWh")
    ax.set_title(f"{sim.options.policy}: {len(results)} jobs, saving "
                 f"{summary(sim)['savings']['carbon_pct']:.1f} % against agnostic")
    if gantt:
        ax = axes[1]
        by_id = {job.id: job for job in jobs}
        for row, r in enumerate(results):
            ns = slot_profile(by_id[r.id].model, R).n_startup
            arrival = np.datetime64(int((sim.origin_s + r.arrival_s) * 1e6), "us")
            deadline = np.datetime64(int((sim.origin_s + r.deadline_s) * 1e6), "us")
            ax.plot([arrival, deadline], [row, row], color="tab:gray", lw=0.8)
            for start, k0, k1 in r.blocks:
                t0 = np.datetime64(int((sim.origin_s + start * R) * 1e6), "us")
                if ns:
                    ax.barh(row, np.timedelta64(int(ns * R * 1e6), "us"), left=t0, height=0.6,
                            color="tab:orange")
                t1 = t0 + np.timedelta64(int(ns * R * 1e6), "us")
                ax.barh(row, np.timedelta64(int((k1 - k0) * R * 1e6), "us"), left=t1, height=0.6,
                        color="tab:green")
        ax.set_yticks(range(len(results)), [str(r.id) for r in results], fontsize=7)
        ax.invert_yaxis()
        ax.set_ylabel("job (green: work, orange: startup)")
    ax = axes[-1]
    power = power_series(results, jobs, n, R)[span]
    ax.step(times, _coarsen(power, factor) / 1e3, where="post", color="tab:green", lw=1, label=sim.options.policy)
    if sim.baseline is not None and sim.baseline is not results:
        base = power_series(sim.baseline, jobs, n, R)[span]
        ax.step(times, _coarsen(base, factor) / 1e3, where="post", color="tab:red", lw=0.8, alpha=0.7,
                label="agnostic")
    ax.set_ylabel("power of all jobs (kW)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_savings_by_length(sim: Simulation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = savings_by_length(sim.results)
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['length_h']} h\n({r['jobs']} jobs)" for r in rows]
    ax.bar(labels, [r["saving_pct"] for r in rows], color="tab:green")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("carbon saved against agnostic (%)")
    ax.set_xlabel("job length")
    ax.set_title(f"{sim.options.policy}: savings by job length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
