"""The job queue in the database: submit, list, cancel, claim with a lease, renew, finish, reclaim.

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

Times come from the database server on PostgreSQL (``now()``: machines' clocks may differ) and from the
local clock on SQLite (one machine).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
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
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from wattwise.cluster.models import (
    ClusterEmail,
    ClusterJob,
    ClusterMachine,
    ClusterStatusEntry,
    JobState,
    SourceType,
)
from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.store.models import utcnow

JOBS = ClusterJob.__table__
MACHINES = ClusterMachine.__table__
STATUS = ClusterStatusEntry.__table__
EMAILS = ClusterEmail.__table__

MACHINE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
GIT_URL_RE = re.compile(r"^((https?|ssh|git|file)://\S+|[\w.-]+@[\w.-]+:\S+)$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DEFAULT_SCENARIO_FILE = "usage_scenario.yml"


def aware(value: datetime | None) -> datetime | None:
    """Datetimes read from SQLite are naive UTC; make every datetime timezone-aware."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached right now (worth retrying later)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


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
    def from_row(cls, row: Mapping[str, Any]) -> JobInfo:
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
    def from_row(cls, row: Mapping[str, Any]) -> MachineInfo:
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


@dataclass
class JobRequest:
    """What `submit` needs; exactly one of command, folder or git_url."""

    name: str
    command: list[str] | None = None
    folder: str | None = None
    git_url: str | None = None
    branch: str | None = None
    filename: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    machine_id: str | None = None
    email: str | None = None
    max_attempts: int = 3


