"""A job model cut into time slots: the energy of each startup slot and of each work slot.

Time is discretised into slots of ``resolution_s``. A (re)start occupies ``n_startup = ceil(startup_s / R)``
whole slots, then work slot ``k`` (``k = 0 … n_work-1``, ``n_work = ceil(length_s / R)``) covers job work
time ``[k·R, min((k+1)·R, length_s))``. The energy of a slot is the exact integral of the model's power over
the job time the slot covers, so energy totals are exact at any resolution; timing is exact when the
resolution divides the phase lengths.

Under ``--checkpoint-only`` a job may stop after ``k`` work slots only if a checkpoint phase ends in
``((k-1)·R, k·R]`` (or ``k = 0``); with no restriction it may stop after any slot and keeps its progress.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wattwise.jobmodel import JobModel

_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class SlotProfile:
    resolution_s: float
    startup_j: np.ndarray
    work_j: np.ndarray
    #: stop_ok[k] (k = 0 … n_work-1): the job may stop after k work slots under --checkpoint-only
    stop_ok: np.ndarray
    startup_s: float
    work_s: float

    @property
    def n_startup(self) -> int:
        return int(self.startup_j.size)

    @property
    def n_work(self) -> int:
        return int(self.work_j.size)

    @property
    def n_slots(self) -> int:
        """Slots of one uninterrupted run."""
        return self.n_startup + self.n_work

    @property
    def run_j(self) -> np.ndarray:
        """Energy per slot of one uninterrupted run (startup then work)."""
        return np.concatenate((self.startup_j, self.work_j))

    @property
    def startup_energy_j(self) -> float:
        return float(self.startup_j.sum())

    @property
    def last_work_slot_s(self) -> float:
        """Seconds of the last work slot that the job actually uses."""
        return self.work_s - (self.n_work - 1) * self.resolution_s if self.n_work else 0.0

    @property
    def is_constant(self) -> bool:
        """No startup and the same energy in every full work slot (the GAIA case)."""
        w = self.work_j
        return self.n_startup == 0 and (w.size <= 2 or bool(np.all(w[:-1] == w[0])))


def n_slots_for(duration_s: float, resolution_s: float) -> int:
    return max(0, math.ceil(duration_s / resolution_s - _EPS))


@lru_cache(maxsize=4096)
def slot_profile(model: JobModel, resolution_s: float) -> SlotProfile:
    """Cut ``model`` into slots of ``resolution_s`` (cached per model and resolution)."""
    startup_s = model.startup_s
    work_s = model.work_s
    segments = model.segments()
    ends = np.array([0.0] + [end for _, end, _ in segments])
    energy = np.concatenate(([0.0], np.cumsum([(end - start) * power for start, end, power in segments])))

    def cumulative(t: np.ndarray) -> np.ndarray:
        return np.interp(t, ends, energy) if segments else np.zeros_like(t)

    n_s = n_slots_for(startup_s, resolution_s)
    n_w = n_slots_for(work_s, resolution_s)
    s_edges = np.minimum(np.arange(n_s + 1) * resolution_s, startup_s)
    w_edges = startup_s + np.minimum(np.arange(n_w + 1) * resolution_s, work_s)
    startup_j = np.diff(cumulative(s_edges))
    work_j = np.diff(cumulative(w_edges))
    np.maximum(startup_j, 0.0, out=startup_j)
    np.maximum(work_j, 0.0, out=work_j)
    stop_ok = np.zeros(n_w, dtype=bool)
    if n_w:
        stop_ok[0] = True
        for end in model.checkpoint_ends_s:
            tau = end - startup_s
            if tau <= _EPS or tau >= work_s - _EPS:
                continue
            k = n_slots_for(tau, resolution_s)
            if 0 < k < n_w:
                stop_ok[k] = True
    for array in (startup_j, work_j, stop_ok):
        array.flags.writeable = False
    return SlotProfile(float(resolution_s), startup_j, work_j, stop_ok, startup_s, work_s)


def profile_from_arrays(startup_j: np.ndarray | list[float], work_j: np.ndarray | list[float],
                        resolution_s: float = 60.0, stop_ok: np.ndarray | list[bool] | None = None) -> SlotProfile:
    """A profile from per-slot energies (tests, synthetic studies); every slot is full."""
    s = np.asarray(startup_j, dtype=float)
    w = np.asarray(work_j, dtype=float)
    ok = np.ones(w.size, dtype=bool) if stop_ok is None else np.asarray(stop_ok, dtype=bool).copy()
    if ok.size != w.size:
        raise ValueError("stop_ok must have one entry per work slot")
    if ok.size:
        ok[0] = True
    return SlotProfile(float(resolution_s), s, w, ok, s.size * resolution_s, w.size * resolution_s)
