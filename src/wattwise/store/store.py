"""The Store class: the one way other stages read and write measurements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from wattwise.errors import DatabaseError as DatabaseError
from wattwise.errors import WattwiseError
from wattwise.providers.base import MetricSpec
from wattwise.store.db import make_engine, migrate
from wattwise.store.models import LogEntry, Metric, Note, Phase, Run, RunStatus, samples, utcnow

SampleRow = tuple[int, int, float]  # (metric_id, t_us, value)


# PostgreSQL binary COPY: a row is int16 field count, then per field int32 length + big-endian value
_PG_ROW = np.dtype([("fields", ">i2"), ("len_m", ">i4"), ("metric_id", ">i4"), ("len_t", ">i4"),
                    ("t_us", ">i8"), ("len_v", ">i4"), ("value", ">f8")])
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_PG_TRAILER = b"\xff\xff"


def _pg_binary_copy(rows: Sequence[SampleRow]) -> bytes:
    """Encode rows in PostgreSQL's binary COPY format with numpy (no Python loop per row)."""
    source = np.array(rows, dtype=[("metric_id", "i4"), ("t_us", "i8"), ("value", "f8")])
    encoded = np.empty(len(source), dtype=_PG_ROW)
    encoded["fields"] = 3
    encoded["len_m"], encoded["len_t"], encoded["len_v"] = 4, 8, 8
    encoded["metric_id"] = source["metric_id"]
    encoded["t_us"] = source["t_us"]
    encoded["value"] = source["value"]
    return _PG_HEADER + encoded.tobytes() + _PG_TRAILER


