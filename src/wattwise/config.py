"""Where wattwise keeps its data and which database it uses."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

ENV_DATABASE_URL = "WATTWISE_DATABASE_URL"
ENV_DATA_DIR = "WATTWISE_DATA_DIR"


def data_dir() -> Path:
    """The user's wattwise data directory (created on demand)."""
    override = os.environ.get(ENV_DATA_DIR)
    path = Path(override) if override else Path(user_data_dir("wattwise", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_database_url() -> str:
    """`WATTWISE_DATABASE_URL` if set, else SQLite in the data directory."""
    url = os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'wattwise.db'}"


def resolve_database_url(explicit: str | None) -> str:
    """A --db value may be a SQLAlchemy URL or a path to a SQLite file."""
    if not explicit:
        return default_database_url()
    if "://" in explicit:
        return explicit
    return f"sqlite:///{Path(explicit).expanduser().resolve()}"
