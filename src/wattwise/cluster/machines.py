"""The registry of measurement machines (`cluster_machines`) and their status history
(`cluster_client_status`): registration, heartbeats, pausing and releasing, control-workload times."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, DateTime, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from wattwise.cluster.database import MACHINES, STATUS, ClusterDatabase
from wattwise.cluster.outbox import enqueue
from wattwise.cluster.records import MachineInfo, OutgoingEmail, StatusInfo, aware
from wattwise.cluster.submission import normalize_mac, validate_machine_id
from wattwise.errors import WattwiseError
from wattwise.store.models import utcnow

# built once per dialect (building a statement costs more client CPU than running it)
_RECORD = {
    True: insert(STATUS).values(created_at=func.now()),
    False: insert(STATUS).values(created_at=bindparam("p_now", type_=DateTime(timezone=True))),
}


def record_status(
    db: ClusterDatabase,
    connection: Connection,
    machine_id: str,
    client_id: str | None,
    status: str,
    message: str,
    job_id: int | None = None,
    run_id: int | None = None,
    temperature_c: float | None = None,
) -> None:
    """Add a status-history entry inside the caller's transaction."""
    connection.execute(
        _RECORD[db.is_postgres],
        {
            "machine_id": machine_id,
            "client_id": client_id,
            "status": status,
            "message": message,
            "job_id": job_id,
            "run_id": run_id,
            "temperature_c": temperature_c,
            **{k: v for k, v in db.times().items() if k == "p_now"},
        },
    )


def known_machines_text(connection: Connection) -> str:
    """'known: a, b' (or how to register one), for error messages."""
    known = list(connection.scalars(select(MACHINES.c.id).order_by(MACHINES.c.id)))
    if not known:
        return "none registered yet: start `wattwise client` on it or `wattwise cluster machines --add ID`"
    return "known: " + ", ".join(known)


class MachineRegistry:
    """Machines: register, look up, heartbeat and status, pause and release."""

    def __init__(self, db: ClusterDatabase) -> None:
        self.db = db

    def register(
        self,
        machine_id: str,
        *,
        description: str | None = None,
        base_temperature_c: float | None = None,
        mac_address: str | None = None,
        sleep_time_s: float | None = None,
        client_id: str | None = None,
        hostname: str | None = None,
        status: str | None = None,
    ) -> MachineInfo:
        """Add the machine, or update the given fields of an existing one."""
        validate_machine_id(machine_id)
        if mac_address is not None:
            mac_address = normalize_mac(mac_address)
        fields: dict[str, Any] = {
            "description": description,
            "base_temperature_c": base_temperature_c,
            "mac_address": mac_address,
            "sleep_time_s": sleep_time_s,
            "client_id": client_id,
            "hostname": hostname,
            "status": status,
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        for attempt in range(2):
            try:
                with self.db.transaction() as connection:
                    exists = connection.scalar(select(MACHINES.c.id).where(MACHINES.c.id == machine_id))
                    if exists is None:
                        connection.execute(
                            insert(MACHINES).values(
                                id=machine_id,
                                description=fields.pop("description", ""),
                                status=fields.pop("status", "unknown"),
                                accepts_jobs=True,
                                created_at=utcnow(),
                                **fields,
                            )
                        )
                    elif fields:
                        connection.execute(update(MACHINES).where(MACHINES.c.id == machine_id).values(**fields))
                break
            except IntegrityError:  # another client inserted it at the same moment
                if attempt:
                    raise
        return self.get(machine_id)

    def get(self, machine_id: str) -> MachineInfo:
        with self.db.transaction(write=False) as connection:
            row = connection.execute(select(MACHINES).where(MACHINES.c.id == machine_id)).mappings().first()
            if row is None:
                raise WattwiseError(f"no machine {machine_id!r} in the cluster ({known_machines_text(connection)})")
        return MachineInfo.from_row(row)

    def find(self, machine_id: str) -> MachineInfo | None:
        with self.db.transaction(write=False) as connection:
            row = connection.execute(select(MACHINES).where(MACHINES.c.id == machine_id)).mappings().first()
        return None if row is None else MachineInfo.from_row(row)

    def all(self) -> list[MachineInfo]:
        with self.db.transaction(write=False) as connection:
            rows = connection.execute(select(MACHINES).order_by(MACHINES.c.id)).mappings().all()
        return [MachineInfo.from_row(r) for r in rows]

    def heartbeat(
        self,
        machine_id: str,
        client_id: str,
        status: str,
        message: str = "",
        *,
        temperature_c: float | None = None,
        job_id: int | None = None,
        run_id: int | None = None,
        record: bool = True,
    ) -> None:
        """Update the machine's heartbeat, status and temperature; add a history entry when `record`."""
        values: dict[str, Any] = {"last_heartbeat_at": self.db.now(), "status": status, "client_id": client_id}
        if temperature_c is not None:
            values["current_temperature_c"] = temperature_c
        with self.db.transaction() as connection:
            connection.execute(update(MACHINES).where(MACHINES.c.id == machine_id).values(**values))
            if record:
                record_status(
                    self.db, connection, machine_id, client_id, status, message, job_id, run_id, temperature_c
                )

    def record_status(
        self,
        machine_id: str,
        client_id: str | None,
        status: str,
        message: str,
        *,
        job_id: int | None = None,
        run_id: int | None = None,
        temperature_c: float | None = None,
    ) -> None:
        with self.db.transaction() as connection:
            record_status(self.db, connection, machine_id, client_id, status, message, job_id, run_id, temperature_c)

    def set_accepts_jobs(
        self,
        machine_id: str,
        accepts: bool,
        reason: str | None = None,
        *,
        emails: Sequence[OutgoingEmail] = (),
    ) -> None:
        """Pause (accepts=False, with a reason) or release a machine, and queue e-mails about it."""
        with self.db.transaction() as connection:
            result = connection.execute(
                update(MACHINES)
                .where(MACHINES.c.id == machine_id)
                .values(accepts_jobs=accepts, paused_reason=None if accepts else reason)
            )
            if result.rowcount != 1:
                raise WattwiseError(f"no machine {machine_id!r} in the cluster")
            enqueue(connection, emails)

    def set_control_workload_time(self, machine_id: str) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                update(MACHINES).where(MACHINES.c.id == machine_id).values(last_control_workload_at=self.db.now())
            )

    def status_history(self, machine_id: str | None = None, limit: int = 50) -> list[StatusInfo]:
        query = select(STATUS).order_by(STATUS.c.id.desc()).limit(limit)
        if machine_id:
            query = query.where(STATUS.c.machine_id == machine_id)
        with self.db.transaction(write=False) as connection:
            rows = connection.execute(query).mappings().all()
        return [
            StatusInfo(**{**{k: r[k] for k in StatusInfo.__dataclass_fields__}, "created_at": aware(r["created_at"])})
            for r in rows
        ]
