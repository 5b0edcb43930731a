"""Where a scenario's services run: containers (podman/docker) or host processes in their own cgroups.

Both backends offer the same operations to the runner: install ([INSTALLATION]), prepare and start
services ([BOOT]), run a command in a service (setup commands, health checks, flow commands), read a
service's output, and remove everything again ([REMOVE], also after failures).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wattwise.errors import WattwiseError
from wattwise.measure.scenario.engine import (
    OWNER_LABEL,
    RUN_ID_LABEL,
    RUN_LABEL,
    SERVICE_LABEL,
    STORE_LABEL,
    ContainerEngine,
    ContainerSpec,
    EngineError,
)
from wattwise.measure.scenario.model import Healthcheck, Scenario, Service
from wattwise.measure.scenario.outputs import RunningCommand
from wattwise.providers.base import ProviderError
from wattwise.providers.cgroup import CgroupMounts, CreatedCgroup, UnitCgroup, create_unit_cgroup

LogSink = Callable[[str, str, str], None]  # (source, stream, text)
DEFAULT_NETWORK = "default"

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size_b(text: str) -> int | None:
    """'512m', '2g', '1048576' -> bytes (binary prefixes, as compose reads them)."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2).lower()])


@dataclass
class Unit:
    """A started service: what the sampler needs to attribute resources to it."""

    service: str
    pid: int | None  # a process in the service's network namespace (containers) or its main process
    cgroup: UnitCgroup | None
    own_network: bool  # whether pid's network namespace is the service's own
    container: str | None = None


