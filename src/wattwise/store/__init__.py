"""The store: runs, phases, notes, metrics, samples and logs in any SQLAlchemy database.

`Store(url)` opens (and migrates) a database. Samples are written in bulk with `add_samples` (executemany on
SQLite, COPY on PostgreSQL) and read back as numpy arrays.

Names are imported on first use, so that `wattwise --help` (which imports `wattwise.store.cli`) does not load
SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattwise.store.models import LogEntry, Metric, Note, Phase, Run, RunStatus
    from wattwise.store.store import SampleRow, Store

__all__ = ["LogEntry", "Metric", "Note", "Phase", "Run", "RunStatus", "SampleRow", "Store"]
_WHERE = {name: "wattwise.store.models" for name in ("LogEntry", "Metric", "Note", "Phase", "Run", "RunStatus")}
_WHERE.update({"SampleRow": "wattwise.store.store", "Store": "wattwise.store.store"})


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'wattwise.store' has no attribute {name!r}")
