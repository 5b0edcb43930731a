"""The agent that follows a plan on Slurm: `wattwise slurm agent PLAN_ID`.

- **chain mode:** the next waiting segment is judged on the forecast as it is now (again whenever the forecast
  file changes); when it moved by more than the re-plan threshold over what is left of the window (the largest
  relative change of a slot's intensity), the
  rest of the chain is planned again from that point, with the work still to do and the first plan's deadline,
  and the waiting segments are replaced: the new ones are submitted held after the running one, the plan is
  stored, the old waiting ones are cancelled, then the new ones released (a failed submission keeps the old
  chain; an agent killed midway finishes the swap when started again). Only the slots the new forecast covers
  are compared; a forecast that cannot be read is noted and the plan kept. When the job has written `done`, the
  segments still waiting are cancelled.
- **suspend mode** (operator rights): the single job is suspended between the planned windows and resumed at
  the next (`scontrol suspend/resume`), so a resume repeats nothing. After the last planned window it is never
  suspended again, so a late start still finishes.

Every decision is taken from the plan in the database, Slurm's state and the clock, and every action is stored as
an event with the plan: an agent that is killed and started again carries on where the plan is.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from wattwise.carbon.live_forecast import read_carbon
from wattwise.carbon.trace import CarbonTrace
from wattwise.closedloop.chain import DONE_FILE, cancel_jobs, release_jobs, submit_chain
from wattwise.closedloop.plan import ChainPlan, Segment, plan_chain, tail_model
from wattwise.closedloop.plans import (
    FINAL_STATUSES,
    SlurmPlan,
    add_event,
    get_plan,
    merge_records,
    replace_tail,
    set_status,
)
from wattwise.closedloop.report import JobRecord, known_records
from wattwise.errors import IntensityError, TraceError, WattwiseError
from wattwise.jobmodel import JobModel
from wattwise.store import Store

__all__ = ["forecast_change", "run_agent", "step"]


#: live forecasts are fetched at most this often (a file is re-read whenever it changes)
LIVE_RECHECK_S = 300.0
_live_cache: dict[str, tuple[float, CarbonTrace]] = {}


def current_forecast(source: str, now_s: float | None = None) -> CarbonTrace:
    """The forecast as it is now: a file as it is on disk, a live API at most every LIVE_RECHECK_S."""
    if Path(source).exists():
        return read_carbon(source)
    now = time.time() if now_s is None else now_s
    cached = _live_cache.get(source)
    if cached is None or now - cached[0] >= LIVE_RECHECK_S:
        cached = (now, read_carbon(source, now_s=now))
        _live_cache[source] = cached
    return cached[1]


def forecast_change(plan: ChainPlan, from_s: float, trace: CarbonTrace | None = None) -> tuple[float, list[float]]:
    """(largest relative change of a slot's intensity from `from_s` to the deadline, the slot means now).

    Slots are the plan's (from its planning time, `slot_s` long); only those in [max(from_s, forecast start),
    deadline] that the forecast covers are compared, and the others keep their planned means in the list."""
    if trace is None:
        trace = current_forecast(plan.settings["carbon_source"])
    old = [float(x) for x in plan.settings["intensity_g_per_kwh"]]
    first = max(0, math.floor((max(from_s, trace.start_s) - plan.planned_at_s) / plan.slot_s + 1e-9))
    first = max(first, math.ceil((trace.start_s - plan.planned_at_s) / plan.slot_s - 1e-9))
    last = min(len(old), math.floor((trace.end_s - plan.planned_at_s) / plan.slot_s + 1e-9))
    new = list(old)
    if last <= first:
        return 0.0, new
    start = plan.planned_at_s + first * plan.slot_s
    new[first:last] = [float(x) for x in trace.slots(start, plan.slot_s, last - first)]
    changes = [abs(n - o) / max(abs(o), 1e-9) for o, n in zip(old[first:last], new[first:last], strict=True)]
    return max(changes), new


def step(store: Store, plan_id: int, *, now_s: float, env: dict[str, str] | None = None,
         replan_threshold: float = 0.1) -> str:
    """One look at the plan; returns its status after any action taken."""
    row = get_plan(store, plan_id)
    if row.status in FINAL_STATUSES:
        return row.status
    plan = ChainPlan.from_dict(row.plan)
    records, jobs = known_records(row.jobs, env)
    if jobs != row.jobs:
        merge_records(store, plan_id, jobs)
    if plan.mode == "suspend":
        status = _step_suspend(store, row, plan, records, now_s, env)
    else:
        status = _step_chain(store, row, plan, records, now_s, env, replan_threshold)
    if status != row.status:
        status = set_status(store, plan_id, status)  # a plan cancelled meanwhile stays cancelled
    return status


def _step_chain(store: Store, row: SlurmPlan, plan: ChainPlan, records: dict[int, JobRecord], now_s: float,
                env: dict[str, str] | None, threshold: float) -> str:
    folder = Path(row.checkpoint_dir)
    swap = _pending_swap(row)
    if swap is not None:  # an agent killed between re-plan and release: finish the swap first
        _finish_swap(store, row.id, *swap, now_s, env)
        return row.status
    waiting = [j for j in row.jobs if j["job_id"] in records and records[j["job_id"]].state == "PENDING"]
    if (folder / DONE_FILE).exists():
        if waiting:
            cancel_jobs([j["job_id"] for j in waiting], env)
            add_event(store, row.id, "cancel", now_s, jobs=[j["job_id"] for j in waiting], reason="work done")
        return "done"
    if row.jobs and all(j["job_id"] in records and records[j["job_id"]].finished for j in row.jobs):
        add_event(store, row.id, "end", now_s, reason="every segment ended, but the job wrote no `done`")
        return "failed"
    if not waiting:
        return row.status
    nxt = waiting[0]
    segment = plan.segments[nxt["index"]]
    try:
        version = _source_version(plan.settings["carbon_source"])
        trace = current_forecast(plan.settings["carbon_source"])
        change, _ = forecast_change(plan, segment.begin_s, trace)
    except (IntensityError, TraceError, WattwiseError) as exc:  # the forecast is unreadable now: keep the plan
        _note_unavailable(store, row, segment, now_s, exc)
        return row.status
    seen = {(e.get("index"), e.get("begin_s"), e.get("source_version")) for e in row.events or []
            if e["kind"] in ("checked", "replan")}
    if (segment.index, segment.begin_s, version) in seen:
        return row.status  # this segment was judged on this version of the forecast already
    if change <= threshold:
        add_event(store, row.id, "checked", now_s, index=segment.index, begin_s=segment.begin_s,
                  source_version=version, max_change=change)
        return row.status
    _replan(store, row, plan, segment, now_s, change, env, version, trace)
    return row.status


def _note_unavailable(store: Store, row: SlurmPlan, segment: Segment, now_s: float, exc: Exception) -> None:
    """A "checked" event saying the forecast could not be read (once per segment and reason, not every poll)."""
    note = f"the forecast is unavailable ({exc}); the plan is kept"
    last = next((e for e in reversed(row.events or []) if e["kind"] == "checked"), None)
    if last is not None and last.get("index") == segment.index and last.get("note") == note:
        return
    add_event(store, row.id, "checked", now_s, index=segment.index, begin_s=segment.begin_s,
              forecast_unavailable=True, note=note)


def _source_version(source: str) -> str:
    """What identifies the forecast's current content: a file's size and modification time, a live forecast's
    values."""
    try:
        info = Path(source).stat()
    except OSError:
        import hashlib

        values = current_forecast(source).intensity_g_per_kwh
        return hashlib.sha256(values.tobytes()).hexdigest()[:16]
    return f"{info.st_size}:{info.st_mtime_ns}"


def _replan(store: Store, row: SlurmPlan, plan: ChainPlan, segment: Segment, now_s: float, change: float,
            env: dict[str, str] | None, version: str, trace: CarbonTrace) -> None:
    """Plan the rest again and swap the waiting segments: submit the new ones held, store them, cancel the old
    ones, release the new ones. A failure before the old ones are cancelled keeps the old chain."""
    model = JobModel.from_dict(row.model)
    index = segment.index
    previous = plan.segments[index - 1] if index > 0 else None
    start = max(now_s, previous.end_s if previous else now_s)
    start = plan.planned_at_s + plan.slot_s * -(-(start - plan.planned_at_s) // plan.slot_s)  # next slot edge
    remaining = tail_model(model, segment.work_from_s)
    resumes = plan.settings.get("max_resumes")
    try:
        new = plan_chain(remaining, trace, now_s=start, deadline_s=plan.deadline_s, policy=plan.policy,
                         slot_s=plan.slot_s, checkpoint_only=bool(plan.settings.get("checkpoint_only")),
                         max_resumes=None if resumes is None else max(0, resumes - index), mode="chain")
    except WattwiseError as exc:
        add_event(store, row.id, "checked", now_s, index=index, begin_s=segment.begin_s, max_change=change,
                  source_version=version, note=f"the forecast changed but no new plan fits ({exc}); kept")
        return
    startup_j = sum(p.duration_s * p.power_w for p in model.startup)
    renumbered = [replace(s, index=index + i, work_from_s=s.work_from_s + segment.work_from_s,
                          work_to_s=s.work_to_s + segment.work_from_s,
                          restart_energy_j=startup_j if index + i > 0 else 0.0) for i, s in enumerate(new.segments)]
    segments = [*plan.segments[:index], *renumbered]
    merged = replace(plan, segments=segments, energy_j=sum(s.energy_j for s in segments),
                     carbon_g=sum(s.carbon_g for s in segments),
                     settings={**plan.settings, "intensity_g_per_kwh": forecast_change(plan, start, trace)[1]})
    kept = [j for j in row.jobs if j["index"] < index]
    dropped = [j["job_id"] for j in row.jobs if j["index"] >= index]
    try:
        jobs = submit_chain(merged, row.sbatch_args, plan_id=row.id, checkpoint_dir=Path(row.checkpoint_dir),
                            lead_s=float(plan.settings.get("lead_s", 30.0)), name=f"{row.name}-p{row.id}", env=env,
                            first_index=index, previous_job=kept[-1]["job_id"] if kept else None,
                            earlier_jobs=[j["job_id"] for j in kept], hold=True,
                            measure_db=store.url if plan.settings.get("measure") else None)
    except WattwiseError as exc:  # submit_chain cancelled what it had submitted: the old chain stands
        add_event(store, row.id, "checked", now_s, index=index, begin_s=segment.begin_s, max_change=change,
                  source_version=version, note=f"the re-plan could not be submitted ({exc}); the old chain is kept")
        return
    replace_tail(store, row.id, merged.to_dict(), index, jobs)
    add_event(store, row.id, "replan", now_s, index=index, begin_s=segment.begin_s, max_change=change,
              source_version=version, cancelled=dropped, submitted=[j["job_id"] for j in jobs],
              old_carbon_g=plan.carbon_g, new_carbon_g=merged.carbon_g)
    _finish_swap(store, row.id, dropped, [j["job_id"] for j in jobs], now_s, env)


def _finish_swap(store: Store, plan_id: int, dropped: list[int], submitted: list[int], now_s: float,
                 env: dict[str, str] | None) -> None:
    """Cancel the replaced segments and release the new (held) ones; both are idempotent, so an agent killed
    midway does it again when started (`_pending_swap`)."""
    cancel_jobs(dropped, env)
    try:
        release_jobs(submitted, env)
    except WattwiseError as exc:
        note = f"{exc}; will try again"
        last = (get_plan(store, plan_id).events or [{}])[-1]
        if last.get("note") != note:  # once, not at every poll
            add_event(store, plan_id, "checked", now_s, note=note, release_failed=submitted)
        return
    add_event(store, plan_id, "released", now_s, jobs=submitted)


def _pending_swap(row: SlurmPlan) -> tuple[list[int], list[int]] | None:
    """The last re-plan's (cancelled, submitted) when its new segments were not released yet."""
    for event in reversed(row.events or []):
        if event["kind"] == "released":
            return None
        if event["kind"] == "replan":
            return list(event.get("cancelled", [])), list(event.get("submitted", []))
    return None


