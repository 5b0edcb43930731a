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
from typing import TYPE_CHECKING, Any

import numpy as np

from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.jobmodel import JobModel
from wattwise.units import J_PER_KWH

if TYPE_CHECKING:
    from wattwise.schedule.profile import SlotProfile

__all__ = ["MODES", "POLICIES", "ChainPlan", "Segment", "plan_chain", "tail_model"]

POLICIES = ("oracle", "suspend-resume")
#: chain: one Slurm job per segment, each resume repeating the startup; suspend: one job that is suspended and
#: resumed in place (scontrol suspend/resume), so a resume costs nothing (the wait-awhile model)
MODES = ("chain", "suspend")


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
    mode: str = "chain"

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


def tail_model(model: JobModel, work_done_s: float) -> JobModel:
    """The same startup and the work that is left after `work_done_s` seconds of it (for a re-plan)."""
    from wattwise.jobmodel.model import Phase

    left: list[Phase] = []
    t = 0.0
    for phase in model.work:
        start, end = t, t + phase.duration_s
        t = end
        if end <= work_done_s + 1e-9:
            continue
        cut = max(0.0, work_done_s - start)
        left.append(Phase(phase.name, phase.duration_s - cut, phase.power_w, phase.is_checkpoint))
    return JobModel(model.startup, tuple(left))


def plan_chain(
    model: JobModel,
    trace: CarbonTrace,
    *,
    now_s: float,
    wait_s: float | None = None,
    deadline_s: float | None = None,
    policy: str = "suspend-resume",
    slot_s: float = 300.0,
    max_resumes: int | None = None,
    checkpoint_only: bool = False,
    mode: str = "chain",
) -> ChainPlan:
    """The least-carbon segments for `model` between `now_s` and its deadline: `now_s + wait_s + duration`, or
    `deadline_s` when given (a re-plan keeps the first plan's deadline)."""
    from wattwise.errors import Infeasible
    from wattwise.schedule.profile import slot_profile
    from wattwise.schedule.solvers import best_start, suspend_resume

    _check(model, policy, mode, wait_s, deadline_s, slot_s, max_resumes, checkpoint_only)
    profile = slot_profile(model, slot_s)
    if deadline_s is None:
        assert wait_s is not None
        n_slots = math.ceil((wait_s + model.duration_s) / slot_s - 1e-9)
    else:
        n_slots = math.floor((deadline_s - now_s) / slot_s + 1e-9)
    end_s = now_s + n_slots * slot_s
    if now_s < trace.start_s or end_s > trace.end_s:
        raise WattwiseError(
            f"the carbon data ({trace.source}) covers {_iso(trace.start_s)} to {_iso(trace.end_s)}, but the job "
            f"may run from {_iso(now_s)} to {_iso(end_s)} (wait plus its {model.duration_s:g} s): use a "
            "forecast that covers the window, or wait less")
    c = trace.slots(now_s, slot_s, n_slots)
    run_j = profile.run_j
    try:
        if policy == "oracle":
            start, _ = best_start(c, run_j)
            blocks = [(start, 0, profile.n_work if mode == "chain" else run_j.size)]
        elif mode == "suspend":  # frozen in place: no repeated startup, the job may stop anywhere
            blocks = list(suspend_resume(c, np.zeros(0), run_j, max_resumes=max_resumes).blocks)
        else:
            stop_ok = profile.stop_ok if checkpoint_only else None
            blocks = list(suspend_resume(c, profile.startup_j, profile.work_j, stop_ok=stop_ok,
                                         max_resumes=max_resumes).blocks)
    except Infeasible as exc:
        raise WattwiseError(f"no plan fits: {exc} (window of {n_slots} slots of {slot_s:g} s)") from None
    segments = _segments(blocks, profile, c, now_s, slot_s, model.duration_s, mode)
    agnostic_carbon = float(np.dot(run_j, c[:run_j.size])) / J_PER_KWH
    return ChainPlan(
        policy=policy,
        slot_s=float(slot_s),
        planned_at_s=float(now_s),
        deadline_s=float(end_s),
        segments=segments,
        energy_j=sum(s.energy_j for s in segments),
        carbon_g=sum(s.carbon_g for s in segments),
        agnostic_carbon_g=agnostic_carbon,
        agnostic_energy_j=float(run_j.sum()),
        settings={"max_resumes": max_resumes, "checkpoint_only": checkpoint_only, "carbon_source": trace.source,
                  "intensity_g_per_kwh": [float(x) for x in c]},
        mode=mode,
    )


def _check(model: JobModel, policy: str, mode: str, wait_s: float | None, deadline_s: float | None, slot_s: float,
           max_resumes: int | None, checkpoint_only: bool) -> None:
    if policy not in POLICIES:
        raise WattwiseError(f"--policy {policy!r} is not known: use one of {', '.join(POLICIES)}")
    if mode not in MODES:
        raise WattwiseError(f"--mode {mode!r} is not known: use one of {', '.join(MODES)}")
    if (wait_s is None) == (deadline_s is None):
        raise ValueError("give exactly one of wait_s and deadline_s")
    if wait_s is not None and wait_s < 0:
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


def _segments(blocks: list[tuple[int, int, int]], profile: SlotProfile, c: np.ndarray, now_s: float, slot_s: float,
              duration_s: float, mode: str) -> list[Segment]:
    ns = profile.n_startup
    run_j = profile.run_j
    segments = []
    for index, (start, k0, k1) in enumerate(blocks):
        if mode == "suspend":  # job time includes the startup; nothing is repeated
            energy = float(run_j[k0:k1].sum())
            carbon = float(np.dot(run_j[k0:k1], c[start:start + (k1 - k0)])) / J_PER_KWH
            segments.append(Segment(index, now_s + start * slot_s, 0.0, min(k0 * slot_s, duration_s),
                                    min(k1 * slot_s, duration_s), energy, 0.0, carbon))
            continue
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
    return segments


def _iso(t_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
