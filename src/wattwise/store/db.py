"""Engines and migrations. Every area's migration hangs off revision 0001 (its own branch); we upgrade to
all heads, so areas can add tables independently."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from wattwise.errors import WattwiseError

MIGRATIONS = Path(__file__).parent / "migrations"
_migrated: set[str] = set()
_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise WattwiseError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            if not folder.is_dir():
                raise WattwiseError(
                    f"the folder of the database {database} does not exist ({folder}); create it first "
                    f"(mkdir -p {folder}) or give another path with --db"
                )
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.drivername.split("+")[0] in ("postgresql", "postgres"):
        # psycopg 3 always: bulk sample writes use its COPY API
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args: dict[str, int] = {}
    if parsed.drivername == "postgresql+psycopg":
        # a dead network must surface as an error, not a connection that hangs for minutes
        connect_args = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                        "keepalives_count": 3}
    try:
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except NoSuchModuleError:
        raise WattwiseError(
            f"unknown database kind {parsed.drivername.split('+')[0]!r} in {url!r}: give a SQLite file path, "
            "sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    except ModuleNotFoundError as exc:
        raise WattwiseError(
            f"the database driver for {parsed.drivername} is not installed ({exc.name}); "
            "for PostgreSQL install wattwise[postgres]"
        ) from exc


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision of every branch (once per process and URL)."""
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        if key in _migrated:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "heads")
        except OperationalError as exc:
            raise WattwiseError(f"cannot open database {engine.url.render_as_string()}: {exc.orig}") from exc
        _migrated.add(key)
