"""The container engine, driven through its Docker-compatible command line (podman or docker).

Every call is an argument list (never a shell string). The engine is found as follows:
`WATTWISE_CONTAINER_ENGINE` (podman, docker or a path to either) if set, else podman on PATH, else docker.
Extra global arguments come from `WATTWISE_PODMAN_ARGS` / `WATTWISE_DOCKER_ARGS` (split like a shell
would), e.g. `WATTWISE_PODMAN_ARGS="--runtime runc --cgroup-manager cgroupfs"`.

Everything wattwise creates carries the label `io.wattwise.run=<token>`, so that a run's containers,
networks and volumes can be found and removed even after a failure half way through.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.errors import EngineError as EngineError
from wattwise.errors import WattwiseError
from wattwise.measure.scenario.model import Healthcheck

ENV_ENGINE = "WATTWISE_CONTAINER_ENGINE"
ENV_ARGS = {"podman": "WATTWISE_PODMAN_ARGS", "docker": "WATTWISE_DOCKER_ARGS"}
RUN_LABEL = "io.wattwise.run"
RUN_ID_LABEL = "wattwise.run_id"  # the stored run's id: `wattwise runs recover` removes leftovers by it
STORE_LABEL = "wattwise.store"  # the first 12 hex digits of SHA-256(database URL): run ids repeat across databases
OWNER_LABEL = "wattwise.owner"  # <host>-<pid> of the process that ran it
SERVICE_LABEL = "io.wattwise.service"
DEFAULT_TIMEOUT_S = 120.0
BUILD_TIMEOUT_S = 3600.0


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class ContainerSpec:
    """What `create` needs; the runner fills it from a service."""

    name: str
    image: str
    args: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    aliases: list[str] = field(default_factory=list)
    hostname: str | None = None
    ports: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    shm_size: str | None = None
    mounts: list[str] = field(default_factory=list)  # -v values
    memory: str | None = None
    cpus: str | None = None
    init: bool = False
    tty: bool = True  # like GMT's `run -it -d`: an image whose command is a shell keeps running
    extra_args: list[str] = field(default_factory=list)  # docker-run-args, passed as they are


def healthcheck_from_inspect(check: Any) -> Healthcheck | None:
    """An engine's healthcheck JSON (Test, Interval, Timeout, Retries, StartPeriod; durations in ns)."""
    if not isinstance(check, dict):
        return None
    test = check.get("Test") or []
    if not isinstance(test, list) or not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL" and len(test) >= 2:
        argv = ["/bin/sh", "-c", " ".join(str(t) for t in test[1:])]
    elif test[0] == "CMD" and len(test) >= 2:
        argv = [str(t) for t in test[1:]]
    else:
        return None
    result = Healthcheck(argv)

    def seconds(key: str) -> float | None:
        value = check.get(key)
        return value / 1e9 if isinstance(value, int | float) and value > 0 else None

    result.interval_s = seconds("Interval") or result.interval_s
    result.timeout_s = seconds("Timeout") or result.timeout_s
    result.start_period_s = seconds("StartPeriod") or result.start_period_s
    retries = check.get("Retries")
    if isinstance(retries, int) and retries > 0:
        result.retries = retries
    return result


def _hint(stderr: str) -> str:
    text = stderr.lower()
    if "rlimit" in text:
        return (
            " (hint: the engine cannot set the default ulimits here: add `default_ulimits = []` under "
            "[containers] in containers.conf, as scripts/services.d/podman.sh does)"
        )
    if "cannot connect to the docker daemon" in text:
        return " (hint: the docker daemon is not running; podman needs no daemon)"
    return ""


