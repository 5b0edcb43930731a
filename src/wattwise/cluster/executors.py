"""Executors: how a claimed job is measured on this machine.

An executor takes a job and an `ExecutionContext` and returns an `ExecutionResult` (ok, run id, error, log
tail, summary). It must stop soon after ``context.cancel`` is set (the job was cancelled, or the client is
losing its lease) and should call ``context.run_started(run_id)`` as soon as its run exists.

- `CommandExecutor` (source "command"): `measure_command` on the job's argv; variables become environment
  variables of the command.
- `ScenarioExecutor` (sources "folder" and "git"): a usage_scenario through the scenario runner's Python
  API; a git source is cloned (``git clone --depth 1 [--branch B]``) into the client's work directory first.

Other executors are plugged in per source in the client configuration (``executors: {command:
"package.module:ClassName"}``); the class is instantiated without arguments.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.cluster.config import MeasureSettings
from wattwise.cluster.models import SourceType
from wattwise.cluster.records import JobInfo
from wattwise.errors import ConfigError, WattwiseError
from wattwise.measure.process import descendants, signal_all, start_process, stop_process
from wattwise.store import Store

GIT_TIMEOUT_S = 600
LOG_TAIL_LINES = 40


@dataclass
class ExecutionContext:
    store: Store
    machine_id: str
    client_id: str
    cancel: threading.Event
    workdir: Path
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    log: Callable[[str], None] = print
    run_started: Callable[[int], None] = lambda run_id: None


@dataclass
class ExecutionResult:
    ok: bool
    run_id: int | None = None
    error: str | None = None
    log_tail: str = ""
    summary: dict[str, Any] | None = None


class Executor:
    """Base class: override `execute`."""

    name = "executor"

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        raise NotImplementedError


def run_log_tail(store: Store, run_id: int | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a run's stored output (stderr after stdout), for the failure e-mail."""
    if run_id is None:
        return ""
    try:
        entries = store.logs(run_id)
    except Exception:
        return ""
    text_lines: list[str] = []
    for entry in entries:
        prefix = "" if entry.stream == "stdout" else f"[{entry.stream}] "
        text_lines += [prefix + line for line in entry.text.splitlines()]
    return "\n".join(text_lines[-lines:])


def run_logged(command: list[str], timeout_s: float) -> tuple[bool, str]:
    """Run a command; (ok, a one-paragraph account with the tail of its output)."""
    text = " ".join(command)
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False, f"{text}: command not found"
    except PermissionError:
        return False, f"{text}: permission denied"
    except subprocess.TimeoutExpired:
        return False, f"{text}: still running after {timeout_s:g}s, stopped"
    output = (process.stdout + process.stderr).strip()
    tail = "\n".join(output.splitlines()[-20:])
    message = f"{text}: exit status {process.returncode}" + (f"\n{tail}" if tail else "")
    return process.returncode == 0, message


# --- stopping what a job started -------------------------------------------------------------------


class ChildStopper(threading.Thread):
    """When `cancel` is set, stops every process this process started after `before` (SIGTERM, then
    SIGKILL after `grace_s`), and (with `keep_stopping`) goes on stopping new ones until `finish()`."""

    def __init__(self, cancel: threading.Event, grace_s: float = 5.0, keep_stopping: bool = True) -> None:
        super().__init__(daemon=True, name="wattwise-job-stopper")
        self.cancel = cancel
        self.keep_stopping = keep_stopping
        self.grace_s = grace_s
        self.before = set(descendants(os.getpid()))
        self.done = threading.Event()
        self.stopped_any = False

    def run(self) -> None:
        while not self.done.is_set():
            if self.cancel.wait(0.2):
                break
        # once cancelled, keep stopping: a process started after the cancel (the measured command, after a
        # baseline that was running when the lease was lost) must not run either
        while not self.done.is_set():
            targets = [p for p in descendants(os.getpid()) if p not in self.before]
            if targets:
                self.stopped_any = True
                self._stop_processes(targets)
            if not self.keep_stopping:  # the runner stops itself and must be free to run its cleanup commands
                return
            self.done.wait(0.2)

    def _stop_processes(self, targets: list[int]) -> None:
        signal_all(targets, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and not self.done.is_set():
            if not [p for p in descendants(os.getpid()) if p not in self.before]:
                return
            time.sleep(0.1)
        signal_all([p for p in descendants(os.getpid()) if p not in self.before], signal.SIGKILL)

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=self.grace_s + 2)


# --- command jobs ----------------------------------------------------------------------------------


class CommandExecutor(Executor):
    """Measures the job's command with `measure_command` (baseline, then the command in its cgroup)."""

    name = "command"

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        from wattwise.measure.command import MeasureOptions, measure_command

        if not job.command:
            return ExecutionResult(False, error=f"job {job.id} has no command")
        if context.cancel.is_set():
            return ExecutionResult(False, error="stopped before it started: cancelled or lease lost")
        options = MeasureOptions(
            name=job.name,
            providers=context.measure.providers,
            echo_output=False,
            env={k: str(v) for k, v in job.variables.items()} or None,
            on_run_created=context.run_started,
        )
        if context.measure.interval_s is not None:
            options.interval_s = context.measure.interval_s
        if context.measure.baseline_s is not None:
            options.baseline_s = context.measure.baseline_s
        stopper = ChildStopper(context.cancel)
        stopper.start()
        try:
            result = measure_command(context.store, list(job.command), options)
        except WattwiseError as exc:
            return ExecutionResult(False, error=str(exc))
        finally:
            stopper.finish()
        context.run_started(result.run_id)
        ok = result.status == "finished" and not context.cancel.is_set()
        error = result.error
        if context.cancel.is_set() and stopper.stopped_any:
            error = "stopped: " + (error or "cancelled")
        return ExecutionResult(
            ok,
            run_id=result.run_id,
            error=None if ok else (error or f"run {result.run_id} ended {result.status}"),
            log_tail="" if ok else run_log_tail(context.store, result.run_id),
            summary=result.summary,
        )


