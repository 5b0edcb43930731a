"""What a plan's segments really did: Slurm's record of each job, and planned vs actual energy and carbon.

Each segment's actual start and end come from `sacct` where the cluster keeps accounting, else from `scontrol`
(while the controller still holds the job). Its energy is `sacct`'s ConsumedEnergy where the cluster has an
energy plugin; otherwise it is the job model's energy for the time the segment really ran (marked `≈`, source
`model`). Its carbon is that power profile integrated over the intensity observed in the carbon data given for
the report (by default the data it was planned on). A resume's restart cost (the startup again) is reported
per segment, as planned and as paid.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from wattwise.carbon.trace import CarbonTrace
from wattwise.closedloop.chain import DONE_FILE, cancel_jobs
from wattwise.closedloop.plan import ChainPlan, Segment
from wattwise.jobmodel import JobModel
from wattwise.units import J_PER_KWH

__all__ = ["JobRecord", "job_records", "known_records", "measured_segments", "plan_report", "reconcile",
           "running_intervals"]

_FINISHED = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "DEADLINE",
             "BOOT_FAIL"}


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    state: str
    start_s: float | None
    end_s: float | None
    exit_code: str | None
    energy_j: float | None  # sacct ConsumedEnergyRaw where an energy plugin counts it

    @property
    def finished(self) -> bool:
        return self.state.split()[0] in _FINISHED


def _time(text: str | None) -> float | None:
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()  # the controller's local time
    except ValueError:
        return None


def _sacct(job_ids: list[int], env: dict[str, str] | None) -> dict[int, JobRecord] | None:
    try:
        done = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(map(str, job_ids)),
             "--format=JobIDRaw,State,Start,End,ExitCode,ConsumedEnergyRaw"],
            capture_output=True, text=True, timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None  # no accounting storage on this cluster
    records = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        energy = float(parts[5]) if parts[5].strip().isdigit() and int(parts[5]) > 0 else None
        records[int(parts[0])] = JobRecord(int(parts[0]), parts[1], _time(parts[2]), _time(parts[3]), parts[4],
                                           energy)
    return records


def _scontrol(job_id: int, env: dict[str, str] | None) -> JobRecord | None:
    try:
        done = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                              timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
    state = fields.get("JobState", "UNKNOWN")
    start = _time(fields.get("StartTime")) if state != "PENDING" else None
    end = _time(fields.get("EndTime")) if state.split()[0] in _FINISHED else None
    return JobRecord(job_id, state, start, end, fields.get("ExitCode"), None)


def job_records(job_ids: list[int], env: dict[str, str] | None = None) -> dict[int, JobRecord]:
    """Slurm's record of each job: sacct where accounting exists, else scontrol; jobs neither knows are absent."""
    records = _sacct(job_ids, env) or {}
    for job_id in job_ids:
        if job_id not in records:
            record = _scontrol(job_id, env)
            if record is not None:
                records[job_id] = record
    return records


def known_records(jobs: list[dict[str, Any]], env: dict[str, str] | None = None
                  ) -> tuple[dict[int, JobRecord], list[dict[str, Any]]]:
    """Slurm's records of a plan's jobs, falling back to what was seen before (a controller without accounting
    forgets finished jobs after MinJobAge); returns the records and the jobs with finished records kept."""
    ids = [j["job_id"] for j in jobs if j["job_id"] is not None]
    records = job_records(ids, env)
    kept = []
    for job in jobs:
        record = records.get(job["job_id"])
        if record is None and job.get("record"):
            records[job["job_id"]] = JobRecord(**job["record"])
        elif record is not None and record.finished:
            job = {**job, "record": asdict(record)}
        kept.append(job)
    return records, kept


def reconcile(checkpoint_dir: Path, jobs: list[dict[str, Any]], records: dict[int, JobRecord],
              env: dict[str, str] | None = None) -> list[int]:
    """When the job has written `done`, cancel the segments that have not started yet. Returns those ids."""
    if not (checkpoint_dir / DONE_FILE).exists():
        return []
    waiting = [j["job_id"] for j in jobs if j["job_id"] in records and records[j["job_id"]].state == "PENDING"]
    cancel_jobs(waiting, env)
    return waiting


