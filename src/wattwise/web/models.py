"""Tables of the web area: API tokens (only their SHA-256 hashes are stored) and caches."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from wattwise.store.models import Base, utcnow


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: hex SHA-256 of the whole token; tokens are 256-bit random, so a fast hash is enough
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    #: first characters of the token, shown in listings so a person can tell tokens apart
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(10), default="write")  # read | write
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SeriesCache(Base):
    """A finished run's metric, pre-aggregated into time buckets so that charts of runs with millions of
    samples are served without reading every sample (see wattwise.web.series)."""

    __tablename__ = "web_series_cache"

    metric_id: Mapped[int] = mapped_column(Integer, ForeignKey("metrics.id", ondelete="CASCADE"), primary_key=True)
    #: the run's ended_at when the cache was built (ISO text); a different value means rebuild
    run_version: Mapped[str] = mapped_column(String(64))
    sample_count: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class ResultCache(Base):
    """Analysis results (phase statistics, summaries) of finished runs, keyed by what they depend on."""

    __tablename__ = "web_result_cache"

    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSON)


_ensured: set[str] = set()


def ensure_cache_tables(store: Any) -> None:
    """Create the cache tables where a database was migrated by an early revision 0002 that lacked them
    (once per process and database; a no-op where they exist)."""
    if store.url in _ensured:
        return
    tables = [cast(Table, SeriesCache.__table__), cast(Table, ResultCache.__table__)]
    Base.metadata.create_all(store.engine, tables=tables, checkfirst=True)
    _ensured.add(store.url)
