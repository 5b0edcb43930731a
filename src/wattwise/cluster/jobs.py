"""The job queue (`cluster_jobs`): submit, list, cancel, claim with a lease, renew, finish, release, reclaim.

Guarantees (PostgreSQL for a cluster, SQLite for one machine):

- Claiming is atomic: on PostgreSQL the candidate row is locked with ``FOR UPDATE SKIP LOCKED`` (two
  clients never wait for, nor take, the same row); on SQLite the claim runs inside ``BEGIN IMMEDIATE``.
- A job is claimed only by a client of its target machine (or by any machine when it has none), only while
  that machine accepts jobs, and only while the machine has no RUNNING job. The last rule is also a partial
  unique index (``running_machine_id`` where ``state = 'RUNNING'``), so the database refuses a second one.
- A claim takes a lease (``lease_owner``, ``lease_expires_at``) that the client renews while the job runs.
  A job is given to another client only after its lease expired: then it goes back to WAITING, or to FAILED
  once ``attempts`` reached ``max_attempts``. Every write of a running job is conditioned on the lease owner,
  so a client that lost its lease can change nothing.
- Completion is one UPDATE that sets the final state and the run id together (with the e-mail to send), so
  a job whose run finished is never run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    Interval,
    String,
    Text,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from wattwise.cluster.database import JOBS, MACHINES, ClusterDatabase
from wattwise.cluster.machines import known_machines_text, record_status
from wattwise.cluster.mail import lease_failure_email
from wattwise.cluster.models import JobState
from wattwise.cluster.outbox import enqueue
from wattwise.cluster.records import JobInfo, OutgoingEmail, Reclaimed, Renewal, aware
from wattwise.cluster.submission import JobRequest, validate_request
from wattwise.errors import WattwiseError
from wattwise.store.models import utcnow

MAX_JOB_ID = 2**31 - 1  # job ids are 32-bit integers in the database


class _Statements:
    """The hot-path statements, built once per dialect with bound parameters (building and hashing a
    statement costs more client CPU than running it). Times: the server's now() on PostgreSQL, bound values
    `p_now` and `p_expires` on SQLite."""

    def __init__(self, postgres: bool) -> None:
        stamp = DateTime(timezone=True)
        now: Any = func.now() if postgres else bindparam("p_now", type_=stamp)
        expires: Any = (
            func.now() + bindparam("p_lease", type_=Interval()) if postgres else bindparam("p_expires", type_=stamp)
        )
        machine = bindparam("p_machine", type_=String())
        client = bindparam("p_client", type_=String())
        job = bindparam("p_job", type_=Integer())
        running = JOBS.alias("running")
        busy = select(running.c.id).where(running.c.running_machine_id == machine, running.c.state == JobState.RUNNING)
        accepting = select(MACHINES.c.id).where(MACHINES.c.id == machine, MACHINES.c.accepts_jobs.is_(True))
        candidate = (
            select(JOBS.c.id)
            .where(JOBS.c.state == JobState.WAITING)
            .where(or_(JOBS.c.machine_id == machine, JOBS.c.machine_id.is_(None)))
            .where(accepting.exists(), ~busy.exists())
            .order_by(JOBS.c.id)
            .limit(1)
        )
        if postgres:
            candidate = candidate.with_for_update(skip_locked=True, of=JOBS)
        self.claim = (
            update(JOBS)
            .where(JOBS.c.id == candidate.scalar_subquery(), JOBS.c.state == JobState.WAITING)
            .values(
                state=JobState.RUNNING,
                running_machine_id=machine,
                lease_owner=client,
                lease_expires_at=expires,
                attempts=JOBS.c.attempts + 1,
                started_at=now,
                error=None,
            )
            .returning(*JOBS.c)
        )
        expired = select(
            JOBS.c.id,
            JOBS.c.name,
            JOBS.c.email,
            JOBS.c.attempts,
            JOBS.c.max_attempts,
            JOBS.c.cancel_requested,
            JOBS.c.lease_owner,
            JOBS.c.running_machine_id,
            JOBS.c.lease_expires_at,
            JOBS.c.run_id,
        ).where(JOBS.c.state == JobState.RUNNING, JOBS.c.lease_expires_at < now)
        self.expired = expired.with_for_update(skip_locked=True) if postgres else expired
        ours = and_(JOBS.c.id == job, JOBS.c.lease_owner == client, JOBS.c.state == JobState.RUNNING)
        self.renew = update(JOBS).where(ours).values(lease_expires_at=expires).returning(JOBS.c.cancel_requested)
        self.machine_beat = update(MACHINES).where(MACHINES.c.id == machine).values(last_heartbeat_at=now)
        self.finish = (
            update(JOBS)
            .where(ours)
            .values(
                state=bindparam("p_state", type_=String()),
                run_id=bindparam("p_run_id", type_=Integer()),
                error=bindparam("p_error", type_=Text()),
                ended_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(JOBS.c.running_machine_id)
        )


class JobQueue:
    """Jobs and their leases. Thread-safe (each call uses its own connection)."""

    def __init__(self, db: ClusterDatabase) -> None:
        self.db = db
        self._sql = _Statements(db.is_postgres)

    # --- submitting and listing -------------------------------------------------------------------
    def submit(self, request: JobRequest) -> JobInfo:
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[JobRequest]) -> list[JobInfo]:
        """Validate and queue jobs in one transaction (all or none)."""
        rows = [validate_request(r) for r in requests]
        targets = {r["machine_id"] for r in rows if r["machine_id"]}
        with self.db.transaction() as connection:
            if targets:
                known = set(connection.scalars(select(MACHINES.c.id).where(MACHINES.c.id.in_(targets))))
                missing = sorted(targets - known)
                if missing:
                    raise WattwiseError(f"no machine {missing[0]!r} in the cluster ({known_machines_text(connection)})")
            now = utcnow()
            for row in rows:
                row.update(state=JobState.WAITING, attempts=0, created_at=now, cancel_requested=False)
            result = connection.execute(insert(JOBS).returning(*JOBS.c, sort_by_parameter_order=True), rows)
            infos = [JobInfo.from_row(r) for r in result.mappings().all()]
        return infos

    def get_job(self, job_id: int) -> JobInfo:
        if not 1 <= job_id <= MAX_JOB_ID:  # the database would refuse to compare (or overflow on) such a number
            raise WattwiseError(f"no cluster job with id {job_id}")
        with self.db.transaction(write=False) as connection:
            row = connection.execute(select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        if row is None:
            raise WattwiseError(f"no cluster job with id {job_id}")
        return JobInfo.from_row(row)

    def list_jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        machine_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[JobInfo]:
        query = select(JOBS)
        if state:
            states = [state] if isinstance(state, str) else list(state)
            for s in states:
                if s not in JobState.ALL:
                    raise WattwiseError(f"unknown job state {s!r}: use one of {', '.join(JobState.ALL)}")
            query = query.where(JOBS.c.state.in_(states))
        if machine_id:
            query = query.where(or_(JOBS.c.machine_id == machine_id, JOBS.c.running_machine_id == machine_id))
        query = query.order_by(JOBS.c.id.desc() if newest_first else JOBS.c.id).limit(limit).offset(offset)
        with self.db.transaction(write=False) as connection:
            rows = connection.execute(query).mappings().all()
        return [JobInfo.from_row(r) for r in rows]

    def waiting_jobs(self, machine_id: str, *, limit: int = 1000) -> list[JobInfo]:
        """WAITING jobs this machine may run (its own and those for any machine), oldest first."""
        query = (
            select(JOBS)
            .where(JOBS.c.state == JobState.WAITING)
            .where(or_(JOBS.c.machine_id == machine_id, JOBS.c.machine_id.is_(None)))
            .order_by(JOBS.c.id)
            .limit(limit)
        )
        with self.db.transaction(write=False) as connection:
            rows = connection.execute(query).mappings().all()
        return [JobInfo.from_row(r) for r in rows]

    def has_waiting(self, machine_id: str) -> bool:
        query = (
            select(JOBS.c.id)
            .where(JOBS.c.state == JobState.WAITING)
            .where(or_(JOBS.c.machine_id == machine_id, JOBS.c.machine_id.is_(None)))
            .limit(1)
        )
        with self.db.transaction(write=False) as connection:
            return connection.scalar(query) is not None

    def waiting_counts(self) -> dict[str | None, int]:
        """WAITING jobs per target machine (None: for any machine)."""
        query = (
            select(JOBS.c.machine_id, func.count()).where(JOBS.c.state == JobState.WAITING).group_by(JOBS.c.machine_id)
        )
        with self.db.transaction(write=False) as connection:
            return {machine: int(count) for machine, count in connection.execute(query).all()}

    def state_counts(self) -> dict[str, int]:
        query = select(JOBS.c.state, func.count()).group_by(JOBS.c.state)
        with self.db.transaction(write=False) as connection:
            counts = {state: int(count) for state, count in connection.execute(query).all()}
        return {state: counts.get(state, 0) for state in JobState.ALL}

    def cancel(self, job_id: int) -> str:
        """WAITING → CANCELLED at once; RUNNING → cancel requested (its client stops it and marks it
        CANCELLED). Returns the new state text."""
        if not 1 <= job_id <= MAX_JOB_ID:
            raise WattwiseError(f"no cluster job with id {job_id}")
        with self.db.transaction() as connection:
            query = select(JOBS.c.state).where(JOBS.c.id == job_id)
            if self.db.is_postgres:
                query = query.with_for_update()
            state = connection.scalar(query)
            if state is None:
                raise WattwiseError(f"no cluster job with id {job_id}")
            if state == JobState.WAITING:
                connection.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id)
                    .values(state=JobState.CANCELLED, ended_at=self.db.now(), error="cancelled before it ran")
                )
                return JobState.CANCELLED
            if state == JobState.RUNNING:
                connection.execute(update(JOBS).where(JOBS.c.id == job_id).values(cancel_requested=True))
                return "RUNNING (cancel requested: its client stops it)"
            raise WattwiseError(f"job {job_id} is already {state}: only WAITING or RUNNING jobs can be cancelled")

    # --- claiming and leases ----------------------------------------------------------------------
    def reclaim_expired(self, *, client_id: str | None = None) -> list[Reclaimed]:
        """Take back RUNNING jobs whose lease expired: WAITING again, FAILED after max_attempts, CANCELLED
        if a cancel was requested. Safe to call from any number of clients at once."""
        with self.db.transaction() as connection:
            return self._reclaim(connection, client_id)

    def _reclaim(self, connection: Connection, client_id: str | None) -> list[Reclaimed]:
        now = self.db.now()
        reclaimed: list[Reclaimed] = []
        rows = connection.execute(self._sql.expired, self.db.times()).mappings().all()
        for row in rows:
            if row["cancel_requested"]:
                state, error = JobState.CANCELLED, "cancelled; its client lost its lease"
            elif row["attempts"] >= row["max_attempts"]:
                state = JobState.FAILED
                error = (
                    f"its client lost the lease {row['attempts']} time(s) (client died, or lost the "
                    f"database); max_attempts is {row['max_attempts']}"
                )
            else:
                state, error = JobState.WAITING, None
            values: dict[str, Any] = {"state": state, "lease_owner": None, "lease_expires_at": None}
            if state == JobState.WAITING:  # back in the queue: it is no machine's and has no run yet
                values.update(started_at=None, running_machine_id=None, run_id=None)
            else:
                values.update(ended_at=now, error=error)
            result = connection.execute(
                update(JOBS)
                .where(JOBS.c.id == row["id"], JOBS.c.state == JobState.RUNNING)
                .where(JOBS.c.lease_owner == row["lease_owner"])
                .values(**values)
            )
            if result.rowcount != 1:
                continue
            if row["run_id"] is not None:  # the dead client's run: it will never be finished by anyone
                self.db.store.fail_abandoned_run(
                    row["run_id"],
                    f"its measuring client {row['lease_owner']} stopped (lease expired); "
                    f"job {row['id']} was given back to the queue",
                    connection=connection,
                )
            machine = row["running_machine_id"]
            expired = aware(row["lease_expires_at"])
            record_status(
                self.db,
                connection,
                machine or "",
                client_id,
                "lease-expired",
                f"job {row['id']}: lease of {row['lease_owner']} expired at "
                f"{expired.isoformat() if expired else '?'}; job is now {state} "
                f"(attempt {row['attempts']} of {row['max_attempts']})",
                job_id=row["id"],
            )
            if state == JobState.FAILED and row["email"]:
                enqueue(
                    connection,
                    [lease_failure_email(row["id"], row["name"], row["email"], machine, error or "")],
                )
            reclaimed.append(
                Reclaimed(row["id"], state, machine, row["lease_owner"], row["attempts"], row["max_attempts"])
            )
        return reclaimed

    def claim(self, machine_id: str, client_id: str, lease_s: float, *, reclaim: bool = True) -> JobInfo | None:
        """Atomically take the oldest WAITING job this machine may run, with a lease of `lease_s` seconds.

        None when there is none, when the machine does not accept jobs, or when it already runs one.
        Expired leases are reclaimed first, in the same transaction (unless `reclaim` is False: the caller
        just did). On PostgreSQL the claim is one UPDATE whose candidate comes from a sub-select with
        FOR UPDATE SKIP LOCKED; on SQLite the transaction holds the write lock (BEGIN IMMEDIATE).
        """
        parameters = {"p_machine": machine_id, "p_client": client_id, **self.db.times(lease_s)}
        try:
            with self.db.transaction() as connection:
                if reclaim:
                    self._reclaim(connection, client_id)
                row = connection.execute(self._sql.claim, parameters).mappings().first()
                return None if row is None else JobInfo.from_row(row)
        except IntegrityError:
            # another client of this machine claimed a job at the same moment: the unique index refused
            return None

    def renew(self, job_id: int, client_id: str, lease_s: float, *, machine_id: str | None = None) -> Renewal:
        """Extend the lease (and the machine's heartbeat). ok=False when the lease is no longer ours."""
        parameters = {"p_job": job_id, "p_client": client_id, "p_machine": machine_id, **self.db.times(lease_s)}
        with self.db.transaction() as connection:
            row = connection.execute(self._sql.renew, parameters).first()
            if row is not None and machine_id:
                connection.execute(self._sql.machine_beat, parameters)
        if row is None:
            return Renewal(False)
        return Renewal(True, bool(row[0]))

    def set_run_id(self, job_id: int, client_id: str, run_id: int) -> bool:
        """Note the run as soon as it exists (the final state comes with `finish`)."""
        with self.db.transaction() as connection:
            result = connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.lease_owner == client_id, JOBS.c.state == JobState.RUNNING)
                .values(run_id=run_id)
            )
            return result.rowcount == 1

    def finish(
        self,
        job_id: int,
        client_id: str,
        state: str,
        *,
        run_id: int | None = None,
        error: str | None = None,
        emails: Sequence[OutgoingEmail] = (),
        message: str = "",
    ) -> bool:
        """Record the outcome with the run id, the e-mails and a status entry, in one transaction, if we
        still hold the lease. False: the lease was lost and nothing was written."""
        if state not in JobState.DONE:
            raise ValueError(f"finish() needs a final state, not {state!r}")
        parameters = {
            "p_job": job_id,
            "p_client": client_id,
            "p_state": state,
            "p_run_id": run_id,
            "p_error": error,
            **self.db.times(),
        }
        with self.db.transaction() as connection:
            row = connection.execute(self._sql.finish, parameters).first()
            if row is None:
                return False
            enqueue(connection, emails)
            record_status(
                self.db,
                connection,
                row[0] or "",
                client_id,
                f"job-{state.lower()}",
                message or f"job {job_id} {state}" + (f": {error}" if error else ""),
                job_id=job_id,
                run_id=run_id,
            )
            return True

    def release(self, job_id: int, client_id: str, reason: str, *, count_attempt: bool = False) -> bool:
        """Give a running job back to the queue (client stopping, or it could not keep its lease)."""
        values: dict[str, Any] = {
            "state": JobState.WAITING,
            "lease_owner": None,
            "lease_expires_at": None,
            "started_at": None,
            "run_id": None,
        }
        if not count_attempt:
            values["attempts"] = JOBS.c.attempts - 1
        with self.db.transaction() as connection:
            row = connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.lease_owner == client_id, JOBS.c.state == JobState.RUNNING)
                .values(**values)
                .returning(JOBS.c.running_machine_id)
            ).first()
            if row is None:
                return False
            message = f"job {job_id}: {reason}"
            record_status(self.db, connection, row[0] or "", client_id, "job-released", message, job_id=job_id)
            # back in the queue it is no machine's (RETURNING above gave the machine it ran on)
            connection.execute(update(JOBS).where(JOBS.c.id == job_id).values(running_machine_id=None))
            return True

