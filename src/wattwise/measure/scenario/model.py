"""A validated usage scenario: plain dataclasses the runner works from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.measure.scenario.problems import KeyPath


@dataclass
class BuildSpec:
    context: Path
    dockerfile: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass
class VolumeMount:
    kind: str  # "bind" | "volume"
    source: str  # absolute host path (bind) or the scenario's volume name (volume)
    target: str
    read_only: bool = False


@dataclass
class Healthcheck:
    """The compose healthcheck; `argv` is what runs in the container (shell form: ['/bin/sh', '-c', ...])."""

    argv: list[str]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0
    start_interval_s: float | None = None


@dataclass
class ShellCommand:
    """A command run in a service: split into arguments, or given to `shell -c` when `shell` is set."""

    command: str
    shell: str | None = None
    shell_options: list[str] = field(default_factory=list)
    detach: bool = False
    path: KeyPath = ()

    def argv(self) -> list[str]:
        import shlex

        if self.shell:
            return [self.shell, *self.shell_options, "-c", self.command]
        return shlex.split(self.command)


@dataclass
class Service:
    name: str
    image: str | None = None
    build: BuildSpec | None = None
    container_name: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    networks: dict[str, list[str]] = field(default_factory=dict)  # network -> extra aliases
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    healthcheck: Healthcheck | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    setup_commands: list[ShellCommand] = field(default_factory=list)
    mem_limit: str | None = None
    cpus: str | None = None
    init: bool = False
    log_stdout: bool = True
    log_stderr: bool = True
    read_notes_stdout: bool = False
    read_sci_stdout: bool = False
    engine_args: list[str] = field(default_factory=list)  # docker-run-args (GMT's allow-list, or --allow-unsafe)
    expose: list[str] = field(default_factory=list)  # ports opened to the other containers (--expose)
    shm_size: str | None = None
    folder_destination: str = "/tmp/repo"  # where the root (--uri) is mounted read-only, as GMT does

    @property
    def display_name(self) -> str:
        """How flow steps and people call it: container_name when set, else the service key."""
        return self.container_name or self.name


@dataclass
class FlowCommand(ShellCommand):
    type: str = "console"
    note: str | None = None
    read_notes_stdout: bool = False
    read_sci_stdout: bool = False
    ignore_errors: bool = False
    log_stdout: bool = True
    log_stderr: bool = True


@dataclass
class FlowStep:
    name: str
    service: str  # the service key the step runs in
    container: str  # as written in the file
    commands: list[FlowCommand]
    hidden: bool = False


@dataclass
class CustomMetric:
    """A figure printed by the software: `regex` has a timestamp group and a value group."""

    name: str
    unit: str
    regex: re.Pattern[str]
    sci: bool = False
    timestamp_group: int | str = 1
    value_group: int | str = 2


@dataclass
class Scenario:
    path: Path
    text: str
    name: str
    author: str
    description: str
    flow: list[FlowStep]
    services: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, dict[str, object]] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    custom_metrics: dict[str, CustomMetric] = field(default_factory=dict)
    sci: dict[str, object] | None = None
    backend: str = "container"  # "container" | "host"
    architecture: str | None = None
    version: str | None = None
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how accepted GMT keys are used or ignored (--verbose)
    root: Path | None = None  # the root paths are judged against (--uri); None: the scenario's folder

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    def start_order(self) -> list[str]:
        """Services in an order where each comes after the services it depends on (stable)."""
        order: list[str] = []
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            done.add(name)
            for dep in self.services[name].depends_on:
                visit(dep)
            order.append(name)

        for name in self.services:
            visit(name)
        return order