class Backend(ABC):
    kind: str

    def __init__(self, scenario: Scenario, token: str, record_log: LogSink) -> None:
        self.scenario = scenario
        self.token = token
        self.record_log = record_log
        self.warnings: list[str] = []
        self.run_id: int | None = None  # set once the run is stored: labels wattwise.run_id=<id>
        #: which database the run id belongs to (run ids repeat across databases): labels wattwise.store=<key>
        self.store_key: str | None = None

    @abstractmethod
    def describe(self) -> str:
        """One line for the run's settings, e.g. 'podman 4.3.1 (/usr/bin/podman)'."""

    @abstractmethod
    def install(self) -> None:
        """Build or pull what the services need ([INSTALLATION])."""

    def prepare(self) -> None:  # noqa: B027 - optional
        """Networks and volumes, before the first service starts ([BOOT])."""

    @abstractmethod
    def start(self, service: Service) -> Unit:
        """Start one service ([BOOT])."""

    @abstractmethod
    def exec_process(self, service: Service, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a command in a running service, stdout and stderr piped."""

    @abstractmethod
    def state(self, service: Service) -> tuple[bool, int | None]:
        """(running, exit code when it stopped)."""

    @abstractmethod
    def logs(self, service: Service) -> tuple[str, str]:
        """What the service's own process printed (stdout, stderr)."""

    def image_healthcheck(self, service: Service) -> Healthcheck | None:
        """The HEALTHCHECK of the service's image (containers only)."""
        return None

    @abstractmethod
    def cleanup(self) -> list[str]:
        """Remove everything this run created; returns problems (the run goes on). Idempotent."""

    def stop_process(self, process: subprocess.Popen[bytes]) -> None:
        """Stop a command started by exec_process (a detached flow or setup command)."""
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- containers ------------------------------------------------------------------------------------


class ContainerBackend(Backend):
    kind = "container"

    def __init__(self, scenario: Scenario, token: str, record_log: LogSink, engine: ContainerEngine) -> None:
        super().__init__(scenario, token, record_log)
        self.engine = engine
        self.prefix = f"wattwise-{token}"
        self.images: dict[str, str] = {}
        self.built: list[str] = []
        self.mounts = CgroupMounts.from_mountinfo()
        self.cache_build = False  # --dev-cache-build: stable tags, images kept for the next run
        self.no_build = False  # --dev-no-build: only images a cached build left

    @property
    def labels(self) -> dict[str, str]:
        """On every container, network, volume and image this run creates (`wattwise runs recover` finds
        leftovers of a killed run by wattwise.run_id)."""
        labels = {RUN_LABEL: self.token}
        if self.run_id is not None:
            labels[RUN_ID_LABEL] = str(self.run_id)
        if self.store_key is not None:
            labels[STORE_LABEL] = self.store_key  # run ids are per database: recovery should match both
            labels[OWNER_LABEL] = f"{socket.gethostname()}-{os.getpid()}"
        return labels

    def describe(self) -> str:
        return f"{self.engine.kind} {self.engine.version()} ({self.engine.binary})"

    def container_name(self, service: Service) -> str:
        return f"{self.prefix}-{service.name}"

    def network_name(self, network: str) -> str:
        return f"{self.prefix}-{network}"

    def _build_tag(self, service: Service) -> str:
        if self.cache_build:  # the same tag for the same scenario folder and service, run after run
            import hashlib

            digest = hashlib.sha256(str(self.scenario.path.resolve()).encode()).hexdigest()[:8]
            return f"localhost/wattwise-cache-{digest}-{service.name.lower()}:latest"
        return f"localhost/{self.prefix}-{service.name.lower()}:latest"

    def install(self) -> None:
        for service in self.scenario.services.values():
            if service.build is not None:
                tag = self._build_tag(service)
                if self.cache_build and self.engine.image_exists(tag):
                    self.record_log(f"{service.name} build", "stdout", f"reusing {tag} (--dev-cache-build)")
                    self.images[service.name] = tag
                    continue
                if self.no_build:
                    raise WattwiseError(
                        f"service {service.name}: --dev-no-build, but there is no image {tag} yet: "
                        "run once with --dev-cache-build"
                    )
                try:
                    done = self.engine.build(
                        tag,
                        service.build.context,
                        service.build.dockerfile,
                        service.build.args,
                        service.build.target,
                        self.labels,
                    )
                except EngineError as exc:
                    self.record_log(f"{service.name} build", "stderr", exc.output)
                    raise WattwiseError(f"service {service.name}: the image build failed: {exc}") from exc
                if not self.cache_build:
                    self.built.append(tag)
                self.record_log(f"{service.name} build", "stdout", done.stdout + done.stderr)
                self.images[service.name] = tag
            else:
                assert service.image is not None
                if not self.engine.image_exists(service.image):
                    try:
                        done = self.engine.pull(service.image)
                    except EngineError as exc:
                        raise WattwiseError(
                            f"service {service.name}: image {service.image} is not on this machine and "
                            f"pulling it failed: {exc}"
                        ) from exc
                    self.record_log(f"{service.name} pull", "stdout", done.stdout + done.stderr)
                self.images[service.name] = service.image

    def image_healthcheck(self, service: Service) -> Healthcheck | None:
        image = self.images.get(service.name) or service.image
        return self.engine.image_healthcheck(image) if image else None

    def _needs_default_network(self) -> bool:
        return any(not s.networks for s in self.scenario.services.values())

    def prepare(self) -> None:
        for network, options in self.scenario.networks.items():
            labels = dict(options.get("labels") or {})  # type: ignore[call-overload]
            labels.update(self.labels)
            self.engine.network_create(self.network_name(network), labels, bool(options.get("internal")))
        if self._needs_default_network() and DEFAULT_NETWORK not in self.scenario.networks:
            self.engine.network_create(self.network_name(DEFAULT_NETWORK), self.labels)
        for volume in self.scenario.volumes:
            self.engine.volume_create(self.network_name(volume), self.labels)

    def start(self, service: Service) -> Unit:
        name = self.container_name(service)
        networks = list(service.networks.items()) or [(DEFAULT_NETWORK, [])]
        base_aliases = list(dict.fromkeys([service.name, service.display_name]))
        first_network, first_aliases = networks[0]
        args = list(service.command or [])
        entrypoint = None
        if service.entrypoint is not None:
            entrypoint = service.entrypoint[0] if service.entrypoint else ""
            args = [*service.entrypoint[1:], *args]
        mounts = []
        root = (self.scenario.root or self.scenario.folder).resolve()
        mounts.append(f"{root}:{service.folder_destination}:ro")  # as GMT does: the repository, read-only
        for mount in service.volumes:
            source = mount.source if mount.kind == "bind" else self.network_name(mount.source)
            mounts.append(f"{source}:{mount.target}" + (":ro" if mount.read_only else ""))
        labels = dict(service.labels)
        labels.update(self.labels)
        labels[SERVICE_LABEL] = service.name
        spec = ContainerSpec(
            name=name,
            image=self.images[service.name],
            args=args,
            entrypoint=entrypoint,
            environment=service.environment,
            labels=labels,
            network=self.network_name(first_network),
            aliases=list(dict.fromkeys([*base_aliases, *first_aliases])),
            hostname=service.display_name,
            ports=service.ports,
            expose=service.expose,
            shm_size=service.shm_size,
            mounts=mounts,
            memory=service.mem_limit,
            cpus=service.cpus,
            init=service.init,
            extra_args=service.engine_args,
        )
        self.engine.create(spec)
        for network, aliases in networks[1:]:
            self.engine.network_connect(
                self.network_name(network), name, list(dict.fromkeys([*base_aliases, *aliases]))
            )
        self.engine.start(name)
        info = self.engine.inspect(name)
        state = info.get("State") or {}
        pid = int(state.get("Pid") or 0) or None
        if pid is None and state.get("ExitCode") == 0 and not self._is_used(service):
            self.warnings.append(f"service {service.name} ran to completion when it started (exit code 0)")
            return Unit(service.name, None, None, own_network=False, container=name)
        if pid is None:
            out, err = self.engine.logs(name)
            output = (out + err).strip().splitlines()[-20:]
            raise WattwiseError(
                f"service {service.name}: the container stopped right after it started "
                f"(exit code {state.get('ExitCode')})" + ("; its output:\n" + "\n".join(output) if output else "")
            )
        cgroup = None
        try:
            cgroup = UnitCgroup.of_pid(service.name, pid, self.mounts)
            if not cgroup.v1 and cgroup.v2 is None:
                cgroup = None
        except ProviderError as exc:
            self.warnings.append(f"service {service.name}: no cgroup found, its CPU is not attributed: {exc}")
        return Unit(service.name, pid, cgroup, own_network=True, container=name)

    def _is_used(self, service: Service) -> bool:
        """Whether anything runs in the service after it started (so it must keep running)."""
        if service.setup_commands or service.healthcheck is not None:
            return True
        return any(step.service == service.name for step in self.scenario.flow)

    def exec_process(self, service: Service, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.engine.exec_command(self.container_name(service), argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def state(self, service: Service) -> tuple[bool, int | None]:
        try:
            info = self.engine.inspect(self.container_name(service))
        except EngineError:
            return False, None
        state = info.get("State") or {}
        running = bool(state.get("Running"))
        return running, None if running else state.get("ExitCode")

    def logs(self, service: Service) -> tuple[str, str]:
        out, err = self.engine.logs(self.container_name(service))
        return out.replace("\r\n", "\n"), err.replace("\r\n", "\n")  # a tty ends lines with CRLF

    def cleanup(self) -> list[str]:
        problems = []
        label = f"{RUN_LABEL}={self.token}"
        for what, listing, remove in (
            ("containers", self.engine.containers, self.engine.remove_containers),
            ("networks", self.engine.networks, self.engine.remove_networks),
            ("volumes", self.engine.volumes, self.engine.remove_volumes),
        ):
            try:
                names = listing(label)
                failure = remove(names)
                if failure:
                    problems.append(f"removing {what} {', '.join(names)} failed: {failure}")
            except WattwiseError as exc:
                problems.append(f"removing {what} failed: {exc}")
        if self.built:
            self.engine.remove_images(self.built)
            self.built = []
        return problems


# --- host processes --------------------------------------------------------------------------------


class HostBackend(Backend):
    """Services are host processes (or just a cgroup when they have no command of their own); commands run
    on the host with the scenario's folder as working directory and the service's environment."""

    kind = "host"

    def __init__(self, scenario: Scenario, token: str, record_log: LogSink) -> None:
        super().__init__(scenario, token, record_log)
        self.cgroups: dict[str, CreatedCgroup] = {}
        self.main: dict[str, RunningCommand] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    def describe(self) -> str:
        return "host processes, one cgroup per service"

    def install(self) -> None:
        return None

    def start(self, service: Service) -> Unit:
        created = None
        try:
            created = create_unit_cgroup(service.name, f"scenario-{self.token}-{service.name}")
            self.cgroups[service.name] = created
        except ProviderError as exc:
            self.warnings.append(
                f"service {service.name}: no cgroup of its own, its CPU and memory are not attributed: {exc}"
            )
        if created is not None and service.mem_limit:
            self._limit_memory(service, created)
        pid = None
        argv = [*(service.entrypoint or []), *(service.command or [])]
        if argv:
            from wattwise.measure.clock import Clock

            process = self.exec_process(service, argv)
            self.main[service.name] = RunningCommand.start(process, Clock().now_us(), " ".join(argv))
            pid = process.pid
        return Unit(service.name, pid, created.unit if created else None, own_network=False)

    def _limit_memory(self, service: Service, created: CreatedCgroup) -> None:
        limit = parse_size_b(service.mem_limit or "")
        targets = []
        if "memory" in created.unit.v1:
            targets.append(created.unit.v1["memory"] / "memory.limit_in_bytes")
        elif created.unit.v2 is not None:
            targets.append(created.unit.v2 / "memory.max")
        for target in targets:
            try:
                target.write_text(str(limit))
            except OSError as exc:
                self.warnings.append(f"service {service.name}: mem_limit not applied ({target}: {exc.strerror})")

    def exec_process(self, service: Service, argv: list[str]) -> subprocess.Popen[bytes]:
        created = self.cgroups.get(service.name)
        procs = [str(p) for p in created.procs_files] if created else []

        def enter_cgroup() -> None:  # in the child, between fork and exec
            pid = str(os.getpid())
            for path in procs:
                with open(path, "w") as handle:
                    handle.write(pid)

        env = dict(os.environ)
        env.update(service.environment)
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                cwd=self.scenario.folder,
                env=env,
                preexec_fn=enter_cgroup if procs else None,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise WattwiseError(f"service {service.name}: command not found: {argv[0]}") from exc
        except PermissionError as exc:
            raise WattwiseError(f"service {service.name}: cannot run {argv[0]}: {exc.strerror}") from exc
        self.processes.append(process)
        return process

    def stop_process(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    def state(self, service: Service) -> tuple[bool, int | None]:
        running = self.main.get(service.name)
        if running is None:
            return True, None  # a service without a command of its own is just its cgroup
        code = running.process.poll()
        return code is None, code

    def logs(self, service: Service) -> tuple[str, str]:
        running = self.main.get(service.name)
        if running is None:
            return "", ""
        if running.process.poll() is None:
            return running.stdout.text, running.stderr.text
        running.finish(2)
        return running.stdout.text, running.stderr.text

    def cleanup(self) -> list[str]:
        problems = []
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for created in self.cgroups.values():
            created.kill_all()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"process {process.pid} did not end after SIGKILL")
        for running in self.main.values():
            running.finish(2)
        for name, created in list(self.cgroups.items()):
            for _ in range(50):
                created.kill_all()
                created.remove()
                if not created.unit.exists():
                    break
                time.sleep(0.05)
            else:
                left = [str(p) for p in _dirs(created) if p.exists()]
                problems.append(f"service {name}: cgroup not removed: {', '.join(left)}")
            del self.cgroups[name]
        return problems


def _dirs(created: CreatedCgroup) -> list[Path]:
    return [*created.unit.v1.values(), *([created.unit.v2] if created.unit.v2 else [])]
