"""Running commands in a scenario's services: setup and flow commands, health checks, output kept."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

from wattwise.errors import RunCancelled as RunCancelled
from wattwise.errors import StepFailed as StepFailed
from wattwise.measure.clock import Clock
from wattwise.measure.scenario.backends import Backend
from wattwise.measure.scenario.model import FlowCommand, FlowStep, Healthcheck, Scenario, Service, ShellCommand
from wattwise.measure.scenario.outputs import Collected, LineOptions, RunningCommand

if TYPE_CHECKING:
    from wattwise.measure.scenario.runner import RunOptions


Background = tuple[RunningCommand, str, LineOptions | None, bool, bool]


class Steps:
    """What the runner does inside services; `ScenarioRun` sets the attributes."""

    scenario: Scenario
    options: RunOptions
    backend: Backend
    clock: Clock
    collected: Collected
    warnings: list[str]
    background: list[Background]
    logs: list[tuple[str, str, str, int | None]]

    def _record_log(self, source: str, stream: str, text: str, t_us: int | None = None) -> None:
        if text:
            self.logs.append((source[:200], stream, text, t_us))

    def _any_read_sci(self) -> bool:
        return any(c.read_sci_stdout for s in self.scenario.flow for c in s.commands) or any(
            s.read_sci_stdout for s in self.scenario.services.values()
        )

    def _line_options(self, source: str, command: FlowCommand | None, service: Service | None) -> LineOptions:
        read_sci = False
        if self.scenario.sci is not None:
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

    def _setup(self, name: str, service: Service) -> None:
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

    def _healthcheck_of(self, service: Service) -> Healthcheck:
        """The file's healthcheck, else the image's HEALTHCHECK (read from the engine, as GMT does)."""
        if service.healthcheck is not None:
            return service.healthcheck
        check = self.backend.image_healthcheck(service)
        if check is None:
            image = service.image or f"built from {service.build.context if service.build else '?'}"
            raise StepFailed(
                f"service {service.name}: another service waits for it with condition service_healthy, but "
                f"neither the file nor its image ({image}) has a healthcheck",
                "",
                None,
            )
        self.warnings.append(
            f"service {service.name}: the healthcheck of its image is used ({' '.join(check.argv)})"
        )
        return check

    def _wait_healthy(self, service: Service, deadline: float) -> None:
        check = self._healthcheck_of(service)
        started = time.monotonic()
        failures = 0
        last = ""
        attempts = 0
        while True:
            attempts += 1
            self._check_cancel()
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