def _profile(model: JobModel, segment: Segment, start_s: float, end_s: float) -> list[tuple[float, float, float]]:
    """(t0, t1, power_w) in wall time of a segment that ran from start_s to end_s: its startup, then its work."""
    out = []
    run_s = max(0.0, end_s - start_s)
    for a, b, power in model.segments():
        if b <= model.startup_s:  # startup phase: job time = time since the segment's start
            lo, hi = a, min(b, run_s)
            if hi > lo:
                out.append((start_s + lo, start_s + hi, power))
        else:  # work phase: job time = startup + work done before + time since the startup ended
            offset = segment.work_from_s
            lo = max(a, model.startup_s + segment.work_from_s)
            hi = min(b, model.startup_s + segment.work_from_s + max(0.0, run_s - model.startup_s))
            if hi > lo:
                out.append((start_s + lo - offset, start_s + hi - offset, power))
    return out


def _carbon(profile: list[tuple[float, float, float]], trace: CarbonTrace) -> float | None:
    if not profile:
        return 0.0
    if profile[0][0] < trace.start_s or profile[-1][1] > trace.end_s:
        return None
    return sum(p * float(trace.integral(b) - trace.integral(a)) for a, b, p in profile) / J_PER_KWH


def running_intervals(record: JobRecord, events: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    """Suspend mode: when the job really ran, from its start, the agent's suspend/resume events and its end."""
    if record.start_s is None:
        return []
    intervals: list[tuple[float, float | None]] = []
    since: float | None = record.start_s
    for event in sorted(events, key=lambda e: e["t_s"]):
        if event["kind"] == "suspend" and since is not None:
            intervals.append((since, event["t_s"]))
            since = None
        elif event["kind"] == "resume" and since is None:
            since = event["t_s"]
    if since is not None:
        intervals.append((since, record.end_s))
    return intervals


def _suspend_rows(plan: ChainPlan, model: JobModel, job_id: int | None, record: JobRecord | None,
                  events: list[dict[str, Any]], trace: CarbonTrace) -> list[dict[str, Any]]:
    """Suspend mode: the planned windows paired in order with the intervals the job really ran."""
    intervals = running_intervals(record, events) if record is not None else []
    rows = []
    job_time = 0.0
    for i in range(max(len(plan.segments), len(intervals))):
        segment = plan.segments[i] if i < len(plan.segments) else None
        row: dict[str, Any] = {
            "index": i, "job_id": job_id, "resume": i > 0, "state": record.state if record else "UNKNOWN",
            "planned_start_s": segment.begin_s if segment else None,
            "planned_end_s": segment.begin_s + segment.work_s if segment else None,
            "planned_energy_j": segment.energy_j if segment else None,
            "planned_carbon_g": segment.carbon_g if segment else None, "planned_restart_energy_j": 0.0,
            "start_s": None, "end_s": None, "start_delay_s": None, "energy_j": None, "energy_source": None,
            "estimated": None, "carbon_g": None, "restart_energy_j": 0.0 if i > 0 else None,
        }
        if i < len(intervals):
            start, end = intervals[i]
            row.update(start_s=start, end_s=end)
            if segment is not None:
                row["start_delay_s"] = start - segment.begin_s
            if end is not None:
                profile = [(start + a - job_time, start + b - job_time, p) for a, b, p in model.segments()
                           if b > job_time and a < job_time + (end - start)]
                profile = [(max(a, start), min(b, end), p) for a, b, p in profile]
                row.update(energy_j=sum((b - a) * p for a, b, p in profile), energy_source="model", estimated=True,
                           carbon_g=_carbon(profile, trace))
                job_time += end - start
        rows.append(row)
    return rows


def measured_segments(store: Any, plan_id: int) -> dict[int, dict[str, Any]]:
    """Segment index → {run_id, energy_j, estimated} of the segments measured with `wattwise measure`."""
    from wattwise.jobmodel.segments import plan_segment_runs

    out: dict[int, dict[str, Any]] = {}
    for index, run_id in plan_segment_runs(store, plan_id):
        results = store.get_run(run_id).results or {}
        runtime = next((p for p in results.get("phases", []) if p.get("name") == "[RUNTIME]"), None)
        if runtime is not None and runtime.get("energy_j") is not None:
            out[index] = {"run_id": run_id, "energy_j": float(runtime["energy_j"]),
                          "estimated": bool(runtime.get("estimated"))}
    return out


def plan_report(plan: ChainPlan, model: JobModel, jobs: list[dict[str, Any]], records: dict[int, JobRecord],
                trace: CarbonTrace, events: list[dict[str, Any]] | None = None,
                measured: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per segment planned vs actual start, end, energy and carbon; totals planned vs actual vs agnostic.

    `measured`: the segments measured by `wattwise measure` (their machine energy, ≈ where estimated): the
    energy reported for them, next to what the model predicts for the time they ran."""
    rows = []
    if plan.mode == "suspend":
        job_id = jobs[0]["job_id"] if jobs else None
        rows = _suspend_rows(plan, model, job_id, records.get(job_id) if job_id else None, events or [], trace)
    for segment in plan.segments if plan.mode != "suspend" else []:
        job_id = next((j["job_id"] for j in jobs if j["index"] == segment.index), None)
        record = records.get(job_id) if job_id is not None else None
        row: dict[str, Any] = {
            "index": segment.index, "job_id": job_id, "resume": segment.resume,
            "planned_start_s": segment.begin_s, "planned_end_s": segment.end_s,
            "planned_energy_j": segment.energy_j, "planned_carbon_g": segment.carbon_g,
            "planned_restart_energy_j": segment.restart_energy_j,
            "state": record.state if record else "UNKNOWN",
            "start_s": record.start_s if record else None, "end_s": record.end_s if record else None,
            "energy_j": None, "energy_source": None, "estimated": None, "carbon_g": None,
            "restart_energy_j": None, "start_delay_s": None,
        }
        if record is not None and record.start_s is not None:
            row["start_delay_s"] = record.start_s - segment.begin_s
            if record.end_s is not None:
                profile = _profile(model, segment, record.start_s, record.end_s)
                modelled = sum((b - a) * p for a, b, p in profile)
                startup_paid = sum((b - a) * p for a, b, p in profile
                                   if a < record.start_s + model.startup_s)
                row["model_energy_j"] = modelled
                run = (measured or {}).get(segment.index)
                if record.energy_j is not None:
                    row.update(energy_j=record.energy_j, energy_source="sacct", estimated=False)
                    scale = record.energy_j / modelled if modelled > 0 else 1.0
                elif run is not None:
                    row.update(energy_j=run["energy_j"], energy_source=f"run {run['run_id']}",
                               estimated=run["estimated"], measured_run_id=run["run_id"])
                    scale = run["energy_j"] / modelled if modelled > 0 else 1.0
                else:
                    row.update(energy_j=modelled, energy_source="model", estimated=True)
                    scale = 1.0
                carbon = _carbon(profile, trace)
                row["carbon_g"] = None if carbon is None else carbon * scale
                row["restart_energy_j"] = startup_paid * scale if segment.resume else 0.0
        rows.append(row)
    done = [r for r in rows if r["energy_j"] is not None]
    actual_energy = sum(r["energy_j"] for r in done) if done else None
    carbons = [r["carbon_g"] for r in done]
    actual_carbon = sum(carbons) if done and all(c is not None for c in carbons) else None
    return {
        "policy": plan.policy,
        "mode": plan.mode,
        "replans": sum(1 for e in events or [] if e["kind"] == "replan"),
        "segments": rows,
        "restarts_planned": plan.restarts,
        "restarts_paid": sum(1 for r in rows if r["resume"] and r["restart_energy_j"]),
        "planned": {"energy_j": plan.energy_j, "carbon_g": plan.carbon_g},
        "actual": {"energy_j": actual_energy, "carbon_g": actual_carbon,
                   "estimated": any(r["estimated"] for r in done), "segments_finished": len(done)},
        "agnostic": {"energy_j": plan.agnostic_energy_j, "carbon_g": plan.agnostic_carbon_g},
        "carbon_source": trace.source,
    }