class Store:
    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise self.write_error(exc) from exc

    def write_error(self, exc: OperationalError) -> WattwiseError:
        """A database failure a user can act on, named: read-only or immutable file, full disk, gone server."""
        reason = str(exc.orig) if exc.orig is not None else str(exc)
        where = self.engine.url.render_as_string()
        hint = ""
        if "readonly" in reason:
            hint = " (is the file or its folder read-only, or immutable: `lsattr`?)"
        elif "disk is full" in reason or "No space left" in reason:
            hint = " (the disk is full)"
        return DatabaseError(f"database {where}: {reason}{hint}")

    # --- runs -------------------------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        kind: str = "command",
        *,
        command: Any = None,
        machine: str = "",
        settings: dict[str, Any] | None = None,
        estimated: bool = False,
        scenario: str | None = None,
        owner: tuple[str, int, int | None] | None = None,
    ) -> int:
        """A new run, status `running`. `owner` is (host, pid, process start ticks) of the process measuring it."""
        with self.session() as session:
            run = Run(
                name=name,
                kind=kind,
                status=RunStatus.RUNNING,
                machine=machine,
                command=command,
                settings=settings or {},
                warnings=[],
                estimated=estimated,
                scenario=scenario,
                started_at=utcnow(),
                owner_host=owner[0] if owner else None,
                owner_pid=owner[1] if owner else None,
                owner_start_ticks=owner[2] if owner else None,
            )
            session.add(run)
            session.flush()
            return run.id

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise WattwiseError(f"no run with id {run_id}")
            for key, value in fields.items():
                if not hasattr(Run, key):
                    raise AttributeError(f"runs have no field {key!r}")
                setattr(run, key, value)

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        exit_code: int | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        if status not in RunStatus.ALL:
            raise ValueError(f"unknown run status {status!r}")
        fields: dict[str, Any] = {
            "status": status,
            "ended_at": utcnow(),
            "error": error,
            "exit_code": exit_code,
        }
        if warnings is not None:
            fields["warnings"] = warnings
        self.update_run(run_id, **fields)

    def running_runs(self, host: str | None = None) -> list[Run]:
        """Runs still `running` (owned by `host` when given), oldest first."""
        query = select(Run).where(Run.status == RunStatus.RUNNING).order_by(Run.id)
        if host is not None:
            query = query.where(Run.owner_host == host)
        with self.session() as session:
            return list(session.scalars(query))

    def get_run(self, run_id: int) -> Run:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise WattwiseError(f"no run with id {run_id} in {self.engine.url.render_as_string()}")
            return run

    def fail_abandoned_run(self, run_id: int, error: str, *, connection: Connection | None = None) -> bool:
        """Mark a run that is still `running` as `failed` with `error`: whoever measured it is gone (e.g. a
        cluster client whose lease expired). Inside `connection`'s transaction when given, so the caller's
        change and this one happen together. False: the run was not running (nothing changed)."""
        statement = (
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.RUNNING)
            .values(status=RunStatus.FAILED, ended_at=func.now() if self.is_postgres else utcnow(), error=error)
        )
        if connection is not None:
            return connection.execute(statement).rowcount == 1
        with self.engine.begin() as own:
            return own.execute(statement).rowcount == 1

    def list_runs(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
    ) -> list[Run]:
        query = select(Run).order_by(Run.id.desc()).limit(limit).offset(offset)
        if status:
            query = query.where(Run.status == status)
        if name:
            query = query.where(Run.name.contains(name, autoescape=True))
        if kind:
            query = query.where(Run.kind == kind)
        if since:
            query = query.where(Run.created_at >= since)
        with self.session() as session:
            return list(session.scalars(query))

    def count_runs(
        self, *, status: str | None = None, name: str | None = None, kind: str | None = None
    ) -> int:
        query = select(func.count(Run.id))
        if status:
            query = query.where(Run.status == status)
        if name:
            query = query.where(Run.name.contains(name, autoescape=True))
        if kind:
            query = query.where(Run.kind == kind)
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def delete_run(self, run_id: int) -> None:
        self.get_run(run_id)
        with self.session() as session:
            metric_ids = select(Metric.id).where(Metric.run_id == run_id)
            session.execute(delete(samples).where(samples.c.metric_id.in_(metric_ids)))
            for model in (Metric, Phase, Note, LogEntry):
                session.execute(delete(model).where(model.run_id == run_id))
            session.execute(delete(Run).where(Run.id == run_id))

    # --- metrics and samples ----------------------------------------------------------------------
    def add_metric(self, run_id: int, spec: MetricSpec, provider: str) -> int:
        with self.session() as session:
            metric = Metric(
                run_id=run_id,
                name=spec.name,
                unit=spec.unit,
                kind=str(spec.kind),
                provider=provider,
                detail=spec.detail,
                estimated=spec.estimated,
                description=spec.description,
            )
            session.add(metric)
            session.flush()
            return metric.id

    def metrics(self, run_id: int) -> list[Metric]:
        with self.session() as session:
            return list(session.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))

    def add_samples(self, rows: Sequence[SampleRow]) -> None:
        """Bulk-insert (metric_id, t_us, value) rows in one transaction."""
        if not rows:
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self.is_postgres:
                with cursor.copy("COPY samples (metric_id, t_us, value) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(_pg_binary_copy(rows))
            else:
                cursor.executemany("INSERT INTO samples (metric_id, t_us, value) VALUES (?, ?, ?)", rows)
            raw.commit()
        finally:
            raw.close()

    def samples(
        self, metric_id: int, start_us: int | None = None, end_us: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(t_us int64 array, value float64 array), ordered by time.

        Read through the DB-API cursor: plain tuples convert to numpy ~20× faster than SQLAlchemy rows, which
        matters for runs with millions of samples. The query is still built with bound values."""
        query = select(samples.c.t_us, samples.c.value).where(samples.c.metric_id == metric_id)
        if start_us is not None:
            query = query.where(samples.c.t_us >= start_us)
        if end_us is not None:
            query = query.where(samples.c.t_us <= end_us)
        compiled = query.order_by(samples.c.t_us).compile(dialect=self.engine.dialect)
        params: Any = compiled.construct_params()
        if self.engine.dialect.paramstyle in ("qmark", "numeric", "format"):
            params = tuple(params[name] for name in compiled.positiontup or ())
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(str(compiled), params)
            rows = cursor.fetchall()
            cursor.close()
        finally:
            raw.close()
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        t_us = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        return t_us, values

    def sample_count(self, run_id: int) -> int:
        query = (
            select(func.count())
            .select_from(samples)
            .where(samples.c.metric_id.in_(select(Metric.id).where(Metric.run_id == run_id)))
        )
        with self.engine.connect() as connection:
            return int(connection.scalar(query) or 0)

    # --- phases, notes, logs ----------------------------------------------------------------------
    def add_phase(
        self,
        run_id: int,
        name: str,
        start_us: int,
        end_us: int,
        *,
        hidden: bool = False,
        parent: str | None = None,
    ) -> int:
        with self.session() as session:
            ordinal = session.scalar(select(func.count(Phase.id)).where(Phase.run_id == run_id)) or 0
            phase = Phase(
                run_id=run_id,
                name=name,
                start_us=start_us,
                end_us=end_us,
                ordinal=ordinal,
                hidden=hidden,
                parent=parent,
            )
            session.add(phase)
            session.flush()
            return phase.id

    def phases(self, run_id: int) -> list[Phase]:
        with self.session() as session:
            return list(session.scalars(select(Phase).where(Phase.run_id == run_id).order_by(Phase.ordinal)))

    def add_notes(self, run_id: int, notes: Sequence[tuple[int, str, str]]) -> None:
        """(t_us, source, text) tuples."""
        if not notes:
            return
        with self.session() as session:
            session.add_all(
                Note(run_id=run_id, t_us=t, source=source, text=text) for t, source, text in notes
            )

    def notes(self, run_id: int) -> list[Note]:
        with self.session() as session:
            return list(
                session.scalars(select(Note).where(Note.run_id == run_id).order_by(Note.t_us, Note.id))
            )

    def add_log(self, run_id: int, source: str, stream: str, text: str, t_us: int | None = None) -> None:
        with self.session() as session:
            session.add(LogEntry(run_id=run_id, source=source, stream=stream, text=text, t_us=t_us))

    def logs(self, run_id: int) -> list[LogEntry]:
        with self.session() as session:
            return list(
                session.scalars(select(LogEntry).where(LogEntry.run_id == run_id).order_by(LogEntry.id))
            )
