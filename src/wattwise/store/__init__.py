"""The store: runs, phases, notes, metrics, samples and logs in any SQLAlchemy database.

`Store(url)` opens (and migrates) a database. Samples are written in bulk with `add_samples` (executemany on
SQLite, COPY on PostgreSQL) and read back as numpy arrays.

`open_store(db)` opens the database a command's `--db` option names (else the configured default).

Names are imported on first use, so that `wattwise --help` (whose command modules import this package) does
not load SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.errors import DatabaseError
    from wattwise.store.models import LogEntry, Metric, Note, Phase, Run, RunStatus
    from wattwise.store.store import SampleRow, Store

__all__ = [
    "DatabaseError",
    "LogEntry",
    "Metric",
    "Note",
    "Phase",
    "Run",
    "RunStatus",
    "SampleRow",
    "Store",
    "open_store",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "wattwise.store.models" for name in ("LogEntry", "Metric", "Note", "Phase", "Run", "RunStatus")},
    "SampleRow": "wattwise.store.store",
    "Store": "wattwise.store.store",
    "DatabaseError": "wattwise.errors",
})


def open_store(db: str | None) -> Store:
    """The store at `db` (a SQLAlchemy URL or a SQLite file path), else $WATTWISE_DATABASE_URL, else the default."""
    from wattwise.config import resolve_database_url
    from wattwise.store.store import Store

    return Store(resolve_database_url(db))
