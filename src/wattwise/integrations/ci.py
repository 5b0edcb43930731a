"""Energy of CI jobs (the Eco-CI model): `wattwise ci start`, `wattwise ci mark LABEL`, `wattwise ci end`.

CI steps are separate processes, so `start` leaves a small agent running in the background that measures the
whole runner with the usual session (a real sensor where there is one, else the load→power curve, marked ≈).
`mark LABEL` ends the step since the previous mark (or the start) and names it; `end` ends the last step, closes
the run and writes a Markdown summary (to stdout and `$GITHUB_STEP_SUMMARY` when set) and a run document that
`wattwise runs import` stores elsewhere. The agent talks over a Unix socket in the state folder
(`$WATTWISE_CI_DIR`, else `$RUNNER_TEMP/wattwise-ci`, else `/tmp/wattwise-ci-<uid>`), so each mark is a reading
taken when the mark is made, and a mark with no agent is a clear error instead of a silent loss.

The state folder must be private: created with mode 0700, and an existing one must belong to the user and not be
group- or world-writable (else another local user could plant a socket, a log link or a forged document in a
predictable /tmp path); files in it are opened without following symbolic links. The agent serves each
connection on its own (a client that sends nothing or leaves before the reply is logged and dropped) and always
closes its run and writes its document; when it has stopped by itself (SIGTERM, its 6 h cap), `end` uses that.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.errors import WattwiseError
from wattwise.integrations.ci_folder import check_state_dir, open_private, read_private, write_private

__all__ = ["CiClient", "CiResult", "agent_main", "check_state_dir", "markdown_summary", "start_agent", "state_dir"]

SOCKET_NAME = "agent.sock"
RESULT_NAME = "wattwise-ci.json"
LOG_NAME = "agent.log"
#: written by `start` (the agent's pid); a document newer than it belongs to this job's agent
STARTED_NAME = "agent.started"
RUNTIME = "[RUNTIME]"
#: the last step, when `end` is not given a label
LAST_STEP = "(after last mark)"
#: a connection must send its request within this time, and take its reply within REPLY_TIMEOUT_S
REQUEST_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 2.0
#: connections waiting for their request at once (more: the oldest is dropped)
MAX_PENDING = 64
MAX_REQUEST_BYTES = 4096


def state_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("WATTWISE_CI_DIR"):
        return Path(os.environ["WATTWISE_CI_DIR"])
    if os.environ.get("RUNNER_TEMP"):
        return Path(os.environ["RUNNER_TEMP"]) / "wattwise-ci"
    return Path("/tmp") / f"wattwise-ci-{os.getuid()}"


def ci_environment() -> dict[str, str]:
    """What identifies the CI job (GitHub Actions or GitLab CI variables), for the run's settings."""
    keys = ("GITHUB_REPOSITORY", "GITHUB_REF_NAME", "GITHUB_SHA", "GITHUB_RUN_ID", "GITHUB_WORKFLOW", "GITHUB_JOB",
            "CI_PROJECT_PATH", "CI_COMMIT_REF_NAME", "CI_COMMIT_SHA", "CI_PIPELINE_ID", "CI_JOB_NAME")
    return {k: os.environ[k] for k in keys if os.environ.get(k)}


# --- the agent (background process) -------------------------------------------------------------
@dataclass
class AgentOptions:
    folder: Path
    name: str
    db: str | None = None
    interval_s: float = 1.0
    country: str | None = None
    intensity_g_per_kwh: float | None = None
    pue: float | None = None
    max_duration_s: float = 6 * 3600


