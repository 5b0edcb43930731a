"""The store: runs, phases, notes, metrics, samples and logs in any SQLAlchemy database.

`Store(url)` opens (and migrates) a database. Samples are written in bulk with `add_samples` (executemany on
SQLite, COPY on PostgreSQL) and read back as numpy arrays.
"""

from wattwise.store.models import LogEntry, Metric, Note, Phase, Run, RunStatus
from wattwise.store.store import SampleRow, Store

__all__ = ["LogEntry", "Metric", "Note", "Phase", "Run", "RunStatus", "SampleRow", "Store"]
