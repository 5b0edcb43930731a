"""The cluster's tables in a store's database, and what every part of the queue shares: transactions
(``BEGIN IMMEDIATE`` on SQLite), the time source and outage detection.

Times come from the database server on PostgreSQL (``now()``: machines' clocks may differ) and from the
local clock on SQLite (one machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from wattwise.cluster.models import ClusterEmail, ClusterJob, ClusterMachine, ClusterStatusEntry
from wattwise.cluster.records import aware
from wattwise.store import Store
from wattwise.store.models import utcnow

# the ORM's __table__ is typed as a FromClause; they are Tables
JOBS = cast(Table, ClusterJob.__table__)
MACHINES = cast(Table, ClusterMachine.__table__)
STATUS = cast(Table, ClusterStatusEntry.__table__)
EMAILS = cast(Table, ClusterEmail.__table__)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached right now (worth retrying later)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class ClusterDatabase:
    """A store's database as the cluster uses it. Thread-safe (each call uses its own connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.is_postgres = self.engine.dialect.name == "postgresql"

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

    def now(self) -> Any:
        """The current time as SQL (the server's now() on PostgreSQL) or as a value (SQLite)."""
        return func.now() if self.is_postgres else utcnow()

    def times(self, lease_s: float | None = None) -> dict[str, Any]:
        """Bound time values for prepared statements: `p_now` and `p_expires` on SQLite, `p_lease` on
        PostgreSQL (which computes times from now())."""
        if self.is_postgres:
            return {"p_lease": timedelta(seconds=lease_s or 0)}
        now = utcnow()
        return {"p_now": now, "p_expires": now + timedelta(seconds=lease_s or 0)}

    def db_now(self) -> datetime:
        """The database's current time (the local clock on SQLite)."""
        if not self.is_postgres:
            return utcnow()
        with self.engine.connect() as connection:
            value = aware(connection.scalar(select(func.now())))
        assert value is not None
        return value