def _log(message: str) -> None:
    """A line in the agent's log (its stderr is agent.log in the state folder)."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} wattwise ci agent: {message}", file=sys.stderr, flush=True)


@dataclass
class _Pending:
    """A connection whose request has not fully arrived."""

    data: bytes = b""
    deadline: float = 0.0


@dataclass
class _Steps:
    """The marks so far: each step ends at a reading taken when its mark was made."""

    session: Any
    last: int
    steps: list[tuple[str, int, int]] = field(default_factory=list)
    end_label: str | None = None

    def answer(self, request: str) -> tuple[bytes, bool]:
        """The reply to one request, and whether it ends the run."""
        command, _, label = request.partition(" ")
        if command == "mark":
            t = self.session.boundary()
            self.steps.append((label or f"step {len(self.steps) + 1}", self.last, t))
            self.last = t
            return f"ok {t}\n".encode(), False
        if command == "end":
            self.end_label = label or None
            return f"ok {self.session.boundary()}\n".encode(), True
        if command == "ping":
            return f"ok {self.session.run_id}\n".encode(), False
        return f"error unknown request {command!r}\n".encode(), False


class _Server:
    """Answers requests on the agent's socket, each connection on its own: one that sends nothing is dropped after
    REQUEST_TIMEOUT_S without holding up the others, one that fails (gone before the reply) is logged and dropped.
    """

    def __init__(self, server: socket.socket, steps: _Steps) -> None:
        self.server = server
        self.steps = steps
        self.selector = selectors.DefaultSelector()
        self.pending: dict[socket.socket, _Pending] = {}

    def run(self, stop: dict[str, bool], deadline: float, max_duration_s: float) -> tuple[str, str | None]:
        """Serve until `end`, a signal or the deadline; returns the run's status and error."""
        self.server.setblocking(False)
        self.selector.register(self.server, selectors.EVENT_READ)
        try:
            while True:
                if stop["signal"]:
                    return "interrupted", "the CI agent was stopped before `wattwise ci end`"
                if time.monotonic() > deadline:
                    return "interrupted", f"no `wattwise ci end` within {max_duration_s:g} s"
                for key, _ in self.selector.select(timeout=0.5):
                    if key.fileobj is self.server:
                        self.accept()
                    elif isinstance(key.fileobj, socket.socket) and self.serve(key.fileobj):
                        return "finished", None
                now = time.monotonic()
                for conn in [c for c, p in self.pending.items() if now > p.deadline]:
                    _log(f"dropped a connection that sent no request within {REQUEST_TIMEOUT_S:g} s")
                    self.drop(conn)
        finally:
            for conn in list(self.pending):
                self.drop(conn)
            self.selector.close()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the next round tries again
                _log(f"could not accept a connection ({type(exc).__name__}: {exc})")
                return
            if len(self.pending) >= MAX_PENDING:
                _log(f"more than {MAX_PENDING} connections without a request: dropped the oldest")
                self.drop(min(self.pending, key=lambda c: self.pending[c].deadline))
            conn.setblocking(False)
            self.pending[conn] = _Pending(deadline=time.monotonic() + REQUEST_TIMEOUT_S)
            self.selector.register(conn, selectors.EVENT_READ)

    def serve(self, conn: socket.socket) -> bool:
        """Read what arrived on a connection; once its request is complete, answer it. True: the run ends."""
        state = self.pending[conn]
        try:
            chunk = conn.recv(MAX_REQUEST_BYTES)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            _log(f"a connection failed before its request arrived ({type(exc).__name__}: {exc})")
            self.drop(conn)
            return False
        state.data += chunk
        if chunk and b"\n" not in state.data and len(state.data) < MAX_REQUEST_BYTES:
            return False  # the rest of the line is still to come
        request = state.data.split(b"\n", 1)[0].decode(errors="replace").strip()
        reply, done = self.steps.answer(request)
        try:
            conn.settimeout(REPLY_TIMEOUT_S)
            conn.sendall(reply)
        except OSError as exc:
            _log(f"the client of {request!r} went away before the reply ({type(exc).__name__}: {exc}); "
                 "the request was done")
        self.drop(conn)
        return done

    def drop(self, conn: socket.socket) -> None:
        self.pending.pop(conn, None)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()


