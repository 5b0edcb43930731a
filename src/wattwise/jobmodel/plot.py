"""Plots of measured runs and job models (matplotlib, Agg backend). PNG or SVG, chosen by file extension.

One run: power samples as dots, a Gaussian-smoothed trend line, event markers and, when given, the model
overlaid from the job's start. Several runs: their trend lines stacked one above the other on a shared
time axis (time since each run's job start), or overlaid in one panel.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wattwise.errors import ConfigError
from wattwise.jobmodel.model import JobModel
from wattwise.jobmodel.pinpoint import PowerRun

FORMATS = (".png", ".svg")
#: the trend's Gaussian σ is at most this fraction of the shortest phase (a longer σ draws ramps that the
#: samples do not have, e.g. a 2 s σ on a 4 s run)
MAX_SIGMA_FRACTION = 0.25


def smooth(power_w: np.ndarray, interval_s: float, sigma_s: float) -> np.ndarray:
    """Gaussian-smoothed power; ``sigma_s`` in seconds (0: no smoothing)."""
    from scipy.ndimage import gaussian_filter1d

    if sigma_s <= 0 or interval_s <= 0 or len(power_w) < 2:
        return power_w.astype(float)
    return gaussian_filter1d(power_w.astype(float), sigma_s / interval_s, mode="nearest")


def phase_lengths_s(run: PowerRun) -> list[float]:
    """Lengths of the run's phases: the spans between consecutive distinct event times (launch and exit
    included), or the whole window without events; spans shorter than two samples are no phases to smooth."""
    times = sorted({e.time_s for e in run.events} | {t for t in (run.launch_s, run.exit_s) if t is not None})
    interval = _interval(run)
    spans = [b - a for a, b in itertools.pairwise(times) if b - a >= 2 * interval]
    if not spans:
        spans = [float(run.end_s - run.start_s)]
    return spans


def effective_sigma_s(run: PowerRun, sigma_s: float) -> float:
    """`sigma_s`, capped at MAX_SIGMA_FRACTION of the run's shortest phase."""
    if sigma_s <= 0:
        return 0.0
    return min(sigma_s, MAX_SIGMA_FRACTION * min(phase_lengths_s(run)))


def _trend_label(asked_s: float, used_s: float) -> str:
    if used_s <= 0:
        return "trend (no smoothing)"
    capped = f", capped from {asked_s:g} s at ¼ of the shortest phase" if used_s < asked_s else ""
    return f"trend (Gaussian σ = {used_s:.2g} s{capped})"


def _check_output(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: unknown plot format {suffix or '(none)'!r}; use .png or .svg")
    return suffix[1:]


def _origin(run: PowerRun, job_start_s: float | None) -> float:
    if job_start_s is not None:
        return job_start_s
    if run.launch_s is not None:
        return run.launch_s
    return run.events[0].time_s if run.events else run.start_s


def _interval(run: PowerRun) -> float:
    return float(np.median(np.diff(run.edges_s))) if len(run.edges_s) > 1 else 0.0


def _model_steps(model: JobModel, offset_s: float = 0.0) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for start, end, power in model.segments():
        xs += [start + offset_s, end + offset_s]
        ys += [power, power]
    return xs, ys


def plot_run(run: PowerRun, output: str | Path, *, model: JobModel | None = None, sigma_s: float = 2.0,
             job_start_s: float | None = None, baseline_w: float = 0.0, title: str | None = None) -> Path:
    """Plot one run. Times are seconds since the job's start (launch or first event)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    fmt = _check_output(output)
    origin = _origin(run, job_start_s)
    times = run.times_s - origin
    power = run.power_w - baseline_w
    fig, ax = plt.subplots(figsize=(12.5, 4.5))
    try:
        ax.plot(times, power, ".", ms=2.5, alpha=0.35, color="tab:blue", label="samples",
                rasterized=len(power) > 5000)  # keeps SVGs of long runs small
        used = effective_sigma_s(run, sigma_s)
        ax.plot(times, smooth(power, _interval(run), used), "-", lw=1.6, color="tab:blue",
                label=_trend_label(sigma_s, used))
        if model is not None:
            xs, ys = _model_steps(model)
            ax.plot(xs, ys, "-", lw=1.6, color="tab:red", label="model")
            for start, _end, _power in model.segments():
                ax.axvline(start, color="tab:red", lw=0.3, alpha=0.3)
        top = float(np.nanmax(power)) if len(power) else 1.0
        for event in run.events:
            x = event.time_s - origin
            ax.axvline(x, color="0.35", lw=0.7, ls="--")
            ax.text(x, top, f" {event.label}", rotation=90, va="top", ha="right", fontsize=6, color="0.25")
        if run.launch_s is not None:
            ax.axvline(run.launch_s - origin, color="tab:green", lw=1, label="program launch / end")
        if run.exit_s is not None:
            ax.axvline(run.exit_s - origin, color="tab:green", lw=1)
        ax.set_xlabel("time since job start (s)")
        ax.set_ylabel("power (W)" + (f", minus {baseline_w:.3g} W baseline" if baseline_w else ""))
        ax.set_title(title or run.name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
        fig.tight_layout()
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return output


def plot_runs(runs: Sequence[PowerRun], output: str | Path, *, model: JobModel | None = None,
              sigma_s: float = 2.0, job_starts_s: Sequence[float | None] | None = None,
              layout: str = "stacked", title: str | None = None) -> Path:
    """Plot the trend lines of several runs, aligned at each run's job start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if layout not in ("stacked", "overlay"):
        raise ConfigError(f"layout must be 'stacked' or 'overlay', got {layout!r}")
    output = Path(output)
    fmt = _check_output(output)
    starts = list(job_starts_s) if job_starts_s is not None else [None] * len(runs)
    rows = len(runs) if layout == "stacked" else 1
    fig, axes = plt.subplots(rows, 1, figsize=(11, 1.2 + 1.6 * rows if rows > 1 else 4.5), sharex=True,
                             sharey=True, squeeze=False)
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (run, start) in enumerate(zip(runs, starts, strict=True)):
            ax = axes[i if layout == "stacked" else 0][0]
            origin = _origin(run, start)
            color = colors[i % len(colors)]
            used = effective_sigma_s(run, sigma_s)
            ax.plot(run.times_s - origin, smooth(run.power_w, _interval(run), used), "-", lw=1.3,
                    color=color, label=run.name)
            if model is not None and (layout == "stacked" or i == 0):
                xs, ys = _model_steps(model)
                ax.plot(xs, ys, "-", lw=1, color="black", alpha=0.7, label="model")
            if layout == "stacked":
                ax.set_ylabel("W")
                ax.legend(loc="upper right", fontsize=7)
            ax.grid(True, alpha=0.3)
        if layout == "overlay":
            axes[0][0].set_ylabel("power (W)")
            axes[0][0].legend(loc="upper right", fontsize=7)
        axes[-1][0].set_xlabel("time since job start (s)")
        fig.suptitle(title or f"{len(runs)} runs, Gaussian trend σ ≤ {sigma_s:g} s "
                     f"(at most ¼ of each run's shortest phase)")
        fig.tight_layout()
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return output
