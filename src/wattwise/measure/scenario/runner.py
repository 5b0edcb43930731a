"""`wattwise run`: a usage scenario measured phase by phase.

[BASELINE]      the machine with nothing of the scenario running (skipped with --dev-no-sleeps)
[INSTALLATION]  images built or pulled (nothing on the host backend)
[BOOT]          networks, volumes, services in dependency order, setup commands, health waits
[IDLE]          the services running, nothing asked of them (skipped with --dev-no-sleeps)
[RUNTIME]       the flow; one sub-phase per step (parent "[RUNTIME]", hidden steps hidden)
[REMOVE]        service logs read, containers, networks, volumes, built images and cgroups removed

Machine providers are sampled for the whole run; each service gets its own cgroup provider (CPU time,
memory) and, for containers, a network provider on its namespace, from the moment it starts until
[REMOVE]. The run is stored whatever happens; a failing step fails the run, and [REMOVE] always runs.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.carbon.static import resolve_grid_factor, resolve_pue
from wattwise.errors import WattwiseError
from wattwise.measure.clock import Clock
from wattwise.measure.sampler import Sampler
from wattwise.measure.scenario.backends import Backend, ContainerBackend, HostBackend, Unit
from wattwise.measure.scenario.engine import ContainerEngine
from wattwise.measure.scenario.model import FlowCommand, FlowStep, Scenario, Service, ShellCommand
from wattwise.measure.scenario.outputs import Collected, LineOptions, RunningCommand
from wattwise.measure.scenario.schema import load_scenario
from wattwise.providers import default_machine_providers
from wattwise.providers.base import Kind, MetricSpec, Provider
from wattwise.providers.cgroup import CgroupProvider
from wattwise.providers.network import NetworkProvider
from wattwise.store import RunStatus, Store

RUNTIME = "[RUNTIME]"
ProgressCallback = Callable[[str, float, float | None], None]


@dataclass
class RunOptions:
    name: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    allow_unsafe: bool = False
    dev_no_sleeps: bool = False
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


@dataclass
class ScenarioResult:
    run_id: int
    status: str
    exit_code: int | None
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    output: str | None = None  # the failing command's output


class RunCancelled(WattwiseError):
    """The caller set RunOptions.cancel."""


class ScenarioInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: raised after the run is stored as interrupted and cleaned up."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id


class StepFailed(WattwiseError):
    def __init__(self, message: str, output: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.output = output
        self.exit_code = exit_code


@dataclass
class _PhaseRecord:
    name: str
    start_us: int
    end_us: int
    parent: str | None = None
    hidden: bool = False


class _Phases:
    def __init__(self, clock: Clock, progress: ProgressCallback | None) -> None:
        self.clock = clock
        self.progress = progress
        self.records: list[_PhaseRecord] = []
        self.current: str | None = None
        self.check_cancel: Callable[[], None] = lambda: None
        #: takes a reading of every provider and returns the boundary time (the sampler's sample_now), so that
        #: counters are split exactly at phase boundaries rather than at the next sampling tick
        self.boundary: Callable[[], int] = clock.now_us

    @contextlib.contextmanager
    def phase(self, name: str, parent: str | None = None, hidden: bool = False) -> Iterator[None]:
        if name != "[REMOVE]":  # cleanup always runs
            self.check_cancel()
        start = self.boundary()
        if parent is None:
            self.current = name
        if self.progress:
            self.progress(name if parent is None else f"{parent} {name}", 0.0, None)
        try:
            yield
        finally:
            self.records.append(_PhaseRecord(name, start, self.boundary(), parent, hidden))

    def sleep(self, name: str, seconds: float) -> None:
        with self.phase(name):
            end = time.monotonic() + seconds
            while True:
                left = end - time.monotonic()
                if self.progress:
                    self.progress(name, seconds - max(left, 0.0), seconds)
                if left <= 0:
                    return
                self.check_cancel()
                time.sleep(min(0.1, left))

    def save(self, store: Store, run_id: int) -> None:
        """Top-level phases in order, each [RUNTIME] followed by its flow sub-phases."""
        subs = [r for r in self.records if r.parent]
        for record in self.records:
            if record.parent:
                continue
            store.add_phase(run_id, record.name, record.start_us, record.end_us)
            for sub in subs:
                if sub.parent == record.name:
                    store.add_phase(run_id, sub.name, sub.start_us, sub.end_us, hidden=sub.hidden, parent=sub.parent)


class ScenarioRun:
    """One execution of a scenario; `run_scenario` is the function to call."""

    def __init__(
        self, store: Store, scenario: Scenario, options: RunOptions, progress: ProgressCallback | None
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.options = options
        self.clock = Clock()
        self.phases = _Phases(self.clock, progress)
        self.collected = Collected(custom_metrics=scenario.custom_metrics)
        self.logs: list[tuple[str, str, str, int | None]] = []
        self.warnings: list[str] = list(scenario.warnings)
        self.token = secrets.token_hex(4)
        self.units: dict[str, Unit] = {}
        self.unit_providers: list[Provider] = []
        self.background: list[tuple[RunningCommand, str, LineOptions | None, bool, bool]] = []
        self.backend: Backend = self._make_backend()
        self.sampler: Sampler | None = None
        self.run_id = 0

    # --- set-up ------------------------------------------------------------------------------------
    def _make_backend(self) -> Backend:
        if self.scenario.backend == "host":
            return HostBackend(self.scenario, self.token, self._record_log)
        engine = ContainerEngine.detect(self.options.engine)
        return ContainerBackend(self.scenario, self.token, self._record_log, engine)

    def _record_log(self, source: str, stream: str, text: str, t_us: int | None = None) -> None:
        if text:
            self.logs.append((source[:200], stream, text, t_us))

    def _sci_enabled(self) -> bool:
        return self.scenario.sci is not None

    def _any_read_sci(self) -> bool:
        return any(c.read_sci_stdout for s in self.scenario.flow for c in s.commands) or any(
            s.read_sci_stdout for s in self.scenario.services.values()
        )

    # --- running commands --------------------------------------------------------------------------
    def _line_options(self, source: str, command: FlowCommand | None, service: Service | None) -> LineOptions:
        read_sci = False
        if self._sci_enabled():
            explicit = (command.read_sci_stdout if command else False) or (
                service.read_sci_stdout if service else False
            )
            read_sci = explicit or not self._any_read_sci()  # legacy files: GMT_SCI_R lines from the flow
        notes = (command.read_notes_stdout if command else False) or (
            service.read_notes_stdout if service and command is None else False
        )
        return LineOptions(source=source, notes=notes, sci=read_sci, metrics=True)

    def _start_command(
        self, service: Service, command: ShellCommand, source: str, line_options: LineOptions | None
    ) -> RunningCommand:
        argv = command.argv()
        process = self.backend.exec_process(service, argv)
        on_line = None
        if line_options is not None:
            collected, options = self.collected, line_options

            def on_line(line: str) -> None:
                collected.read_line(line, options)

        prefix = f"[{source}] " if self.options.echo_output else None
        return RunningCommand.start(process, self.clock.now_us(), command.command, on_line, prefix)

    def _check_cancel(self) -> None:
        if self.options.cancel is not None and self.options.cancel.is_set():
            raise RunCancelled("the run was cancelled")

    def _wait(self, running: RunningCommand, timeout_s: float, what: str) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                code = running.process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if self.options.cancel is not None and self.options.cancel.is_set():
                    self.backend.stop_process(running.process)
                    running.finish(5)
                    raise RunCancelled(f"{what}: stopped, the run was cancelled") from None
                if time.monotonic() > deadline:
                    self.backend.stop_process(running.process)
                    running.finish(5)
                    raise StepFailed(
                        f"{what} did not finish within {timeout_s:g} s and was stopped",
                        running.tail(),
                        None,
                    ) from None
        running.finish()
        return code

    def _finish(self, running: RunningCommand, source: str, log_stdout: bool, log_stderr: bool, what: str) -> int:
        """Wait for a command (within --timeout) and store its output, also when it fails or is interrupted."""
        try:
            return self._wait(running, self.options.command_timeout_s, what)
        finally:
            if running.process.poll() is None:  # interrupted while waiting
                self.backend.stop_process(running.process)
            running.finish(2)
            self._store_output(running, source, log_stdout, log_stderr)

    def _store_output(self, running: RunningCommand, source: str, log_stdout: bool, log_stderr: bool) -> None:
        if log_stdout:
            self._record_log(source, "stdout", running.stdout.text, running.start_us)
        if log_stderr:
            self._record_log(source, "stderr", running.stderr.text, running.start_us)

    # --- phases ------------------------------------------------------------------------------------
    def _attach_unit(self, unit: Unit) -> None:
        assert self.sampler is not None
        if unit.cgroup is not None:
            provider = CgroupProvider(unit.cgroup)
            if self.sampler.attach(provider, self.options.interval_s, label=unit.service):
                self.unit_providers.append(provider)
        if unit.own_network and unit.pid:
            network = NetworkProvider(pid=unit.pid, label=unit.service)
            if self.sampler.attach(network, self.options.interval_s, label=f"{unit.service} network"):
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
            for index, command in enumerate(service.setup_commands):
                source = f"{name} setup-commands[{index}]"
                running = self._start_command(service, command, source, None)
                if command.detach:
                    self.background.append((running, source, None, True, True))
                    continue
                code = self._finish(running, source, True, True, f"setup command {command.command!r}")
                if code != 0:
                    raise StepFailed(
                        f"service {name}: setup command `{command.command}` exited with code {code}",
                        running.tail(),
                        code,
                    )
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

    def _wait_healthy(self, service: Service, deadline: float) -> None:
        check = service.healthcheck
        assert check is not None
        started = time.monotonic()
        failures = 0
        last = ""
        attempts = 0
        while True:
            attempts += 1
            running = RunningCommand.start(
                self.backend.exec_process(service, check.argv), self.clock.now_us(), "healthcheck"
            )
            try:
                code = running.process.wait(timeout=max(0.1, check.timeout_s))
            except subprocess.TimeoutExpired:
                self.backend.stop_process(running.process)
                code = None
            running.finish(2)
            if code == 0:
                return
            last = running.tail(10) if code is not None else f"timed out after {check.timeout_s:g} s"
            in_start_period = time.monotonic() - started < check.start_period_s
            if not in_start_period:
                failures += 1
            if failures >= check.retries:
                raise StepFailed(
                    f"service {service.name} is unhealthy: its healthcheck failed {failures} times in a row "
                    f"({attempts} checks)",
                    last,
                    code,
                )
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"service {service.name} did not become healthy within {self.options.boot_timeout_s:g} s",
                    last,
                    code,
                )
            pause = check.start_interval_s if in_start_period and check.start_interval_s else check.interval_s
            time.sleep(max(0.05, pause))

    def _run_step(self, step: FlowStep) -> None:
        service = self.scenario.services[step.service]
        for index, command in enumerate(step.commands):
            source = step.name
            if command.note:
                with self.collected.lock:
                    self.collected.notes.append((self.clock.now_us(), step.name, command.note))
            options = self._line_options(source, command, None)
            running = self._start_command(service, command, source, options)
            if command.detach:
                self.background.append((running, source, options, command.log_stdout, command.log_stderr))
                continue
            what = f"flow step {step.name!r}, command {index + 1} ({command.command!r})"
            code = self._finish(running, source, command.log_stdout, command.log_stderr, what)
            if code != 0:
                if command.ignore_errors:
                    self.warnings.append(f"{what} exited with code {code} (ignore-errors)")
                    continue
                raise StepFailed(f"{what} exited with code {code} in {step.container}", running.tail(), code)

    def _stop_background(self) -> None:
        for running, source, _options, log_stdout, log_stderr in self.background:
            self.backend.stop_process(running.process)
            running.finish(5)
            self._store_output(running, source, log_stdout, log_stderr)
        self.background = []

    def _collect_service_logs(self) -> None:
        for name, service in self.scenario.services.items():
            if name not in self.units:
                continue
            try:
                out, err = self.backend.logs(service)
            except WattwiseError as exc:
                self.warnings.append(f"service {name}: logs not read: {exc}")
                continue
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
            assert self.sampler is not None
            for provider in self.unit_providers:
                self.sampler.detach(provider)
            try:
                self.warnings.extend(self.backend.cleanup())
            except Exception as exc:
                self.warnings.append(f"cleanup failed: {type(exc).__name__}: {exc}")

    # --- the run -----------------------------------------------------------------------------------
    def execute(self) -> ScenarioResult:
        options = self.options
        if options.interval_s < 0.01:
            raise WattwiseError(f"--interval must be at least 10ms, got {options.interval_s * 1000:g}ms")
        if self.scenario.architecture and self.scenario.architecture.lower() != "linux":
            raise WattwiseError(
                f"the scenario is written for architecture {self.scenario.architecture!r}; "
                "wattwise runs scenarios on linux"
            )
        grid = resolve_grid_factor(options.intensity_g_per_kwh, options.country)
        pue = resolve_pue(options.pue)
        providers, skipped = default_machine_providers(options.providers)
        baseline_s = 0.0 if options.dev_no_sleeps else options.baseline_s
        idle_s = 0.0 if options.dev_no_sleeps else options.idle_s
        settings: dict[str, Any] = {
            "interval_s": options.interval_s,
            "baseline_s": baseline_s,
            "idle_s": idle_s,
            "providers": [p.name for p in providers],
            "providers_skipped": skipped,
            "intensity_g_per_kwh": grid.intensity_g_per_kwh,
            "intensity_source": grid.source,
            "pue": pue,
            "unit_label": None,  # every service's cgroup counts for the run's unit figures
            "backend": self.scenario.backend,
            "engine": self.backend.describe(),
            "scenario_path": str(self.scenario.path.resolve()),
            "scenario_files": self.scenario.files,
            "services": sorted(self.scenario.services),
            "variables": sorted(options.variables),
            "allow_unsafe": options.allow_unsafe,
            "dev_no_sleeps": options.dev_no_sleeps,
            "run_token": self.token,  # in the names of the containers, networks, images and cgroups it made
        }
        estimated = not any(p.name in ("rapl", "ipmi") for p in providers)
        name = options.name or self.scenario.name
        self.run_id = self.store.create_run(
            name[:200],
            "scenario",
            command=str(self.scenario.path.resolve()),
            machine=socket.gethostname(),
            settings=settings,
            estimated=estimated,
            scenario=self.scenario.text,
        )
        if self.options.on_run_created is not None:
            self.options.on_run_created(self.run_id)
        self.sampler = Sampler(self.store, self.run_id, clock=self.clock)
        self.phases.boundary = self.sampler.sample_now
        self.phases.check_cancel = self._check_cancel
        for provider in providers:
            self.sampler.attach(provider, options.interval_s if provider.default_interval_s < 1 else None)
        status, error, exit_code, output = RunStatus.FINISHED, None, 0, None
        interrupted = False
        self.sampler.start()
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
            warnings = self.sampler.stop()
            self._save(status, error, exit_code, warnings)
        summary = self._summarize()
        if interrupted:
            raise ScenarioInterrupted(self.run_id)
        return ScenarioResult(self.run_id, status, exit_code, summary, list(summary.get("warnings", [])), error, output)

    def _save(self, status: str, error: str | None, exit_code: int | None, sampler_warnings: list[str]) -> None:
        store, run_id = self.store, self.run_id
        self.phases.save(store, run_id)
        for source, stream, text, t_us in self.logs:
            store.add_log(run_id, source, stream, text, t_us)
        store.add_notes(run_id, sorted(self.collected.notes, key=lambda note: note[0]))
        units = {m.name: m.unit for m in self.scenario.custom_metrics.values()}
        for metric_name, samples in self.collected.metric_samples.items():
            by_source: dict[str, list[tuple[int, float]]] = {}
            for t_us, value, source in samples:
                by_source.setdefault(source, []).append((t_us, value))
            for source, rows in by_source.items():
                spec = MetricSpec(
                    metric_name,
                    units[metric_name],
                    Kind.GAUGE,
                    source,
                    description=f"custom metric {metric_name} of the scenario (printed by {source})",
                )
                metric_id = store.add_metric(run_id, spec, "custom")
                store.add_samples([(metric_id, t, v) for t, v in sorted(rows)])
        settings = dict(store.get_run(run_id).settings or {})
        sci = self._sci()
        if sci is not None:
            settings["sci"] = sci
        settings["containers"] = {
            name: unit.container for name, unit in self.units.items() if unit.container is not None
        }
        store.update_run(run_id, settings=settings)
        warnings = [*self.warnings, *self.backend.warnings, *self.collected.warnings, *sampler_warnings]
        store.finish_run(run_id, status, error=error, exit_code=exit_code, warnings=list(dict.fromkeys(warnings)))

    def _sci(self) -> dict[str, Any] | None:
        unit_metric = next((m for m in self.scenario.custom_metrics.values() if m.sci), None)
        if unit_metric is None and self.scenario.sci is None:
            return None
        sci: dict[str, Any] = dict(self.scenario.sci or {})
        if unit_metric is not None:
            values = [v for _, v, _ in self.collected.metric_samples.get(unit_metric.name, [])]
            sci["R"] = sum(values)
            sci.setdefault("R_d", unit_metric.unit)
            sci["R_source"] = f"custom metric {unit_metric.name}"
        else:
            sci["R"] = self.collected.sci_r
            sci["R_source"] = f"GMT_SCI_R lines ({self.collected.sci_lines})"
        return sci

    def _summarize(self) -> dict[str, Any]:
        from wattwise.analysis import load_series, summarize_run

        series = load_series(self.store, self.run_id)
        summary = summarize_run(self.store, self.run_id, series=series)
        figures_of = (
            ("cgroup_cpu_time_s", "cpu_time_s", "delta"),
            ("cgroup_memory_b", "memory_peak_b", "peak"),
            ("network_rx_b", "network_rx_b", "delta"),
            ("network_tx_b", "network_tx_b", "delta"),
        )

        def service_figures(name: str, start: int, end: int) -> dict[str, float | None]:
            figures: dict[str, float | None] = {}
            for metric, key, how in figures_of:
                values = [getattr(s, how)(start, end) for s in series if s.name == metric and s.detail == name]
                present = [v for v in values if v is not None]
                figures[key] = (max(present) if how == "peak" else sum(present)) if present else None
            return figures

        def combined(parts: list[dict[str, float | None]]) -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            for _, key, how in figures_of:
                present = [p[key] for p in parts if p.get(key) is not None]
                out[key] = (max(present) if how == "peak" else sum(present)) if present else None  # type: ignore[type-var, arg-type]
            return out

        for phase in summary["phases"]:
            phase["services"] = {name: service_figures(name, phase["start_us"], phase["end_us"]) for name in self.units}
        for phase in summary["phases"]:
            parts = phase.get("rebuilt_from")
            if parts:  # [RUNTIME] made of its visible flow steps: so are the services' figures
                children = [p for p in summary["phases"] if p.get("parent") == phase["name"] and p["name"] in parts]
                phase["services"] = {
                    name: combined([child["services"][name] for child in children]) for name in self.units
                }
        settings = self.store.get_run(self.run_id).settings or {}
        summary["backend"] = self.scenario.backend
        summary["sci"] = settings.get("sci")
        self.store.update_run(self.run_id, results=summary)
        return summary


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
    scenario = load_scenario(path, options.variables, allow_unsafe=options.allow_unsafe, backend=options.backend)
    return ScenarioRun(store, scenario, options, progress).execute()
