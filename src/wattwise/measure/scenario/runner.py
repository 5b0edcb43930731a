"""`wattwise run`: a usage scenario measured phase by phase.

[BASELINE]      the machine with nothing of the scenario running (skipped with --dev-no-sleeps)
[INSTALLATION]  images built or pulled (nothing on the host backend)
[BOOT]          networks, volumes, services in dependency order, setup commands, health waits
[IDLE]          the services running, nothing asked of them (skipped with --dev-no-sleeps)
[RUNTIME]       the flow; one sub-phase per step (parent "[RUNTIME]", hidden steps hidden)
[REMOVE]        service logs read, containers, networks, volumes, built images and cgroups removed

The measurement itself (providers, the stored run and its owner, sampling, closing the run) is a
`MeasurementSession`; each service gets its own cgroup provider (CPU time, memory) and, for containers, a
network provider on its namespace, from the moment it starts until [REMOVE]. The run is stored whatever
happens; a failing step fails the run, and [REMOVE] always runs. Steps (commands, health) are in `steps`,
stored outputs and figures in `results`, phases in `phases`.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.errors import WattwiseError
from wattwise.measure.clock import Clock
from wattwise.measure.scenario.backends import Backend, ContainerBackend, HostBackend, Unit
from wattwise.measure.scenario.engine import ContainerEngine
from wattwise.measure.scenario.model import Scenario
from wattwise.measure.scenario.outputs import Collected
from wattwise.measure.scenario.phases import RUNTIME, Phases, ProgressCallback
from wattwise.measure.scenario.results import Results
from wattwise.measure.scenario.schema import load_scenario
from wattwise.measure.scenario.steps import Background, RunCancelled, StepFailed, Steps
from wattwise.measure.session import MeasurementSession, SessionOptions
from wattwise.providers.base import Provider
from wattwise.providers.cgroup import CgroupProvider
from wattwise.providers.network import NetworkProvider
from wattwise.store import RunStatus, Store

__all__ = [
    "RUNTIME",
    "RunCancelled",
    "RunOptions",
    "ScenarioInterrupted",
    "ScenarioResult",
    "ScenarioRun",
    "StepFailed",
    "run_scenario",
]


@dataclass
class RunOptions:
    name: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    allow_unsafe: bool = False
    skip_unsafe: bool = False  # GMT's --skip-unsafe: unsafe items are left out with a warning
    root: Path | None = None  # GMT's --uri: paths may leave the scenario's folder, not this (default: its folder)
    dev_no_sleeps: bool = False
    dev_no_metrics: bool = False  # run the flow without sampling anything (no providers)
    dev_cache_build: bool = False  # built images keep a stable tag and are reused by the next run
    dev_no_build: bool = False  # never build: use the image a --dev-cache-build run left
    baseline_s: float = 60.0
    idle_s: float = 60.0
    interval_s: float = 0.1
    providers: list[str] | None = None
    intensity_g_per_kwh: float | None = None
    country: str | None = None
    pue: float | None = None
    backend: str = "auto"  # auto | container | host
    engine: str | None = None  # podman | docker | a path; default $WATTWISE_CONTAINER_ENGINE, podman, docker
    echo_output: bool = False  # stream command output to stderr
    command_timeout_s: float = 3600.0
    boot_timeout_s: float = 300.0
    on_run_created: Callable[[int], None] | None = None  # called with the run id as soon as the run exists
    #: set by a caller (the cluster client) to stop the run: checked in waits and between steps; the run ends
    #: failed with everything removed, like a failing step
    cancel: threading.Event | None = None
    extra_settings: dict[str, Any] = field(default_factory=dict)  # stored with the run (e.g. uri, branch)


@dataclass
class ScenarioResult:
    run_id: int
    status: str
    exit_code: int | None
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    output: str | None = None  # the failing command's output
    service_logs: dict[str, str] = field(default_factory=dict)  # service -> its container's output (--print-logs)
    notes: list[str] = field(default_factory=list)  # how accepted GMT keys were used or ignored (--verbose)


class ScenarioInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: raised after the run is stored as interrupted and cleaned up."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id


class ScenarioRun(Steps, Results):
    """One execution of a scenario; `run_scenario` is the function to call."""

    def __init__(
        self, store: Store, scenario: Scenario, options: RunOptions, progress: ProgressCallback | None
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.options = options
        self.progress = progress
        self.clock = Clock()
        self.collected = Collected(custom_metrics=scenario.custom_metrics)
        self.logs: list[tuple[str, str, str, int | None]] = []
        self.warnings: list[str] = list(scenario.warnings)
        self.token = secrets.token_hex(4)
        self.units: dict[str, Unit] = {}
        self.unit_providers: list[Provider] = []
        self.background: list[Background] = []
        self.backend: Backend = self._make_backend()
        self.run_id = 0

    def _make_backend(self) -> Backend:
        if self.scenario.backend == "host":
            return HostBackend(self.scenario, self.token, self._record_log)
        engine = ContainerEngine.detect(self.options.engine)
        backend = ContainerBackend(self.scenario, self.token, self._record_log, engine)
        backend.cache_build = self.options.dev_cache_build or self.options.dev_no_build
        backend.no_build = self.options.dev_no_build
        return backend

    # --- phases ------------------------------------------------------------------------------------
    def _attach_unit(self, unit: Unit) -> None:
        if self.options.dev_no_metrics:
            return
        if unit.cgroup is not None:
            provider = CgroupProvider(unit.cgroup)
            if self.session.attach(provider, self.options.interval_s, label=unit.service):
                self.unit_providers.append(provider)
        if unit.own_network and unit.pid:
            network = NetworkProvider(pid=unit.pid, label=unit.service)
            if self.session.attach(network, self.options.interval_s, label=f"{unit.service} network"):
                self.unit_providers.append(network)

    def _boot(self) -> None:
        self.backend.prepare()
        needs_health = {
            dep
            for service in self.scenario.services.values()
            for dep, condition in service.depends_on.items()
            if condition == "service_healthy"
        }
        boot_deadline = time.monotonic() + self.options.boot_timeout_s
        for name in self.scenario.start_order():
            service = self.scenario.services[name]
            unit = self.backend.start(service)
            self.units[name] = unit
            self._attach_unit(unit)
            self._setup(name, service)
            if name in needs_health:
                self._wait_healthy(service, boot_deadline)
        for name, service in self.scenario.services.items():
            running_now, code = self.backend.state(service)
            if not running_now:
                out, err = self.backend.logs(service)
                if code not in (0, None):
                    tail = "\n".join((out + err).strip().splitlines()[-20:])
                    raise StepFailed(f"service {name} stopped during [BOOT] with exit code {code}", tail, code)
                self.warnings.append(f"service {name} finished during [BOOT] (exit code {code})")

    def _collect_service_logs(self) -> None:
        for name, service in self.scenario.services.items():
            if name not in self.units:
                continue
            try:
                out, err = self.backend.logs(service)
            except WattwiseError as exc:
                self.warnings.append(f"service {name}: logs not read: {exc}")
                continue
            self.service_logs[name] = out + err
            options = self._line_options(name, None, service)
            self.collected.read_text(out, options)
            if service.log_stdout:
                self._record_log(name, "stdout", out)
            if service.log_stderr:
                self._record_log(name, "stderr", err)

    def _remove(self) -> None:
        with self.phases.phase("[REMOVE]"), _no_interrupts():
            try:
                self._stop_background()
            except Exception as exc:  # keep cleaning up
                self.warnings.append(f"stopping background commands: {exc}")
            try:
                self._collect_service_logs()
            except Exception as exc:
                self.warnings.append(f"reading service logs: {exc}")
            for provider in self.unit_providers:
                self.session.detach(provider)
            try:
                self.warnings.extend(self.backend.cleanup())
            except Exception as exc:
                self.warnings.append(f"cleanup failed: {type(exc).__name__}: {exc}")

    # --- the run -----------------------------------------------------------------------------------
    def _session_options(self) -> SessionOptions:
        options = self.options
        baseline_s = 0.0 if options.dev_no_sleeps else options.baseline_s
        idle_s = 0.0 if options.dev_no_sleeps else options.idle_s
        settings: dict[str, Any] = {
            "baseline_s": baseline_s,
            "idle_s": idle_s,
            "unit_label": None,  # every service's cgroup counts for the run's unit figures
            "backend": self.scenario.backend,
            "engine": self.backend.describe(),
            "scenario_path": str(self.scenario.path.resolve()),
            "scenario_root": str(options.root.resolve()) if options.root else None,
            "scenario_files": self.scenario.files,
            "services": sorted(self.scenario.services),
            "variables": sorted(options.variables),
            "allow_unsafe": options.allow_unsafe,
            "skip_unsafe": options.skip_unsafe,
            "dev_no_sleeps": options.dev_no_sleeps,
            "dev_no_metrics": options.dev_no_metrics,
            "run_token": self.token,  # in the names of the containers, networks, images and cgroups it made
            **options.extra_settings,
        }
        return SessionOptions(
            name=options.name or self.scenario.name,
            kind="scenario",
            interval_s=options.interval_s,
            # --dev-no-metrics: no machine providers ("cgroup" alone selects none; units are not attached either)
            providers=["cgroup"] if options.dev_no_metrics else options.providers,
            intensity_g_per_kwh=options.intensity_g_per_kwh,
            country=options.country,
            pue=options.pue,
            command=str(self.scenario.path.resolve()),
            scenario=self.scenario.text,
            settings=settings,
            on_run_created=options.on_run_created,
        )

    def execute(self) -> ScenarioResult:
        options = self.options
        if self.scenario.architecture and self.scenario.architecture.lower() != "linux":
            raise WattwiseError(
                f"the scenario is written for architecture {self.scenario.architecture!r}; "
                "wattwise runs scenarios on linux"
            )
        self.session = MeasurementSession(self.store, self._session_options(), clock=self.clock)
        self.phases = Phases(self.session, self.progress)
        self.phases.check_cancel = self._check_cancel
        self.service_logs: dict[str, str] = {}
        self.run_id = self.session.open()
        self.backend.run_id = self.run_id  # labels wattwise.run_id=<id> on everything it creates
        self.backend.store_key = hashlib.sha256(str(self.store.url).encode()).hexdigest()[:12]
        baseline_s = 0.0 if options.dev_no_sleeps else options.baseline_s
        idle_s = 0.0 if options.dev_no_sleeps else options.idle_s
        status: str = RunStatus.FINISHED
        error: str | None = None
        exit_code: int | None = 0
        output: str | None = None
        interrupted = False
        self.session.start()
        try:
            with _terminate_as_interrupt():
                if baseline_s > 0:
                    self.phases.sleep("[BASELINE]", baseline_s)
                with self.phases.phase("[INSTALLATION]"):
                    self.backend.install()
                with self.phases.phase("[BOOT]"):
                    self._boot()
                if idle_s > 0:
                    self.phases.sleep("[IDLE]", idle_s)
                with self.phases.phase(RUNTIME):
                    for step in self.scenario.flow:
                        with self.phases.phase(step.name, parent=RUNTIME, hidden=step.hidden):
                            self._run_step(step)
        except StepFailed as exc:
            status, error, exit_code, output = RunStatus.FAILED, str(exc), exc.exit_code, exc.output
        except KeyboardInterrupt:
            interrupted = True
            status, error, exit_code = RunStatus.INTERRUPTED, "interrupted", None
        except WattwiseError as exc:
            status, error, exit_code = RunStatus.FAILED, str(exc), None
            output = getattr(exc, "output", None) or None
        except Exception as exc:  # keep the samples and clean up whatever went wrong
            status, error, exit_code = RunStatus.FAILED, f"{type(exc).__name__}: {exc}", None
        finally:
            self._remove()
            self._close(status, error, exit_code)
        summary = self._summarize()
        end = self.session.end
        if interrupted:
            raise ScenarioInterrupted(self.run_id)
        return ScenarioResult(
            self.run_id,
            end.status if end else status,
            exit_code,
            summary,
            list(summary.get("warnings", [])),
            (end.error if end else error),
            output,
            dict(self.service_logs),
            list(self.scenario.notes),
        )

    def _close(self, status: str, error: str | None, exit_code: int | None) -> None:
        """Last samples, then phases, outputs and the run's status (the session never says finished for a
        run whose samples were lost)."""
        try:
            self.session.stop_sampling()
            self.phases.save()
            self._store_outputs()
        finally:
            warnings = [*self.warnings, *self.backend.warnings, *self.collected.warnings]
            self.session.finish(status, error=error, exit_code=exit_code, warnings=list(dict.fromkeys(warnings)))


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does (cleanup included), when we are on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Cleanup is not cut short by a second Ctrl-C or a SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_scenario(
    store: Store,
    path: str | Path,
    options: RunOptions | None = None,
    progress: ProgressCallback | None = None,
) -> ScenarioResult:
    """Check and run a scenario file. A file that is not valid raises ScenarioError before any run is
    stored; after that the run is stored whatever happens (a failure is recorded in it)."""
    options = options or RunOptions()
    scenario = load_scenario(
        path,
        options.variables,
        allow_unsafe=options.allow_unsafe,
        skip_unsafe=options.skip_unsafe,
        backend=options.backend,
        root=options.root,
    )
    return ScenarioRun(store, scenario, options, progress).execute()
