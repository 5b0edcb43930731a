"""Synthetic runs: pinpoint-layout folders generated from a known job model, with noise.

Used by the tests and by `wattwise model synth` to try fitting without a power meter. Each phase's start
is logged with the label the default phase map expects (``start program``, ``Start training``,
``Epoch 1.0 ended. Steps: 12``, ...); phases with other names are logged with their name as label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattwise.errors import ConfigError
from wattwise.jobmodel.model import JobModel, Phase
from wattwise.jobmodel.pinpoint import write_pinpoint


@dataclass(frozen=True)
class SynthOptions:
    noise_w: float = 2.0  # standard deviation of the Gaussian noise on each sample (W)
    duration_jitter: float = 0.02  # relative standard deviation of each phase's duration
    interval_s: float = 0.5  # time between samples
    before_s: float = 10.0  # meter window before the program (machine idle)
    after_s: float = 10.0  # meter window after the program
    idle_w: float = 15.0  # power in the windows
    imports_s: float = 0.3  # share of the first startup phase before its first event is logged
    steps_per_epoch: int = 12
    t0_s: float = 1_700_000_000.0  # Unix time of the first recording


def default_labels(phases: tuple[Phase, ...], steps_per_epoch: int = 12) -> list[str]:
    """The label that starts each phase, as the default phase map reads them."""
    labels: list[str] = []
    epoch = 0
    for phase in phases:
        name = phase.name
        if name == "start":
            labels.append("start program")
        elif name == "prepare":
            labels.append("after load data")
        elif name == "train":
            labels.append("Start training" if epoch == 0 else f"Epoch {epoch}.0. Saved. Steps: "
                          f"{epoch * steps_per_epoch}")
        elif name == "evaluate":
            epoch += 1
            labels.append(f"Epoch {epoch}.0 ended. Steps: {epoch * steps_per_epoch}")
        elif name == "save":
            labels.append("Evaluate")
        elif name == "finish":
            labels.append("End training")
        elif name == "exit":
            labels.append("Exit")
        else:
            labels.append(name)
    return labels


def synth_run(model: JobModel, folder: str | Path, rng: np.random.Generator, options: SynthOptions,
              t0_s: float | None = None) -> Path:
    """Write one synthetic run of ``model`` into ``folder`` (pinpoint layout)."""
    if not model.phases:
        raise ConfigError("cannot synthesise a run of a model without phases")
    opts = options
    durations = np.array([p.duration_s for p in model.phases], dtype=float)
    if opts.duration_jitter > 0:
        durations = durations * np.clip(1 + rng.normal(0, opts.duration_jitter, len(durations)), 0.5, 1.5)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    job_s = float(durations.sum())
    start = opts.t0_s if t0_s is None else t0_s
    launch = start + opts.before_s
    end = launch + job_s + opts.after_s
    n = max(1, round((end - start) / opts.interval_s))
    times = start + np.arange(n) * ((end - start) / n)
    phase_power = np.array([p.power_w for p in model.phases])
    index = np.searchsorted(launch + starts, times, side="right") - 1
    inside = (times >= launch) & (times < launch + job_s)
    power = np.where(inside, phase_power[np.clip(index, 0, len(phase_power) - 1)], opts.idle_w)
    power = np.maximum(power + rng.normal(0, opts.noise_w, n), 0.0)
    labels = default_labels(model.phases, opts.steps_per_epoch)
    events = []
    for i, (label, t) in enumerate(zip(labels, starts, strict=True)):
        if i == 0 and opts.before_s > 0:
            t = t + opts.imports_s * durations[0]
        events.append((launch + float(t), label))
    return write_pinpoint(folder, power, start, end, events)


def synth_runs(model: JobModel, out_dir: str | Path, runs: int, options: SynthOptions | None = None,
               seed: int = 0) -> list[Path]:
    """Write ``runs`` synthetic runs into ``out_dir/run-1``, ``run-2``, ..."""
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    options = options or SynthOptions()
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    folders = []
    for i in range(runs):
        t0 = options.t0_s + i * (model.duration_s * 2 + options.before_s + options.after_s + 60)
        folders.append(synth_run(model, out / f"run-{i + 1}", rng, options, t0_s=t0))
    return folders
