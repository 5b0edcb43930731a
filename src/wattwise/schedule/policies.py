"""Scheduling policies: plain objects with one method, registered by name for the CLI and grid files.

A policy gets a :class:`Request` (the job's slot profile, the forecast over its window, the slots without free
capacity, the forecast from its arrival on) and returns the blocks it wants, in window-local slots::

    class Policy(Protocol):
        def plan(self, request: Request) -> list[Block]: ...

The simulation engine knows no policy by name. Two optional capabilities let it batch many jobs at once:
:class:`StartPicker` (one uninterrupted run per job, chosen from the cost of every start) and
:class:`SuspendResume` (the exact program, run for all windows of equal shape together). A new policy only
needs ``plan`` and :func:`register`::

    @register("my-policy")
    class Mine:
        exact = False
        def __init__(self, settings: Settings) -> None: ...
        def plan(self, request: Request) -> list[Block]: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from wattwise.schedule import solvers
from wattwise.schedule.profile import SlotProfile
from wattwise.schedule.solvers import Block


@dataclass(frozen=True)
class Settings:
    """What policies may be tuned with (from the command line or a grid file)."""

    max_resumes: int | None = None
    checkpoint_only: bool = False
    threshold_percentile: float = 30.0
    #: slots of forecast the threshold looks ahead from the arrival
    threshold_horizon: int = 1440


@dataclass(frozen=True)
class Request:
    """One job to plan: ``c`` is the forecast (g/kWh) over its window (slot 0 = the arrival slot, ``len(c)``
    = the deadline); ``ahead`` the forecast from its arrival on (at least the window); ``blocked`` marks the
    slots without free capacity (``None``: all free)."""

    profile: SlotProfile
    c: np.ndarray
    ahead: np.ndarray
    blocked: np.ndarray | None


@runtime_checkable
class Policy(Protocol):
    def plan(self, request: Request) -> list[Block]: ...


@runtime_checkable
class StartPicker(Protocol):
    """One uninterrupted run: ``pick(cost)`` chooses a start per row of ``cost`` (the cost of starting at
    offset ``j`` after the arrival; ``inf`` where not possible)."""

    def pick(self, cost: np.ndarray) -> np.ndarray: ...


POLICIES: dict[str, Callable[[Settings], Policy]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a policy available under ``name``."""
    def add(cls: type) -> type:
        POLICIES[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls
    return add


def create(name: str, settings: Settings | None = None) -> Policy:
    """The policy registered as ``name``; ``KeyError`` if there is none."""
    return POLICIES[name](settings or Settings())


def is_exact(name: str) -> bool:
    """True for policies whose plans are the optimum of their model (with a perfect forecast)."""
    return bool(getattr(POLICIES[name], "exact", False))


@register("agnostic")
class Agnostic:
    """Start at arrival (the first free slots), run to the end: the carbon-agnostic baseline."""

    exact: ClassVar[bool] = False
    baseline: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        pass

    def plan(self, request: Request) -> list[Block]:
        p = request.profile
        limit = request.c.size - p.n_slots
        return [(solvers.first_fit(p.n_slots, request.blocked, limit), 0, p.n_work)]

    def pick(self, cost: np.ndarray) -> np.ndarray:
        return np.zeros(cost.shape[0], dtype=np.int64)


@register("threshold")
class Threshold:
    """Work while the forecast is at or below a percentile of the next 24 h (fixed at arrival)."""

    exact: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.percentile = settings.threshold_percentile
        self.horizon = max(1, settings.threshold_horizon)

    def plan(self, request: Request) -> list[Block]:
        p = request.profile
        threshold = float(np.percentile(request.ahead[:self.horizon], self.percentile))
        return solvers.threshold_plan(request.c, p.n_startup, p.n_work, threshold, request.blocked)


@register("carbon-time")
class CarbonTime:
    """One run, starting where the carbon saved per slot of delay is largest (now if no delay saves)."""

    exact: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        pass

    def plan(self, request: Request) -> list[Block]:
        p = request.profile
        return [(solvers.carbon_time_start(request.c, p.run_j, request.blocked), 0, p.n_work)]

    def pick(self, cost: np.ndarray) -> np.ndarray:
        n, width = cost.shape
        best = np.zeros(n, dtype=np.int64)
        if width > 1:
            cols = np.arange(width)
            rate = (cost[:, :1] - cost[:, 1:]) / cols[None, 1:]
            rate[~np.isfinite(rate)] = -np.inf
            top = np.argmax(rate, axis=1)
            gain = rate[np.arange(n), top] > 0
            best[gain] = top[gain] + 1
        return best


@register("oracle")
class Oracle:
    """The uninterrupted run of least carbon (exact among uninterrupted runs)."""

    exact: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        pass

    def plan(self, request: Request) -> list[Block]:
        p = request.profile
        return [(solvers.best_start(request.c, p.run_j, request.blocked)[0], 0, p.n_work)]

    def pick(self, cost: np.ndarray) -> np.ndarray:
        picked: np.ndarray = np.argmin(cost, axis=1)
        return picked


class SuspendResume:
    """The exact suspend & resume program; ``startup_cost`` False plans as if restarts were free."""

    exact: ClassVar[bool] = True
    startup_cost: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        self.checkpoint_only = settings.checkpoint_only
        self.max_resumes = settings.max_resumes if self.startup_cost else None

    def stop_ok(self, profile: SlotProfile) -> np.ndarray | None:
        return profile.stop_ok if self.checkpoint_only else None

    def cheapest_slots_optimal(self, p: SlotProfile) -> bool:
        """No startup, equal slots (but maybe the last), no limits: the cheapest slots are optimal."""
        if p.n_startup or self.max_resumes is not None or (self.checkpoint_only and not p.stop_ok.all()):
            return False
        w = p.work_j
        return w.size == 1 or bool(np.all(w[:-1] == w[0]))

    def plan(self, request: Request) -> list[Block]:
        p, c = request.profile, request.c
        if self.cheapest_slots_optimal(p):
            masked = c if request.blocked is None else np.where(request.blocked, np.inf, c)
            return solvers.cheapest_slots_last(masked, p.n_work, float(p.work_j[0]), float(p.work_j[-1]))
        plan = solvers.suspend_resume(c, p.startup_j, p.work_j, stop_ok=self.stop_ok(p),
                                      max_resumes=self.max_resumes, blocked=request.blocked,
                                      startup_cost=self.startup_cost)
        return plan.blocks


register("suspend-resume")(SuspendResume)


@register("wait-awhile")
class WaitAwhile(SuspendResume):
    """Plans as if suspend & resume were free (the cheapest slots); billed with the real startups."""

    exact: ClassVar[bool] = False
    startup_cost: ClassVar[bool] = False
