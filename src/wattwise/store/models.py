"""SQLAlchemy 2 models. Time in samples, phases and notes is integer microseconds since the Unix epoch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RunStatus:
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    #: the command ended but not every sample could be written (e.g. the disk was full); what was written is kept
    INCOMPLETE = "incomplete"
    #: the process measuring it was killed (`kill -9`, power loss); closed by recovery, samples kept
    CRASHED = "crashed"
    ALL = (RUNNING, FINISHED, FAILED, INTERRUPTED, INCOMPLETE, CRASHED)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="command")  # command | scenario | import
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING, index=True)
    machine: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    command: Mapped[Any] = mapped_column(JSON, nullable=True)  # argv list, or scenario file path
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[Any] = mapped_column(JSON, default=dict)  # interval, providers, intensity, pue, ...
    warnings: Mapped[Any] = mapped_column(JSON, default=list)
    scenario: Mapped[str | None] = mapped_column(Text)  # the usage_scenario source, when a scenario run
    results: Mapped[Any] = mapped_column(JSON, nullable=True)  # computed phase summary, cached
    # who measures a running run: a run whose owner process is gone is recovered as crashed
    owner_host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_start_ticks: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # /proc/PID/stat field 22


class Phase(Base):
    __tablename__ = "phases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    parent: Mapped[str | None] = mapped_column(String(200))  # "[RUNTIME]" for flow sub-phases


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    t_us: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))  # counter | gauge
    provider: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(String(300), default="")
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")


class LogEntry(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(200))  # "command", a container or step name
    stream: Mapped[str] = mapped_column(String(10))  # stdout | stderr | info
    t_us: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)


#: samples are written in bulk (executemany / COPY) and read as arrays, so they are a Core table
samples = Table(
    "samples",
    Base.metadata,
    Column("metric_id", Integer, nullable=False),  # no FK: checked per row, it would halve ingest
    Column("t_us", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_samples_metric_t", "metric_id", "t_us"),
)