def agent_main(options: AgentOptions) -> int:
    """Measure until `end` (or SIGTERM, or max_duration_s); serve marks on the socket. Returns an exit code.

    Whatever happens to the socket, the run is closed (`failed` with the reason if serving itself broke), its
    phases are stored and its document is written."""
    from wattwise.analysis.document import run_document
    from wattwise.config import resolve_database_url
    from wattwise.measure.session import MeasurementSession, SessionOptions
    from wattwise.store import Store

    folder = options.folder
    check_state_dir(folder)
    db = options.db or f"sqlite:///{(folder / 'ci.db').resolve()}"
    store = Store(resolve_database_url(db))
    settings: dict[str, Any] = {"ci": ci_environment()}  # the session adds the git checkout of the cwd
    session = MeasurementSession(store, SessionOptions(
        name=options.name, kind="ci", interval_s=options.interval_s, country=options.country,
        intensity_g_per_kwh=options.intensity_g_per_kwh, pue=options.pue, settings=settings,
    ))
    session.open()
    t0 = session.start()
    steps = _Steps(session, t0)
    stop = {"signal": False}

    def on_term(signum: int, frame: object) -> None:
        stop["signal"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    path = folder / SOCKET_NAME
    deadline = time.monotonic() + options.max_duration_s
    server: socket.socket | None = None
    try:
        path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(8)
        status, error = _Server(server, steps).run(stop, deadline, options.max_duration_s)
    except Exception as exc:
        _log("serving stopped on an error; closing the run as failed\n" + traceback.format_exc())
        status, error = "failed", f"the CI agent stopped serving marks ({type(exc).__name__}: {exc})"
    finally:
        if server is not None:
            server.close()
        path.unlink(missing_ok=True)
    try:
        t_end = session.boundary()
    except Exception as exc:  # no last reading: the run ends at the last mark
        _log(f"no last reading ({type(exc).__name__}: {exc})")
        t_end = steps.last
    if steps.steps and t_end - steps.last >= 1000:
        steps.steps.append((steps.end_label or LAST_STEP, steps.last, t_end))
    session.add_phase(RUNTIME, t0, t_end)
    for name, start_us, end_us in steps.steps:
        session.add_phase(name, start_us, end_us, parent=RUNTIME)
    session.finish(status, error=error)
    session.summarize()
    document = run_document(store, session.run_id)
    write_private(folder / RESULT_NAME, (json.dumps(document, default=float) + "\n").encode())
    _log(f"run {session.run_id} closed as {status}" + (f": {error}" if error else ""))
    return 0 if status == "finished" else 1


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST_BYTES:
        chunk = conn.recv(MAX_REQUEST_BYTES)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


# --- the client side (the `wattwise ci` commands) -----------------------------------------------
def start_agent(folder: Path, argv: list[str], *, wait_s: float = 30.0) -> int:
    """Start the agent in the background (its own session, so the CI step's end does not stop it)."""
    check_state_dir(folder, create=True)
    client = CiClient(folder)
    if client.alive():
        raise WattwiseError(f"a wattwise CI agent is already measuring in {folder}: run `wattwise ci end` first")
    (folder / RESULT_NAME).unlink(missing_ok=True)
    (folder / STARTED_NAME).unlink(missing_ok=True)
    log = open_private(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        process = subprocess.Popen([sys.executable, "-m", "wattwise", "ci", "agent", "--dir", str(folder), *argv],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        os.close(log)
    write_private(folder / STARTED_NAME, (json.dumps({"pid": process.pid}) + "\n").encode())
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            (folder / STARTED_NAME).unlink(missing_ok=True)
            log_text = read_private(folder / LOG_NAME).decode(errors="replace")
            raise WattwiseError(f"the wattwise CI agent stopped at once (exit {process.returncode}):\n"
                                f"{log_text[-2000:]}")
        if client.alive():
            return process.pid
        time.sleep(0.05)
    process.terminate()
    (folder / STARTED_NAME).unlink(missing_ok=True)
    raise WattwiseError(f"the wattwise CI agent did not answer within {wait_s:g} s (log: {folder / LOG_NAME})")


@dataclass
class CiResult:
    """What `end` got: the run document (and its bytes, for --json); `from_agent` is False when the agent had
    already stopped by itself and this is the document it left."""

    document: dict[str, Any]
    raw: bytes
    from_agent: bool = True


class _NoAgent(Exception):
    """Internal: nothing listens on the socket."""


class CiClient:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        check_state_dir(folder)

    def _no_agent(self) -> WattwiseError:
        return WattwiseError(f"no wattwise CI agent is running in {self.folder}: run `wattwise ci start` first "
                             "(in the same job, with the same WATTWISE_CI_DIR)")

    def _exchange(self, line: str, timeout_s: float) -> str:
        path = self.folder / SOCKET_NAME
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout_s)
                conn.connect(str(path))
                conn.sendall((line.replace("\n", " ") + "\n").encode())
                answer = _read_line(conn)
        except (FileNotFoundError, ConnectionRefusedError):
            raise _NoAgent from None
        except OSError as exc:
            raise WattwiseError(f"the wattwise CI agent in {self.folder} did not answer: {exc}") from None
        if not answer.startswith("ok"):
            raise WattwiseError(f"the wattwise CI agent answered: {answer or 'nothing'}")
        return answer

    def request(self, line: str, timeout_s: float = 30.0) -> str:
        try:
            return self._exchange(line, timeout_s)
        except _NoAgent:
            raise self._no_agent() from None

    def alive(self) -> bool:
        try:
            self.request("ping", timeout_s=2)
            return True
        except WattwiseError:
            return False

    def end(self, label: str | None, wait_s: float = 120.0) -> CiResult:
        """End the run; when no agent answers, the document the agent of this job wrote when it stopped by
        itself (SIGTERM, its time cap), if there is one."""
        try:
            self._exchange(f"end {label or ''}".strip(), 30.0)
        except _NoAgent:
            left = self._left_behind(self._started(), wait_s)
            if left is None:
                raise self._no_agent() from None
            (self.folder / STARTED_NAME).unlink(missing_ok=True)
            return left
        result = self.folder / RESULT_NAME
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # the agent writes the document after it has closed the run
            found = self._read_result()
            if found is not None:
                (self.folder / STARTED_NAME).unlink(missing_ok=True)
                return found
            time.sleep(0.05)
        raise WattwiseError(f"the wattwise CI agent did not write {result} within {wait_s:g} s "
                            f"(log: {self.folder / LOG_NAME})")

    def _started(self) -> tuple[int, int] | None:
        """(agent pid, time of the start in ns) of the last `ci start` not yet ended, if any."""
        path = self.folder / STARTED_NAME
        try:
            raw = read_private(path)
            pid = int(json.loads(raw)["pid"])
            return pid, os.lstat(path).st_mtime_ns
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            raise WattwiseError(f"{path} is not what `wattwise ci start` writes: remove it") from None

    def _read_result(self, newer_than_ns: int | None = None) -> CiResult | None:
        path = self.folder / RESULT_NAME
        try:
            if newer_than_ns is not None and os.lstat(path).st_mtime_ns < newer_than_ns:
                return None  # from an earlier job
            raw = read_private(path)
        except FileNotFoundError:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            return None  # still being written (by an agent of an older version)
        if not isinstance(document, dict):
            raise WattwiseError(f"{path} is not a run document: remove it")
        return CiResult(document, raw)

    def _left_behind(self, started: tuple[int, int] | None, wait_s: float) -> CiResult | None:
        if started is None:
            return None
        pid, started_ns = started
        deadline = time.monotonic() + wait_s
        while True:
            running = _process_exists(pid)  # before reading: a stopping agent writes, then exits
            found = self._read_result(started_ns)
            if found is not None:
                found.from_agent = False
                return found
            if not running or time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: the pid was reused
        return False
    return True


def markdown_summary(document: dict[str, Any]) -> str:
    """The energy of each CI step as a Markdown table (what `wattwise ci end` prints and posts)."""
    from wattwise.units import format_duration, format_si

    phases = document["phases"]
    estimated = bool(document.get("estimated"))
    mark = "≈ " if estimated else ""
    steps = [p for p in phases if p.get("parent") == RUNTIME] or [p for p in phases if p["name"] == RUNTIME]
    total = next((p for p in phases if p["name"] == RUNTIME), None)
    lines = [f"### Energy of this CI job (wattwise run {document['run_id']})", "",
             "| step | duration | energy | mean power | carbon |", "|---|---:|---:|---:|---:|"]
    rows = [*steps, *([total] if total is not None and steps and steps[0] is not total else [])]
    for p in rows:
        name = "**total**" if p is total else p["name"].replace("|", "\\|")
        lines.append(f"| {name} | {format_duration(p['duration_s'])} | {mark}{format_si(p.get('energy_j'), 'J')} | "
                     f"{mark}{format_si(p.get('mean_power_w'), 'W')} | {mark}{format_si(p.get('carbon_g'), 'g')} |")
    lines.append("")
    source = "estimated from CPU utilisation with this machine's load→power curve (≈)" if estimated else (
        "measured by the machine's power sensors")
    lines.append(f"Whole-runner energy, {source}; grid {document.get('intensity_g_per_kwh', 0):g} gCO₂e/kWh "
                 f"({document.get('intensity_source') or 'default'}), PUE {document.get('pue', 1):g}.")
    status = document.get("status")
    if status and status != "finished":
        reason = f": {document['error']}" if document.get("error") else ""
        lines.append(f"> ⚠ the run ended as {status}{reason}")
    for warning in document.get("warnings") or []:
        lines.append(f"> ⚠ {warning}")
    return "\n".join(lines) + "\n"