# --- scenario jobs ---------------------------------------------------------------------------------


def clone_git(url: str, branch: str | None, destination: Path, cancel: threading.Event | None = None) -> str:
    """Shallow clone; returns the commit hash. Raises WattwiseError with git's message."""
    if shutil.which("git") is None:
        raise WattwiseError("git is not installed on this machine (apt install git)")
    if destination.exists():
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    argv = ["git", "clone", "--quiet", "--depth", "1"]
    if branch:
        argv += ["--branch", branch]
    argv += ["--", url, str(destination)]
    process = start_process(argv, env={"GIT_TERMINAL_PROMPT": "0"}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + GIT_TIMEOUT_S
    while process.poll() is None:  # cancellable: a lost lease or a cancel must not wait for a slow clone
        if cancel is not None and cancel.is_set():
            stop_process(process, signals=())  # at once: SIGKILL, reaped
            raise WattwiseError(f"git clone of {url} stopped: the job was cancelled or its lease lost")
        if time.monotonic() > deadline:
            stop_process(process, signals=())
            raise WattwiseError(f"git clone of {url} took longer than {GIT_TIMEOUT_S}s")
        time.sleep(0.1)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr is not None else ""
    if process.returncode != 0:
        message = stderr.strip().splitlines()
        raise WattwiseError(
            f"git clone of {url}"
            + (f" (branch {branch})" if branch else "")
            + " failed: "
            + (message[-1] if message else f"exit status {process.returncode}")
        )
    head = subprocess.run(
        ["git", "-C", str(destination), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return head.stdout.strip()


class ScenarioExecutor(Executor):
    """Runs a usage_scenario (a local folder, or a git repository cloned for the job)."""

    name = "scenario"

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        checkout: Path | None = None
        try:
            if job.source_type == SourceType.GIT:
                checkout = context.workdir / f"job-{job.id}-attempt-{job.attempts}"
                commit = clone_git(job.source, job.branch, checkout, context.cancel)
                context.log(f"job {job.id}: cloned {job.source} at {commit[:12]}")
                folder = checkout
            else:
                folder = Path(job.source).expanduser()
                if not folder.is_dir():
                    return ExecutionResult(
                        False,
                        error=f"scenario folder {folder} does not exist on machine {context.machine_id}",
                    )
            scenario_file = folder / (job.filename or "usage_scenario.yml")
            if not scenario_file.is_file():
                return ExecutionResult(False, error=f"no scenario file {job.filename} in {job.source}")
            from wattwise.measure.scenario.runner import run_scenario

            return self._run(run_scenario, job, scenario_file, context)
        except WattwiseError as exc:
            return ExecutionResult(False, error=str(exc))
        finally:
            if checkout is not None and checkout.exists():
                shutil.rmtree(checkout, ignore_errors=True)

    def _run(
        self, runner: Callable[..., Any], job: JobInfo, scenario_file: Path, context: ExecutionContext
    ) -> ExecutionResult:
        from wattwise.measure.scenario.runner import RunOptions
        from wattwise.measure.scenario.source import variable_name

        measure = context.measure
        depth = len(Path(job.filename or "usage_scenario.yml").parts)
        options = RunOptions(
            name=job.name,
            root=scenario_file.parents[depth - 1],  # GMT's --uri: the checkout (or folder) is the root
            variables={variable_name(k): v for k, v in job.variables.items()},
            providers=measure.providers,
            backend=measure.backend,
            on_run_created=context.run_started,
            cancel=context.cancel,
        )
        for key in ("interval_s", "baseline_s", "idle_s"):
            value = getattr(measure, key)
            if value is not None:
                setattr(options, key, value)
        stopper = ChildStopper(context.cancel, keep_stopping=False)
        stopper.start()
        try:
            outcome = runner(context.store, scenario_file, options)
        finally:
            stopper.finish()
        if outcome.run_id is not None:
            context.run_started(outcome.run_id)
        ok = outcome.status == "finished" and not context.cancel.is_set()
        error = outcome.error or f"scenario run ended {outcome.status}"
        tail = run_log_tail(context.store, outcome.run_id)
        if outcome.output:
            tail = "\n".join(outcome.output.rstrip().splitlines()[-40:])
        return ExecutionResult(
            ok,
            run_id=outcome.run_id,
            error=None if ok else error,
            log_tail="" if ok else tail,
            summary=outcome.summary,
        )


# --- registry --------------------------------------------------------------------------------------


def load_executor(spec: str, source: str = "") -> Executor:
    """An executor from 'package.module:ClassName' (instantiated without arguments)."""
    module_name, _, attribute = spec.partition(":")
    where = f"executors.{source}: " if source else ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ConfigError(f"{where}module {module_name!r} has no {attribute!r}")
    executor = factory()
    if not callable(getattr(executor, "execute", None)):
        raise ConfigError(f"{where}{spec} has no execute(job, context) method")
    return executor


def default_executors(overrides: dict[str, str] | None = None) -> dict[str, Executor]:
    scenario = ScenarioExecutor()
    executors: dict[str, Executor] = {
        SourceType.COMMAND: CommandExecutor(),
        SourceType.FOLDER: scenario,
        SourceType.GIT: scenario,
    }
    for source, spec in (overrides or {}).items():
        executors[source] = load_executor(spec, source)
    return executors