class ContainerEngine:
    def __init__(self, binary: str, kind: str, global_args: list[str] | None = None) -> None:
        self.binary = binary
        self.kind = kind  # "podman" | "docker"
        self.global_args = list(global_args or [])

    def __repr__(self) -> str:
        return f"ContainerEngine({self.kind} at {self.binary})"

    # --- finding it --------------------------------------------------------------------------------
    @classmethod
    def detect(cls, preferred: str | None = None) -> ContainerEngine:
        """The engine to use: `preferred` (podman, docker or a path), else $WATTWISE_CONTAINER_ENGINE,
        else podman, else docker. Raises WattwiseError when none is installed."""
        wanted = preferred or os.environ.get(ENV_ENGINE) or ""
        candidates = [wanted] if wanted else ["podman", "docker"]
        for candidate in candidates:
            binary = shutil.which(candidate)
            if binary is None:
                continue
            name = Path(binary).name
            kind = "docker" if "docker" in name else "podman"
            args = shlex.split(os.environ.get(ENV_ARGS[kind], ""))
            return cls(binary, kind, args)
        if wanted:
            raise WattwiseError(f"container engine {wanted!r} not found on PATH ({ENV_ENGINE} or --engine)")
        raise WattwiseError(
            "no container engine found: install podman (Debian: apt-get install podman runc) or docker, "
            "or run scenarios without images on the host backend (--backend host)"
        )

    # --- running the CLI ---------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        return [self.binary, *self.global_args, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float | None = DEFAULT_TIMEOUT_S, what: str = ""
    ) -> Completed:
        argv = self.command(*args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EngineError(
                f"{what or ' '.join(args[:2])}: `{self.kind} {args[0]}` timed out after {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise EngineError(f"cannot run {self.binary}: {exc.strerror}") from exc
        result = Completed(argv, done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
            raise EngineError(
                f"{what or self.kind + ' ' + args[0]} failed (exit {done.returncode}): "
                + " / ".join(detail)
                + _hint(done.stderr),
                done.stdout + done.stderr,
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )

    def version(self) -> str:
        """The engine's version; raises EngineError when the engine does not work (e.g. no docker daemon)."""
        done = self.run("version", "--format", "{{.Client.Version}}", check=False, timeout=30)
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
            raise EngineError(
                f"the container engine {self.binary} does not work: " + " / ".join(detail) + _hint(done.stderr)
            )
        return done.stdout.strip() or "unknown"

    # --- images ------------------------------------------------------------------------------------
    def image_exists(self, ref: str) -> bool:
        if self.kind == "podman":
            return self.run("image", "exists", ref, check=False, timeout=60).returncode == 0
        return self.run("image", "inspect", ref, check=False, timeout=60).returncode == 0

    def pull(self, ref: str) -> Completed:
        return self.run("pull", ref, timeout=BUILD_TIMEOUT_S, what=f"pulling image {ref}")

    def build(
        self,
        tag: str,
        context: Path,
        dockerfile: str | None,
        build_args: dict[str, str],
        target: str | None,
        labels: dict[str, str],
    ) -> Completed:
        args = ["build", "-t", tag]
        if self.kind == "podman":
            args += ["--format", "docker"]  # OCI images drop HEALTHCHECK; docker-format images keep it
        if dockerfile:
            args += ["-f", str(context / dockerfile)]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        if target:
            args += ["--target", target]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        args.append(str(context))
        return self.run(*args, timeout=BUILD_TIMEOUT_S, what=f"building {tag}")

    def image_healthcheck(self, ref: str) -> Healthcheck | None:
        """The image's HEALTHCHECK (`Config.Healthcheck` of `image inspect`), None when it has none."""
        done = self.run("image", "inspect", ref, check=False, timeout=60)
        if done.returncode != 0:
            return None
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError:
            return None
        info = data[0] if isinstance(data, list) and data else data
        if not isinstance(info, dict):
            return None
        config = info.get("Config") or {}
        check = config.get("Healthcheck") or info.get("HealthCheck") or info.get("Healthcheck")
        return healthcheck_from_inspect(check)

    def remove_images(self, refs: list[str]) -> None:
        if refs:
            self.run("rmi", "-f", *refs, check=False, timeout=120)

    # --- networks and volumes ----------------------------------------------------------------------
    def network_create(self, name: str, labels: dict[str, str], internal: bool = False) -> None:
        args = ["network", "create"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        if internal:
            args.append("--internal")
        self.run(*args, name, what=f"creating network {name}")

    def network_connect(self, network: str, container: str, aliases: list[str]) -> None:
        args = ["network", "connect"]
        for alias in aliases:
            args += ["--alias", alias]
        self.run(*args, network, container, what=f"connecting {container} to network {network}")

    def networks(self, label: str) -> list[str]:
        done = self.run("network", "ls", "--filter", f"label={label}", "--format", "{{.Name}}", check=False)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def remove_networks(self, names: list[str]) -> str | None:
        if not names:
            return None
        done = self.run("network", "rm", *names, check=False)
        return None if done.returncode == 0 else done.stderr.strip()

    def volume_create(self, name: str, labels: dict[str, str]) -> None:
        args = ["volume", "create"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        self.run(*args, name, what=f"creating volume {name}")

    def volumes(self, label: str) -> list[str]:
        done = self.run("volume", "ls", "--filter", f"label={label}", "--format", "{{.Name}}", check=False)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def remove_volumes(self, names: list[str]) -> str | None:
        if not names:
            return None
        done = self.run("volume", "rm", "-f", *names, check=False)
        return None if done.returncode == 0 else done.stderr.strip()

    # --- containers --------------------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> str:
        args = ["create", "--name", spec.name]
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        for key, value in spec.environment.items():
            args += ["--env", f"{key}={value}"]
        if spec.network:
            args += ["--network", spec.network]
            for alias in spec.aliases:
                args += ["--network-alias", alias]
        if spec.hostname:
            args += ["--hostname", spec.hostname]
        for port in spec.ports:
            args += ["--publish", port]
        for port in spec.expose:
            args += ["--expose", port]
        if spec.shm_size:
            args += ["--shm-size", spec.shm_size]
        for mount in spec.mounts:
            args += ["--volume", mount]
        if spec.memory:
            args += ["--memory", spec.memory]
        if spec.cpus:
            args += ["--cpus", spec.cpus]
        if spec.init:
            args.append("--init")
        if spec.tty:
            args += ["--interactive", "--tty"]
        args += spec.extra_args
        if spec.entrypoint is not None:
            args += ["--entrypoint", spec.entrypoint]
        args += [spec.image, *spec.args]
        done = self.run(*args, what=f"creating container {spec.name}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else spec.name

    def start(self, name: str) -> None:
        self.run("start", name, what=f"starting container {name}")

    def inspect(self, name: str) -> dict[str, Any]:
        done = self.run("inspect", "--type", "container", name, what=f"inspecting container {name}")
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise EngineError(f"{self.kind} inspect {name}: output is not JSON: {exc}") from exc
        if isinstance(data, list):
            if not data:
                raise EngineError(f"{self.kind} inspect {name}: no such container")
            data = data[0]
        return data

    def exec_command(self, container: str, argv: list[str]) -> list[str]:
        return self.command("exec", container, *argv)

    def logs(self, name: str) -> tuple[str, str]:
        done = self.run("logs", name, check=False, timeout=60)
        return done.stdout, done.stderr

    def containers(self, label: str) -> list[str]:
        done = self.run("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}", check=False)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def remove_containers(self, names: list[str]) -> str | None:
        if not names:
            return None
        args = ["rm", "-f"]
        if self.kind == "podman":
            args += ["--time", "0"]
        done = self.run(*args, *names, check=False, timeout=120)
        return None if done.returncode == 0 else done.stderr.strip()