def validate_machine_id(machine_id: str, what: str = "machine id") -> str:
    if not isinstance(machine_id, str) or not MACHINE_ID_RE.match(machine_id):
        raise WattwiseError(
            f"{what} {machine_id!r} is not allowed: use 1 to 100 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return machine_id


def normalize_mac(mac: str) -> str:
    """aa:bb:cc:dd:ee:ff from aa:bb:.., AA-BB-.., aabb.ccdd.eeff or aabbccddeeff."""
    digits = re.sub(r"[:.\-]", "", mac.strip()).lower()
    if len(digits) != 12 or not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise WattwiseError(
            f"not a MAC address: {mac!r} (write six hex bytes, e.g. 3c:ec:ef:12:34:56 or 3c-ec-ef-12-34-56)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _validate_request(request: JobRequest) -> dict[str, Any]:
    name = (request.name or "").strip()
    if not name or len(name) > 200:
        raise WattwiseError("a job needs a name of 1 to 200 characters (--name)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise WattwiseError(f"a job name must not contain control characters such as line breaks: {name!r}")
    given = [
        k for k, v in (("command", request.command), ("folder", request.folder), ("git URL", request.git_url)) if v
    ]
    if len(given) != 1:
        raise WattwiseError(
            "give exactly one job source: a command (after --), --folder PATH or --git URL"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    values: dict[str, Any] = {"name": name, "branch": None, "filename": None, "command": None}
    if request.command:
        if not all(isinstance(a, str) for a in request.command):
            raise WattwiseError(f"a command is a list of strings, got {request.command!r}")
        values.update(source_type=SourceType.COMMAND, source=" ".join(request.command), command=list(request.command))
        if request.branch or request.filename:
            raise WattwiseError("--branch and --filename belong to scenario jobs (--folder or --git)")
    else:
        filename = request.filename or DEFAULT_SCENARIO_FILE
        path = PurePosixPath(filename)
        if path.is_absolute() or ".." in path.parts or not filename.strip():
            raise WattwiseError(
                f"--filename {filename!r} must be a relative path inside the scenario folder or repository"
            )
        values["filename"] = filename
        if request.folder:
            if request.branch:
                raise WattwiseError("--branch belongs to --git jobs, not --folder jobs")
            values.update(source_type=SourceType.FOLDER, source=request.folder)
        else:
            url = (request.git_url or "").strip()
            if not GIT_URL_RE.match(url):
                raise WattwiseError(
                    f"--git {url!r} is not a git URL: use https://…, ssh://…, git://…, file://… or user@host:path"
                )
            values.update(source_type=SourceType.GIT, source=url, branch=request.branch or None)
    variables = request.variables or {}
    if not isinstance(variables, dict):
        raise WattwiseError(f"variables must be a mapping of names to text, got {variables!r}")
    for key, value in variables.items():
        if not isinstance(key, str) or not VARIABLE_RE.match(key):
            raise WattwiseError(
                f"variable name {key!r} is not allowed: letters, digits and '_', not starting with a digit"
            )
        if not isinstance(value, str):
            raise WattwiseError(f"variable {key!r} must be text, got {value!r}")
    values["variables"] = dict(variables)
    if request.email is not None and not EMAIL_RE.match(request.email):
        raise WattwiseError(f"--email {request.email!r} is not an e-mail address")
    values["email"] = request.email or None
    if not isinstance(request.max_attempts, int) or not 1 <= request.max_attempts <= 100:
        raise WattwiseError(f"--max-attempts must be 1 to 100, got {request.max_attempts!r}")
    values["max_attempts"] = request.max_attempts
    values["machine_id"] = request.machine_id or None
    return values


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
        self.record = insert(STATUS).values(created_at=now)


class ClusterQueue:
    """The queue of a store's database. Thread-safe (each call uses its own connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._sql = _Statements(self.is_postgres)

    # --- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """A transaction; on SQLite a writing one starts with BEGIN IMMEDIATE (the write lock first, so
        two writers never both read and then fail to upgrade)."""
        with self.engine.connect() as connection:
            if write and not self.is_postgres:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                try:
                    connection.rollback()
                except Exception:  # the connection may be gone (server restart)
                    pass
                raise
            connection.commit()

    def _now(self) -> Any:
        """The current time as SQL (the server's now() on PostgreSQL) or as a value (SQLite)."""
        return func.now() if self.is_postgres else utcnow()

    def _times(self, lease_s: float | None = None) -> dict[str, Any]:
        """Bound time values for `_Statements` (PostgreSQL computes them from now())."""
        if self.is_postgres:
            return {"p_lease": timedelta(seconds=lease_s or 0)}
        now = utcnow()
        return {"p_now": now, "p_expires": now + timedelta(seconds=lease_s or 0)}

    def db_now(self) -> datetime:
        if not self.is_postgres:
            return utcnow()
        with self.engine.connect() as connection:
            return aware(connection.scalar(select(func.now())))  # type: ignore[return-value]

    # --- machines ---------------------------------------------------------------------------------
    def register_machine(
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
                with self.transaction() as connection:
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
        return self.get_machine(machine_id)

    def get_machine(self, machine_id: str) -> MachineInfo:
        with self.transaction(write=False) as connection:
            row = connection.execute(select(MACHINES).where(MACHINES.c.id == machine_id)).mappings().first()
        if row is None:
            raise WattwiseError(f"no machine {machine_id!r} in the cluster ({self._known_machines_text()})")
        return MachineInfo.from_row(row)

    def find_machine(self, machine_id: str) -> MachineInfo | None:
        with self.transaction(write=False) as connection:
            row = connection.execute(select(MACHINES).where(MACHINES.c.id == machine_id)).mappings().first()
        return None if row is None else MachineInfo.from_row(row)

    def list_machines(self) -> list[MachineInfo]:
        with self.transaction(write=False) as connection:
            rows = connection.execute(select(MACHINES).order_by(MACHINES.c.id)).mappings().all()
        return [MachineInfo.from_row(r) for r in rows]

    def _known_machines_text(self) -> str:
        known = [m.id for m in self.list_machines()]
        if not known:
            return "none registered yet: start `wattwise client` on it or `wattwise cluster machines --add ID`"
        return "known: " + ", ".join(known)

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
        values: dict[str, Any] = {"last_heartbeat_at": self._now(), "status": status, "client_id": client_id}
        if temperature_c is not None:
            values["current_temperature_c"] = temperature_c
        with self.transaction() as connection:
            connection.execute(update(MACHINES).where(MACHINES.c.id == machine_id).values(**values))
            if record:
                self._record(connection, machine_id, client_id, status, message, job_id, run_id, temperature_c)

    def _record(
        self,
        connection: Connection,
        machine_id: str,
        client_id: str | None,
        status: str,
        message: str,
        job_id: int | None = None,
        run_id: int | None = None,
        temperature_c: float | None = None,
    ) -> None:
        connection.execute(
            self._sql.record,
            {
                "machine_id": machine_id,
                "client_id": client_id,
                "status": status,
                "message": message,
                "job_id": job_id,
                "run_id": run_id,
                "temperature_c": temperature_c,
                **{k: v for k, v in self._times().items() if k == "p_now"},
            },
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
        with self.transaction() as connection:
            self._record(connection, machine_id, client_id, status, message, job_id, run_id, temperature_c)

    def set_accepts_jobs(
        self,
        machine_id: str,
        accepts: bool,
        reason: str | None = None,
        *,
        emails: Sequence[OutgoingEmail] = (),
    ) -> None:
        """Pause (accepts=False, with a reason) or release a machine, and queue e-mails about it."""
        with self.transaction() as connection:
            result = connection.execute(
                update(MACHINES)
                .where(MACHINES.c.id == machine_id)
                .values(accepts_jobs=accepts, paused_reason=None if accepts else reason)
            )
            if result.rowcount != 1:
                raise WattwiseError(f"no machine {machine_id!r} in the cluster")
            self._queue_emails(connection, emails)

    def set_control_workload_time(self, machine_id: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                update(MACHINES).where(MACHINES.c.id == machine_id).values(last_control_workload_at=self._now())
            )

    def status_history(self, machine_id: str | None = None, limit: int = 50) -> list[StatusInfo]:
        query = select(STATUS).order_by(STATUS.c.id.desc()).limit(limit)
        if machine_id:
            query = query.where(STATUS.c.machine_id == machine_id)
        with self.transaction(write=False) as connection:
            rows = connection.execute(query).mappings().all()
        return [
            StatusInfo(**{**{k: r[k] for k in StatusInfo.__dataclass_fields__}, "created_at": aware(r["created_at"])})
            for r in rows
        ]

    # --- submitting and listing -------------------------------------------------------------------
    def submit(self, request: JobRequest) -> JobInfo:
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[JobRequest]) -> list[JobInfo]:
        """Validate and queue jobs in one transaction (all or none)."""
        rows = [_validate_request(r) for r in requests]
        targets = {r["machine_id"] for r in rows if r["machine_id"]}
        with self.transaction() as connection:
            if targets:
                known = set(connection.scalars(select(MACHINES.c.id).where(MACHINES.c.id.in_(targets))))
                missing = sorted(targets - known)
                if missing:
                    raise WattwiseError(f"no machine {missing[0]!r} in the cluster ({self._known_text(connection)})")
            now = utcnow()
            for row in rows:
                row.update(state=JobState.WAITING, attempts=0, created_at=now, cancel_requested=False)
            result = connection.execute(insert(JOBS).returning(*JOBS.c, sort_by_parameter_order=True), rows)
            infos = [JobInfo.from_row(r) for r in result.mappings().all()]
        return infos

    def _known_text(self, connection: Connection) -> str:
        known = list(connection.scalars(select(MACHINES.c.id).order_by(MACHINES.c.id)))
        if not known:
            return "none registered yet: start `wattwise client` on it or `wattwise cluster machines --add ID`"
        return "known: " + ", ".join(known)

    def get_job(self, job_id: int) -> JobInfo:
        with self.transaction(write=False) as connection:
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
        with self.transaction(write=False) as connection:
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
        with self.transaction(write=False) as connection:
            rows = connection.execute(query).mappings().all()
        return [JobInfo.from_row(r) for r in rows]

    def has_waiting(self, machine_id: str) -> bool:
        query = (
            select(JOBS.c.id)
            .where(JOBS.c.state == JobState.WAITING)
            .where(or_(JOBS.c.machine_id == machine_id, JOBS.c.machine_id.is_(None)))
            .limit(1)
        )
        with self.transaction(write=False) as connection:
            return connection.scalar(query) is not None

    def waiting_counts(self) -> dict[str | None, int]:
        """WAITING jobs per target machine (None: for any machine)."""
        query = (
            select(JOBS.c.machine_id, func.count()).where(JOBS.c.state == JobState.WAITING).group_by(JOBS.c.machine_id)
        )
        with self.transaction(write=False) as connection:
            return {machine: int(count) for machine, count in connection.execute(query).all()}

    def state_counts(self) -> dict[str, int]:
        query = select(JOBS.c.state, func.count()).group_by(JOBS.c.state)
        with self.transaction(write=False) as connection:
            counts = {state: int(count) for state, count in connection.execute(query).all()}
        return {state: counts.get(state, 0) for state in JobState.ALL}

    def cancel(self, job_id: int) -> str:
        """WAITING → CANCELLED at once; RUNNING → cancel requested (its client stops it and marks it
        CANCELLED). Returns the new state text."""
        with self.transaction() as connection:
            query = select(JOBS.c.state).where(JOBS.c.id == job_id)
            if self.is_postgres:
                query = query.with_for_update()
            state = connection.scalar(query)
            if state is None:
                raise WattwiseError(f"no cluster job with id {job_id}")
            if state == JobState.WAITING:
                connection.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id)
                    .values(state=JobState.CANCELLED, ended_at=self._now(), error="cancelled before it ran")
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
        with self.transaction() as connection:
            return self._reclaim(connection, client_id)

    def _reclaim(self, connection: Connection, client_id: str | None) -> list[Reclaimed]:
        now = self._now()
        reclaimed: list[Reclaimed] = []
        rows = connection.execute(self._sql.expired, self._times()).mappings().all()
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
                from wattwise.store.models import Run, RunStatus

                runs = Run.__table__
                connection.execute(
                    update(runs)
                    .where(runs.c.id == row["run_id"], runs.c.status == RunStatus.RUNNING)
                    .values(
                        status=RunStatus.FAILED,
                        ended_at=now,
                        error=f"its measuring client {row['lease_owner']} stopped (lease expired); "
                        f"job {row['id']} was given back to the queue",
                    )
                )
            machine = row["running_machine_id"]
            expired = aware(row["lease_expires_at"])
            self._record(
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
                from wattwise.cluster.mail import lease_failure_email

                self._queue_emails(
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
        parameters = {"p_machine": machine_id, "p_client": client_id, **self._times(lease_s)}
        try:
            with self.transaction() as connection:
                if reclaim:
                    self._reclaim(connection, client_id)
                row = connection.execute(self._sql.claim, parameters).mappings().first()
                return None if row is None else JobInfo.from_row(row)
        except IntegrityError:
            # another client of this machine claimed a job at the same moment: the unique index refused
            return None

    def renew(self, job_id: int, client_id: str, lease_s: float, *, machine_id: str | None = None) -> Renewal:
        """Extend the lease (and the machine's heartbeat). ok=False when the lease is no longer ours."""
        parameters = {"p_job": job_id, "p_client": client_id, "p_machine": machine_id, **self._times(lease_s)}
        with self.transaction() as connection:
            row = connection.execute(self._sql.renew, parameters).first()
            if row is not None and machine_id:
                connection.execute(self._sql.machine_beat, parameters)
        if row is None:
            return Renewal(False)
        return Renewal(True, bool(row[0]))

    def set_run_id(self, job_id: int, client_id: str, run_id: int) -> bool:
        """Note the run as soon as it exists (the final state comes with `finish`)."""
        with self.transaction() as connection:
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
            **self._times(),
        }
        with self.transaction() as connection:
            row = connection.execute(self._sql.finish, parameters).first()
            if row is None:
                return False
            self._queue_emails(connection, emails)
            self._record(
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
        with self.transaction() as connection:
            row = connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.lease_owner == client_id, JOBS.c.state == JobState.RUNNING)
                .values(**values)
                .returning(JOBS.c.running_machine_id)
            ).first()
            if row is None:
                return False
            self._record(connection, row[0] or "", client_id, "job-released", f"job {job_id}: {reason}", job_id=job_id)
            # back in the queue it is no machine's (RETURNING above gave the machine it ran on)
            connection.execute(update(JOBS).where(JOBS.c.id == job_id).values(running_machine_id=None))
            return True

    # --- e-mail queue -----------------------------------------------------------------------------
    def queue_emails(self, emails: Sequence[OutgoingEmail]) -> None:
        with self.transaction() as connection:
            self._queue_emails(connection, emails)

    def _queue_emails(self, connection: Connection, emails: Sequence[OutgoingEmail]) -> None:
        if not emails:
            return
        connection.execute(
            insert(EMAILS),
            [
                {
                    "recipient": e.recipient,
                    "subject": e.subject[:500],
                    "body": e.body,
                    "kind": e.kind,
                    "job_id": e.job_id,
                    "machine_id": e.machine_id,
                    "created_at": utcnow(),
                    "attempts": 0,
                }
                for e in emails
            ],
        )
