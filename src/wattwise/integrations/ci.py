"""Energy of CI jobs (the Eco-CI model): `wattwise ci start`, `wattwise ci mark LABEL`, `wattwise ci end`.

CI steps are separate processes, so `start` leaves a small agent running in the background that measures the
whole runner with the usual session (a real sensor where there is one, else the load→power curve, marked ≈).
`mark LABEL` ends the step since the previous mark (or the start) and names it; `end` ends the last step, closes
the run and writes a Markdown summary (to stdout and `$GITHUB_STEP_SUMMARY` when set) and a run document that
`wattwise runs import` stores elsewhere. The agent talks over a Unix socket in the state folder
(`$WATTWISE_CI_DIR`, else `$RUNNER_TEMP/wattwise-ci`, else `/tmp/wattwise-ci-<uid>`), so each mark is a reading
taken when the mark is made, and a mark with no agent is a clear error instead of a silent loss.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.errors import WattwiseError

__all__ = ["CiClient", "agent_main", "markdown_summary", "start_agent", "state_dir"]

SOCKET_NAME = "agent.sock"
RESULT_NAME = "wattwise-ci.json"
LOG_NAME = "agent.log"
RUNTIME = "[RUNTIME]"
#: the last step, when `end` is not given a label
LAST_STEP = "(after last mark)"


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


def agent_main(options: AgentOptions) -> int:
    """Measure until `end` (or SIGTERM, or max_duration_s); serve marks on the socket. Returns an exit code."""
    from wattwise.analysis.document import run_document
    from wattwise.config import resolve_database_url
    from wattwise.measure.session import MeasurementSession, SessionOptions
    from wattwise.store import Store

    folder = options.folder
    db = options.db or f"sqlite:///{(folder / 'ci.db').resolve()}"
    store = Store(resolve_database_url(db))
    settings: dict[str, Any] = {"ci": ci_environment()}  # the session adds the git checkout of the cwd
    session = MeasurementSession(store, SessionOptions(
        name=options.name, kind="ci", interval_s=options.interval_s, country=options.country,
        intensity_g_per_kwh=options.intensity_g_per_kwh, pue=options.pue, settings=settings,
    ))
    session.open()
    t0 = session.start()
    last = t0
    steps: list[tuple[str, int, int]] = []
    stop = {"signal": False}

    def on_term(signum: int, frame: object) -> None:
        stop["signal"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    path = folder / SOCKET_NAME
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.5)
    deadline = time.monotonic() + options.max_duration_s
    status, error, end_label = "finished", None, None
    try:
        while True:
            if stop["signal"] or time.monotonic() > deadline:
                status = "interrupted"
                error = "the CI agent was stopped before `wattwise ci end`" if stop["signal"] else (
                    f"no `wattwise ci end` within {options.max_duration_s:g} s")
                break
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                request = _read_line(conn)
                command, _, label = request.partition(" ")
                if command == "mark":
                    t = session.boundary()
                    steps.append((label or f"step {len(steps) + 1}", last, t))
                    last = t
                    conn.sendall(f"ok {t}\n".encode())
                elif command == "end":
                    end_label = label or None
                    t_end = session.boundary()
                    conn.sendall(f"ok {t_end}\n".encode())
                    break
                elif command == "ping":
                    conn.sendall(f"ok {session.run_id}\n".encode())
                else:
                    conn.sendall(f"error unknown request {command!r}\n".encode())
    finally:
        server.close()
        path.unlink(missing_ok=True)
    t_end = session.boundary()
    if steps and t_end - last >= 1000:
        steps.append((end_label or LAST_STEP, last, t_end))
    session.add_phase(RUNTIME, t0, t_end)
    for name, start_us, end_us in steps:
        session.add_phase(name, start_us, end_us, parent=RUNTIME)
    session.finish(status, error=error)
    session.summarize()
    document = run_document(store, session.run_id)
    (folder / RESULT_NAME).write_text(json.dumps(document, default=float) + "\n")
    return 0 if status == "finished" else 1


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


# --- the client side (the `wattwise ci` commands) -----------------------------------------------
def start_agent(folder: Path, argv: list[str], *, wait_s: float = 30.0) -> int:
    """Start the agent in the background (its own session, so the CI step's end does not stop it)."""
    folder.mkdir(parents=True, exist_ok=True)
    client = CiClient(folder)
    if client.alive():
        raise WattwiseError(f"a wattwise CI agent is already measuring in {folder}: run `wattwise ci end` first")
    (folder / RESULT_NAME).unlink(missing_ok=True)
    log = (folder / LOG_NAME).open("w")
    process = subprocess.Popen([sys.executable, "-m", "wattwise", "ci", "agent", "--dir", str(folder), *argv],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WattwiseError(f"the wattwise CI agent stopped at once (exit {process.returncode}):\n"
                                f"{(folder / LOG_NAME).read_text()[-2000:]}")
        if client.alive():
            return process.pid
        time.sleep(0.05)
    process.terminate()
    raise WattwiseError(f"the wattwise CI agent did not answer within {wait_s:g} s (log: {folder / LOG_NAME})")


class CiClient:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def request(self, line: str, timeout_s: float = 30.0) -> str:
        path = self.folder / SOCKET_NAME
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout_s)
                conn.connect(str(path))
                conn.sendall((line.replace("\n", " ") + "\n").encode())
                answer = _read_line(conn)
        except (FileNotFoundError, ConnectionRefusedError):
            raise WattwiseError(f"no wattwise CI agent is running in {self.folder}: run `wattwise ci start` first "
                                "(in the same job, with the same WATTWISE_CI_DIR)") from None
        except OSError as exc:
            raise WattwiseError(f"the wattwise CI agent in {self.folder} did not answer: {exc}") from None
        if not answer.startswith("ok"):
            raise WattwiseError(f"the wattwise CI agent answered: {answer or 'nothing'}")
        return answer

    def alive(self) -> bool:
        try:
            self.request("ping", timeout_s=2)
            return True
        except WattwiseError:
            return False

    def end(self, label: str | None, wait_s: float = 120.0) -> dict[str, Any]:
        self.request(f"end {label or ''}".strip())
        result = self.folder / RESULT_NAME
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # the agent writes the document after it has closed the run
            if result.exists():
                try:
                    document: dict[str, Any] = json.loads(result.read_text())
                    return document
                except ValueError:
                    pass  # still being written
            time.sleep(0.05)
        raise WattwiseError(f"the wattwise CI agent did not write {result} within {wait_s:g} s "
                            f"(log: {self.folder / LOG_NAME})")


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
    for warning in document.get("warnings") or []:
        lines.append(f"> ⚠ {warning}")
    return "\n".join(lines) + "\n"