def _step_suspend(store: Store, row: SlurmPlan, plan: ChainPlan, records: dict[int, JobRecord], now_s: float,
                  env: dict[str, str] | None) -> str:
    job_id = row.jobs[0]["job_id"]
    record = records.get(job_id)
    if record is None or record.state == "PENDING":
        return row.status
    if record.finished:
        done = (Path(row.checkpoint_dir) / DONE_FILE).exists()
        add_event(store, row.id, "end", now_s, state=record.state)
        return "done" if done else "failed"
    inside = any(s.begin_s <= now_s < s.begin_s + s.work_s for s in plan.segments)
    later = any(s.begin_s > now_s for s in plan.segments)
    want_running = inside or not later
    if record.state == "RUNNING" and not want_running:
        _scontrol("suspend", job_id, env)
        add_event(store, row.id, "suspend", now_s, job_id=job_id)
    elif record.state == "SUSPENDED" and want_running:
        _scontrol("resume", job_id, env)
        add_event(store, row.id, "resume", now_s, job_id=job_id)
    return row.status


def _scontrol(action: str, job_id: int, env: dict[str, str] | None) -> None:
    done = subprocess.run(["scontrol", action, str(job_id)], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    if done.returncode != 0:
        raise WattwiseError(f"scontrol {action} {job_id} failed: {done.stderr.strip() or done.stdout.strip()} "
                            "(suspend mode needs operator rights on the cluster)")


def run_agent(store: Store, plan_id: int, *, interval_s: float = 1.0, replan_threshold: float = 0.1,
              env: dict[str, str] | None = None, clock: Callable[[], float] = time.time,
              on_step: Callable[[str], Any] | None = None) -> str:
    """Follow the plan until it is done, failed or cancelled; returns that status."""
    while True:
        status = step(store, plan_id, now_s=clock(), env=env, replan_threshold=replan_threshold)
        if on_step is not None:
            on_step(status)
        if status in FINAL_STATUSES:
            return status
        time.sleep(interval_s)
