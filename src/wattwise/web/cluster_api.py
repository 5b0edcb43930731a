"""Cluster routes of the web app (mounted under /api/cluster): jobs, machines, status, and the waiting jobs
per machine that a wake-on-LAN script polls. Reading needs what `require_read` asks; changing needs a
write token (`require_write`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from wattwise.cluster.jobs import MAX_JOB_ID
from wattwise.cluster.models import JobState
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.submission import MACHINE_ID_RE, JobRequest
from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.web.deps import get_store, require_read, require_write

router = APIRouter(dependencies=[Depends(require_read)])


def _queue(store: Annotated[Store, Depends(get_store)]) -> ClusterQueue:
    return ClusterQueue(store)


QueueDep = Annotated[ClusterQueue, Depends(_queue)]
JobPath = Annotated[int, Path(ge=1, le=MAX_JOB_ID, description="job id")]
MachinePath = Annotated[str, Path(pattern=MACHINE_ID_RE.pattern, description="machine id")]


class JobSubmit(BaseModel):
    """A job: exactly one of `command`, `folder`, `git`."""

    name: str | None = Field(None, max_length=200, description="Job name (default: the source).")
    command: list[str] | None = Field(None, description="Argv of a command to measure.")
    folder: str | None = Field(None, description="Folder with the usage_scenario, on the machine.")
    git: str | None = Field(None, description="Git repository URL with the usage_scenario.")
    branch: str | None = Field(None, description="Git branch or tag.")
    filename: str | None = Field(None, description="Scenario file (default usage_scenario.yml).")
    variables: dict[str, str] = Field(default_factory=dict, description="Scenario variables (env for commands).")
    machine: str | None = Field(None, description="Machine id (default: any machine).")
    email: str | None = Field(None, description="Where to send the result.")
    max_attempts: int = Field(3, ge=1, le=100)


def _job_or_404(queue: ClusterQueue, job_id: int) -> Any:
    try:
        return queue.jobs.get_job(job_id)
    except WattwiseError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/jobs", summary="List jobs, newest first")
def list_jobs(
    queue: QueueDep,
    state: Annotated[list[str] | None, Query(description="WAITING, RUNNING, FINISHED, FAILED, CANCELLED")] = None,
    machine: Annotated[
        str | None, Query(pattern=MACHINE_ID_RE.pattern, description="Jobs for or run on this machine")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_JOB_ID)] = 0,
) -> list[dict[str, Any]]:
    try:
        jobs = queue.jobs.list_jobs(state=state, machine_id=machine, limit=limit, offset=offset)
    except WattwiseError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return [j.to_dict() for j in jobs]


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    summary="Queue a job",
    dependencies=[Depends(require_write)],
)
def submit_job(queue: QueueDep, body: JobSubmit) -> dict[str, Any]:
    default_name = " ".join(body.command) if body.command else (body.git or body.folder or "")
    request = JobRequest(
        name=(body.name or default_name)[:200],
        command=body.command,
        folder=body.folder,
        git_url=body.git,
        branch=body.branch,
        filename=body.filename,
        variables=body.variables,
        machine_id=body.machine,
        email=body.email,
        max_attempts=body.max_attempts,
    )
    try:
        return queue.jobs.submit(request).to_dict()
    except WattwiseError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/jobs/{job_id}", summary="One job")
def get_job(queue: QueueDep, job_id: JobPath) -> dict[str, Any]:
    return _job_or_404(queue, job_id).to_dict()


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job", dependencies=[Depends(require_write)])
def cancel_job(queue: QueueDep, job_id: JobPath) -> dict[str, Any]:
    _job_or_404(queue, job_id)
    try:
        result = queue.jobs.cancel(job_id)
    except WattwiseError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return {"job": queue.jobs.get_job(job_id).to_dict(), "result": result}


@router.get("/machines", summary="Measurement machines")
def list_machines(queue: QueueDep) -> list[dict[str, Any]]:
    now = queue.db.db_now()
    waiting = queue.jobs.waiting_counts()
    rows = []
    for machine in queue.machines.all():
        row = machine.to_dict(now)
        row["waiting_jobs"] = waiting.get(machine.id, 0)
        rows.append(row)
    return rows


@router.get("/machines/{machine_id}", summary="One machine")
def get_machine(queue: QueueDep, machine_id: MachinePath) -> dict[str, Any]:
    machine = queue.machines.find(machine_id)
    if machine is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no machine {machine_id!r}")
    return machine.to_dict(queue.db.db_now())


@router.get("/machines/{machine_id}/waiting", summary="Jobs waiting for a machine (its own and any-machine jobs)")
def machine_waiting(queue: QueueDep, machine_id: MachinePath) -> dict[str, Any]:
    machine = queue.machines.find(machine_id)
    if machine is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no machine {machine_id!r}")
    jobs = queue.jobs.waiting_jobs(machine_id)
    return {
        "machine": machine_id,
        "mac_address": machine.mac_address,
        "accepts_jobs": machine.accepts_jobs,
        "waiting": len(jobs),
        "jobs": [j.to_dict() for j in jobs],
    }


@router.get("/waiting", summary="Waiting jobs per machine, for a wake-on-LAN script")
def waiting(queue: QueueDep) -> dict[str, Any]:
    """Every machine with how many jobs wait for it (not counting jobs for any machine, given separately),
    its MAC address and whether it is online: wake the machines with `waiting > 0` that are offline."""
    now = queue.db.db_now()
    counts = queue.jobs.waiting_counts()
    machines = [
        {
            "id": m.id,
            "mac_address": m.mac_address,
            "waiting": counts.get(m.id, 0),
            "accepts_jobs": m.accepts_jobs,
            "online": m.is_online(now),
            "status": m.status,
        }
        for m in queue.machines.all()
    ]
    return {"machines": machines, "any_machine": counts.get(None, 0)}


@router.get("/status", summary="Machines, jobs per state and the latest status history")
def cluster_status(
    queue: QueueDep,
    machine: Annotated[
        str | None, Query(pattern=MACHINE_ID_RE.pattern, description="History of this machine only")
    ] = None,
    history: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> dict[str, Any]:
    now = queue.db.db_now()
    return {
        "machines": [m.to_dict(now) for m in queue.machines.all()],
        "jobs": queue.jobs.state_counts(),
        "waiting": {k or "any": v for k, v in queue.jobs.waiting_counts().items()},
        "history": [e.to_dict() for e in queue.machines.status_history(machine, history)] if history else [],
        "states": list(JobState.ALL),
    }
