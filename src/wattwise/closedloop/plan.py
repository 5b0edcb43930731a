"""Plan one checkpointing job on a carbon forecast: the segments it runs in, with the scheduler's own solvers.

The job model is cut into slots exactly as `wattwise simulate` does (`schedule.profile.slot_profile`), and the
plan is made by the same solvers (`suspend_resume` for `suspend-resume`, `best_start` for `oracle`, one
uninterrupted run): one code path for the test bed and for real jobs. A plan is a list of segments; every
segment after the first is a resume that repeats the model's startup phases — the restart cost is planned and
billed, never assumed free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.jobmodel import JobModel
from wattwise.units import J_PER_KWH

__all__ = ["POLICIES", "ChainPlan", "Segment", "plan_chain"]

POLICIES = ("oracle", "suspend-resume")


@dataclass(frozen=True)
class Segment:
    """One run of the job: a (re)start, then work from `work_from_s` to `work_to_s` of the job's work."""

    index: int
    begin_s: float
    startup_s: float
    work_from_s: float
    work_to_s: float
    energy_j: float
    restart_energy_j: float  # the startup's energy when this segment is a resume (0 for the first)
    carbon_g: float

    @property
    def work_s(self) -> float:
        return self.work_to_s - self.work_from_s

    @property
    def end_s(self) -> float:
        return self.begin_s + self.startup_s + self.work_s

    @property
    def resume(self) -> bool:
        return self.index > 0


@dataclass(frozen=True)
class ChainPlan:
    policy: str
    slot_s: float
    planned_at_s: float
    deadline_s: float
    segments: list[Segment]
    energy_j: float
    carbon_g: float
    #: the same job started at once and run without a break: the carbon-agnostic baseline
    agnostic_carbon_g: float
    agnostic_energy_j: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def restarts(self) -> int:
        return max(0, len(self.segments) - 1)

    @property
    def saving_ratio(self) -> float:
        return 1 - self.carbon_g / self.agnostic_carbon_g if self.agnostic_carbon_g > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [{**asdict(s), "end_s": s.end_s, "work_s": s.work_s} for s in self.segments]
        data["restarts"] = self.restarts
        data["saving_ratio"] = self.saving_ratio
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainPlan:
        keys = {f for f in Segment.__dataclass_fields__}
        segments = [Segment(**{k: v for k, v in s.items() if k in keys}) for s in data["segments"]]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "segments"}
        return cls(segments=segments, **fields)


def plan_chain(
    model: JobModel,
    trace: CarbonTrace,
    *,
    now_s: float,
    wait_s: float,
    policy: str = "suspend-resume",
    slot_s: float = 300.0,
    max_resumes: int | None = None,
    checkpoint_only: bool = False,
) -> ChainPlan:
    """The least-carbon segments for `model` between `now_s` and its deadline `now_s + wait_s + duration`."""
    from wattwise.errors import Infeasible
    from wattwise.schedule.profile import slot_profile
    from wattwise.schedule.solvers import best_start, suspend_resume

    if policy not in POLICIES:
        raise WattwiseError(f"--policy {policy!r} is not known: use one of {', '.join(POLICIES)}")
    if wait_s < 0:
        raise WattwiseError(f"the waiting time must not be negative, got {wait_s:g} s")
    if not slot_s > 0:
        raise WattwiseError(f"the slot length must be positive, got {slot_s:g} s")
    if model.work_s <= 0:
        raise WattwiseError("the job model has no work phases: nothing to plan")
    if checkpoint_only and not model.checkpoint_ends_s:
        raise WattwiseError(
            "--checkpoint-only, but the job model has no checkpoint phase (is_checkpoint: true): the job could "
            "never stop early; drop --checkpoint-only or give a model with checkpoints")
    if max_resumes is not None and max_resumes < 0:
        raise WattwiseError(f"--max-resumes must be 0 or more, got {max_resumes}")
    profile = slot_profile(model, slot_s)
    n_slots = math.ceil((wait_s + model.duration_s) / slot_s - 1e-9)
    deadline_s = now_s + n_slots * slot_s
    if now_s < trace.start_s or deadline_s > trace.end_s:
        raise WattwiseError(
            f"the carbon data ({trace.source}) covers {_iso(trace.start_s)} to {_iso(trace.end_s)}, but the job "
            f"may run from {_iso(now_s)} to {_iso(deadline_s)} (wait plus its {model.duration_s:g} s): use a "
            "forecast that covers the window, or wait less")
    c = trace.slots(now_s, slot_s, n_slots)
    try:
        if policy == "oracle":
            start, _ = best_start(c, profile.run_j)
            blocks = [(start, 0, profile.n_work)]
        else:
            stop_ok = profile.stop_ok if checkpoint_only else None
            blocks = list(suspend_resume(c, profile.startup_j, profile.work_j, stop_ok=stop_ok,
                                         max_resumes=max_resumes).blocks)
    except Infeasible as exc:
        raise WattwiseError(f"no plan fits: {exc} (window of {n_slots} slots of {slot_s:g} s)") from None
    ns = profile.n_startup
    segments = []
    for index, (start, k0, k1) in enumerate(blocks):
        startup_j = float(profile.startup_j.sum())
        work_j = float(profile.work_j[k0:k1].sum())
        carbon = (float(np.dot(profile.startup_j, c[start:start + ns]))
                  + float(np.dot(profile.work_j[k0:k1], c[start + ns:start + ns + (k1 - k0)]))) / J_PER_KWH
        segments.append(Segment(
            index=index,
            begin_s=now_s + start * slot_s,
            startup_s=ns * slot_s,
            work_from_s=min(k0 * slot_s, profile.work_s),
            work_to_s=min(k1 * slot_s, profile.work_s),
            energy_j=startup_j + work_j,
            restart_energy_j=startup_j if index > 0 else 0.0,
            carbon_g=carbon,
        ))
    run_j = profile.run_j
    agnostic_carbon = float(np.dot(run_j, c[:run_j.size])) / J_PER_KWH
    return ChainPlan(
        policy=policy,
        slot_s=float(slot_s),
        planned_at_s=float(now_s),
        deadline_s=float(deadline_s),
        segments=segments,
        energy_j=sum(s.energy_j for s in segments),
        carbon_g=sum(s.carbon_g for s in segments),
        agnostic_carbon_g=agnostic_carbon,
        agnostic_energy_j=float(run_j.sum()),
        settings={"max_resumes": max_resumes, "checkpoint_only": checkpoint_only, "carbon_source": trace.source},
    )


def _iso(t_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
