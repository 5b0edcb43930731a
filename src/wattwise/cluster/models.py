"""Tables of the cluster: measurement machines, the job queue, the client status history, queued e-mails
and control-workload runs. Created by migration 0003 (branch "cluster")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from wattwise.store.models import Base, utcnow


class JobState:
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ALL = (WAITING, RUNNING, FINISHED, FAILED, CANCELLED)
    DONE = (FINISHED, FAILED, CANCELLED)


class SourceType:
    COMMAND = "command"  # argv measured with `wattwise measure`
    FOLDER = "folder"  # a usage_scenario in a local folder
    GIT = "git"  # a usage_scenario in a git repository (URL + branch + filename)
    ALL = (COMMAND, FOLDER, GIT)


class MachineStatus:
    STARTING = "starting"
    IDLE = "idle"
    CONTROL_WORKLOAD = "control-workload"
    COOLDOWN = "cooldown"
    WARMUP = "warmup"
    JOB = "job"
    CLEANUP = "cleanup"
    PAUSED = "paused"
    TEMPERATURE_GATE_FAILED = "temperature-gate-failed"
    SHUTDOWN = "shutdown"
    STOPPED = "stopped"
    ERROR = "error"


class ClusterMachine(Base):
    __tablename__ = "cluster_machines"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default="unknown")
    accepts_jobs: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    base_temperature_c: Mapped[float | None] = mapped_column(Float)
    current_temperature_c: Mapped[float | None] = mapped_column(Float)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_control_workload_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sleep_time_s: Mapped[float | None] = mapped_column(Float)
    client_id: Mapped[str | None] = mapped_column(String(120))
    hostname: Mapped[str | None] = mapped_column(String(200))
    mac_address: Mapped[str | None] = mapped_column(String(17))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClusterJob(Base):
    __tablename__ = "cluster_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    source_type: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(Text)  # folder path, git URL, or the command line for display
    branch: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str | None] = mapped_column(String(500))
    command: Mapped[Any] = mapped_column(JSON, nullable=True)  # argv of a command job
    variables: Mapped[Any] = mapped_column(JSON, default=dict)
    machine_id: Mapped[str | None] = mapped_column(ForeignKey("cluster_machines.id"))  # None: any machine
    email: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(12), default=JobState.WAITING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    running_machine_id: Mapped[str | None] = mapped_column(String(100))  # where it runs / ran
    lease_owner: Mapped[str | None] = mapped_column(String(120))  # the client process holding it
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_cluster_jobs_queue", "state", "machine_id", "id"),
        Index("ix_cluster_jobs_lease", "state", "lease_expires_at"),
        # the claim scans WAITING jobs in id order: without this it would step over every finished job
        Index(
            "ix_cluster_jobs_waiting",
            "id",
            postgresql_where=text("state = 'WAITING'"),
            sqlite_where=text("state = 'WAITING'"),
        ),
        # at most one RUNNING job per machine, enforced by the database itself
        Index(
            "ux_cluster_jobs_running_machine",
            "running_machine_id",
            unique=True,
            postgresql_where=text("state = 'RUNNING'"),
            sqlite_where=text("state = 'RUNNING'"),
        ),
    )


class ClusterStatusEntry(Base):
    """The client status history: one row per change of a machine's status (and per notable event)."""

    __tablename__ = "cluster_client_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(String(100), index=True)
    client_id: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(30))
    message: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ClusterEmail(Base):
    """An e-mail waiting to be sent (sent_at is None) or sent; sent by a client or `wattwise jobs email`."""

    __tablename__ = "cluster_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(30))  # job-finished | job-failed | control-workload | ...
    job_id: Mapped[int | None] = mapped_column(Integer)
    machine_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_cluster_emails_pending", "sent_at", "id"),)


class ClusterControlRun(Base):
    """One run of the control workload on a machine, with the figures its validation compares."""

    __tablename__ = "cluster_control_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(String(100), index=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    phase: Mapped[str] = mapped_column(String(200), default="[RUNTIME]")
    values: Mapped[Any] = mapped_column(JSON, default=dict)  # metric -> value in the phase
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
