"""What the cluster tables hold, as plain values: jobs, machines, status entries, lease results and e-mails.

Datetimes are timezone-aware UTC (SQLite hands back naive ones; `aware` fixes them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping


def aware(value: datetime | None) -> datetime | None:
    """Datetimes read from SQLite are naive UTC; make every datetime timezone-aware."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)



@dataclass(frozen=True)
class JobInfo:
    id: int
    name: str
    source_type: str
    source: str
    branch: str | None
    filename: str | None
    command: list[str] | None
    variables: dict[str, str]
    machine_id: str | None
    email: str | None
    state: str
    attempts: int
    max_attempts: int
    run_id: int | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    running_machine_id: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | RowMapping) -> JobInfo:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        for key in ("created_at", "started_at", "ended_at", "lease_expires_at"):
            values[key] = aware(values[key])
        values["variables"] = dict(values["variables"] or {})
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


@dataclass(frozen=True)
class MachineInfo:
    id: str
    description: str
    status: str
    accepts_jobs: bool
    paused_reason: str | None
    base_temperature_c: float | None
    current_temperature_c: float | None
    last_heartbeat_at: datetime | None
    last_control_workload_at: datetime | None
    sleep_time_s: float | None
    client_id: str | None
    hostname: str | None
    mac_address: str | None
    created_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | RowMapping) -> MachineInfo:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        for key in ("last_heartbeat_at", "last_control_workload_at", "created_at"):
            values[key] = aware(values[key])
        values["accepts_jobs"] = bool(values["accepts_jobs"])
        return cls(**values)

    def seconds_since_heartbeat(self, now: datetime) -> float | None:
        if self.last_heartbeat_at is None:
            return None
        return (now - self.last_heartbeat_at).total_seconds()

    def is_online(self, now: datetime) -> bool:
        """Heard from within twice its sleep time plus a minute (a job renews the heartbeat too)."""
        age = self.seconds_since_heartbeat(now)
        return age is not None and age <= 2 * (self.sleep_time_s or 0) + 60

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        if now is not None:
            data["online"] = self.is_online(now)
            data["seconds_since_heartbeat"] = self.seconds_since_heartbeat(now)
        return data


@dataclass(frozen=True)
class StatusInfo:
    id: int
    machine_id: str
    client_id: str | None
    status: str
    message: str
    job_id: int | None
    run_id: int | None
    temperature_c: float | None
    created_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


@dataclass(frozen=True)
class Reclaimed:
    job_id: int
    state: str  # WAITING, FAILED or CANCELLED
    machine_id: str | None  # where the lease was held
    lease_owner: str | None
    attempts: int
    max_attempts: int


@dataclass
class Renewal:
    ok: bool  # False: the lease is gone (reclaimed by someone else, or the job is no longer RUNNING)
    cancel_requested: bool = False


@dataclass
class OutgoingEmail:
    recipient: str
    subject: str
    body: str
    kind: str
    job_id: int | None = None
    machine_id: str | None = None


