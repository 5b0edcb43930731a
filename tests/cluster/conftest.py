"""Fixtures of the cluster tests: queues on real databases, an SMTP server on loopback, client processes,
and a private PostgreSQL instance that a test may restart (the shared server is never touched)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from wattwise.cluster.queue import ClusterQueue
from wattwise.store import Store

HERE = Path(__file__).resolve().parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.1,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll until `predicate()` is truthy (a deadline for hangs, not a timing assertion). `what` may be a
    function, called on failure (to show a client's log as it is then)."""
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {text or predicate}")
        time.sleep(interval_s)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from wattwise import clitools

    monkeypatch.setattr(clitools.console, "width", 300)
    monkeypatch.setattr(clitools.err_console, "width", 300)


@pytest.fixture
def queue(db_url: str) -> Iterator[ClusterQueue]:
    """A queue on SQLite, then on PostgreSQL."""
    store = Store(db_url)
    yield ClusterQueue(store)
    store.close()


@pytest.fixture
def sqlite_queue(sqlite_url: str) -> Iterator[ClusterQueue]:
    store = Store(sqlite_url)
    yield ClusterQueue(store)
    store.close()


@pytest.fixture
def pg_queue(pg_url: str) -> Iterator[ClusterQueue]:
    store = Store(pg_url)
    yield ClusterQueue(store)
    store.close()


# --- SMTP on loopback ----------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)

    def parsed(self) -> list[Any]:
        from email import message_from_bytes, policy

        return [message_from_bytes(m.content, policy=policy.default) for m in self.messages]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    server = SmtpServer("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            server.messages.append(envelope)
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=server.host, port=server.port)
    controller.start()
    yield server
    controller.stop()


# --- client processes -------------------------------------------------------------------------------------


def wattwise_argv() -> list[str]:
    exe = Path(sys.executable).parent / "wattwise"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wattwise"]


def client_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["WATTWISE_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    env.pop("WATTWISE_CLIENT_CONFIG", None)
    return env


def write_config(path: Path, **settings: Any) -> Path:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


@dataclass
class ClientProcess:
    machine_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def start_client(tmp_path: Path) -> Iterator[Callable[..., ClientProcess]]:
    """Start `wattwise client --config …` processes; all are stopped at the end of the test."""
    started: list[ClientProcess] = []

    def start(db_url: str, machine_id: str, *, name: str | None = None, **settings: Any) -> ClientProcess:
        name = name or machine_id
        config = write_config(tmp_path / f"{name}.yml", machine_id=machine_id, **settings)
        log = tmp_path / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            [*wattwise_argv(), "client", "--config", str(config), "--db", db_url],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=client_env(tmp_path),
        )
        handle.close()
        client = ClientProcess(machine_id, process, log)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop(timeout_s=10)


# --- a private PostgreSQL instance ----------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    base: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.base / "data"), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.base / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL 15 instance of our own (initdb in a temporary folder, a free port), run as `postgres`."""
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and PostgreSQL 15 binaries in /usr/lib/postgresql/15/bin")
    base = Path(tempfile.mkdtemp(prefix="wattwise-cluster-pg-"))
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres", "postgres")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust",
         "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    instance = PrivatePostgres(base, free_port())
    instance.start()
    try:
        yield instance
    finally:
        try:
            instance.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        from wattwise.store.db import _migrated

        _migrated.discard(instance.url.replace("postgresql://", "postgresql+psycopg://"))
        shutil.rmtree(base, ignore_errors=True)


# --- the CLI in this process (the real-process runner is `run_cli` of tests/conftest.py) ------------------


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    exception: BaseException | None


def invoke(*args: str) -> CliResult:
    """Run `wattwise ARGS` in this process (fast); user errors come back as `exception`."""
    from typer.testing import CliRunner

    from wattwise.cli import app

    result = CliRunner().invoke(app, list(args))
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return CliResult(result.exit_code, result.stdout, exception)
