"""Fixtures shared by every area: databases (real SQLite and PostgreSQL) and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("WATTWISE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wattwise.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    import psycopg

    name = f"wattwise_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    from wattwise.store.db import _migrated

    _migrated.discard(f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://"))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both real databases, one after the other."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wattwise.db'}"
    return request.getfixturevalue("pg_url")


def wattwise_bin() -> list[str]:
    exe = Path(sys.executable).parent / "wattwise"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wattwise"]


@pytest.fixture
def wattwise_argv() -> list[str]:
    """How to start the real `wattwise` executable in a subprocess."""
    return wattwise_bin()


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run the real `wattwise` executable; returns CompletedProcess (text)."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.setdefault("WATTWISE_DATA_DIR", str(tmp_path / "data"))
        full_env["COLUMNS"] = "200"
        full_env.update(env or {})
        result = subprocess.run(
            [*wattwise_bin(), *args], capture_output=True, text=True, timeout=timeout, env=full_env
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"wattwise {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def which(program: str) -> str | None:
    return shutil.which(program)
