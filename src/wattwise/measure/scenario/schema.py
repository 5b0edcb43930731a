"""Checking a usage scenario and turning it into the dataclasses of `model`.

Every problem is collected (not only the first) with the file, line and key path it is about. Unknown
keys are errors unless the scenario sets `ignore-unsupported-compose: true`, in which case they are
warnings. Keys starting with `x-` are compose extension fields and are ignored; `x-wattwise` holds this
tool's own settings (`backend: host|container`).

Safety checks (host ports, host paths outside the scenario folder, unusual environment names, values
taken from the host environment) are errors unless `allow_unsafe` is set.
"""

from __future__ import annotations

import difflib
import re
import shlex
from pathlib import Path
from typing import Any

from wattwise.measure.scenario.model import (
    BuildSpec,
    CustomMetric,
    FlowCommand,
    FlowStep,
    Healthcheck,
    Scenario,
    Service,
    ShellCommand,
    VolumeMount,
)
from wattwise.measure.scenario.problems import KeyPath, Problem, ScenarioError, format_path
from wattwise.measure.scenario.source import Document, load_document

TOP_KEYS = {
    "name",
    "author",
    "description",
    "flow",
    "services",
    "networks",
    "volumes",
    "custom_metrics",
    "ignore-unsupported-compose",
    "architecture",
    "version",
    "sci",
    "x-wattwise",
}
TOP_REQUIRED = ("name", "author", "description", "flow")
SERVICE_KEYS = {
    "image",
    "build",
    "container_name",
    "environment",
    "labels",
    "ports",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "command",
    "entrypoint",
    "setup-commands",
    "mem_limit",
    "cpus",
    "deploy",
    "init",
    "log-stdout",
    "log-stderr",
    "read-notes-stdout",
    "read-sci-stdout",
    "docker-run-args",
}
HOST_UNSUPPORTED = (
    "docker-run-args",
    "image",
    "build",
    "container_name",
    "ports",
    "volumes",
    "networks",
    "labels",
    "init",
    "cpus",
)
BUILD_KEYS = {"context", "dockerfile", "args", "target"}
HEALTH_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
SETUP_KEYS = {"command", "detach", "shell", "shell-options"}
STEP_KEYS = {"name", "container", "hidden", "commands"}
COMMAND_KEYS = {
    "type",
    "command",
    "note",
    "detach",
    "shell",
    "shell-options",
    "read-notes-stdout",
    "read-sci-stdout",
    "ignore-errors",
    "log-stdout",
    "log-stderr",
}
CUSTOM_METRIC_KEYS = {"unit", "regex", "sci"}
NETWORK_KEYS = {"driver", "internal", "labels"}
VOLUME_KEYS = {"driver", "labels"}
DEPENDS_KEYS = {"condition"}
CONDITIONS = ("service_started", "service_healthy")
WATTWISE_KEYS = {"backend"}
BACKENDS = ("container", "host")

SERVICE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IMAGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@+-]*$")
PROGRAM_RE = re.compile(r"^[a-zA-Z0-9_./+-]+$")
METRIC_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")
SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*([bkmgt]i?b?)?$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)")
_DURATION_FACTORS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{value!r}"


def parse_compose_duration(text: str) -> float | None:
    """'1m30s', '500ms', '10s', '2h' -> seconds; None if not a duration."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


class _Checker:
    def __init__(self, document: Document, allow_unsafe: bool, backend: str) -> None:
        self.doc = document
        self.allow_unsafe = allow_unsafe
        self.backend_choice = backend
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.ignore_unsupported = False
        self.folder = document.path.resolve().parent
        self.dependency_paths: dict[tuple[str, str], KeyPath] = {}

    # --- reporting -------------------------------------------------------------------------------
    def err(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.doc.location(path), path, message))

    def unknown(self, path: KeyPath, allowed: set[str], where: str) -> None:
        key = str(path[-1])
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if self.ignore_unsupported:
            location = self.doc.location(path)
            prefix = f"{location}: " if location else ""
            self.warnings.append(
                f"{prefix}{format_path(path)}: {where} key {key!r} is not supported and is ignored"
                " (ignore-unsupported-compose)"
            )
        else:
            self.err(
                path,
                f"unknown or unsupported {where} key{hint}; set ignore-unsupported-compose: true to ignore such keys",
            )

    # --- shapes ----------------------------------------------------------------------------------
    def mapping(
        self,
        path: KeyPath,
        value: Any,
        allowed: set[str] | None,
        required: tuple[str, ...] = (),
        where: str = "",
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, got {describe(value)}")
            return None
        if allowed is not None:
            for key in value:
                if isinstance(key, str) and key.startswith("x-") and key != "x-wattwise":
                    continue
                if key not in allowed:
                    self.unknown((*path, key), allowed, where)
        for key in required:
            if key not in value:
                self.err(path, f"missing required key {key!r}")
        return value

    def text(self, path: KeyPath, value: Any, *, numbers: bool = False, empty: bool = False) -> str | None:
        if isinstance(value, str):
            if not empty and not value.strip():
                self.err(path, "must not be empty")
                return None
            return value
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        hint = " (YAML reads unquoted yes, no, on, off, true and false as booleans: quote the text)"
        self.err(path, f"must be text, got {describe(value)}" + (hint if isinstance(value, bool) else ""))
        return None

    def boolean(self, path: KeyPath, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        self.err(path, f"must be true or false, got {describe(value)}")
        return False

    def duration(self, path: KeyPath, value: Any) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str):
            seconds = parse_compose_duration(value)
            if seconds is not None:
                return seconds
        self.err(path, f"must be a duration like 500ms, 10s or 1m30s, got {describe(value)}")
        return None

    def integer(self, path: KeyPath, value: Any, minimum: int = 0) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        self.err(path, f"must be a whole number of at least {minimum}, got {describe(value)}")
        return None

    def program(self, path: KeyPath, value: Any) -> str | None:
        name = self.text(path, value)
        if name is not None and not PROGRAM_RE.match(name):
            self.err(path, f"must be a program name or path such as sh or /bin/bash, got {name!r}")
            return None
        return name

    def string_list(self, path: KeyPath, value: Any) -> list[str]:
        if not isinstance(value, list):
            self.err(path, f"must be a list, got {describe(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            text = self.text((*path, index), item, numbers=True, empty=True)
            if text is not None:
                out.append(text)
        return out

    def argv(self, path: KeyPath, value: Any) -> list[str] | None:
        """Compose `command`/`entrypoint`: a string (split like a shell would, no shell run) or a list."""
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                self.err(path, f"cannot split into arguments: {exc}")
                return None
        if isinstance(value, list):
            return self.string_list(path, value)
        self.err(path, f"must be text or a list of arguments, got {describe(value)}")
        return None

    def key_values(self, path: KeyPath, value: Any, *, environment: bool) -> dict[str, str]:
        """A mapping or a list of KEY=VALUE strings."""
        pairs: list[tuple[KeyPath, str, Any]] = []
        if isinstance(value, dict):
            pairs = [((*path, key), str(key), item) for key, item in value.items()]
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    self.err((*path, index), f"must be KEY=VALUE text, got {describe(item)}")
                    continue
                key, sep, rest = item.partition("=")
                pairs.append(((*path, index), key, rest if sep else None))
        else:
            self.err(path, f"must be a mapping or a list of KEY=VALUE, got {describe(value)}")
            return {}
        out: dict[str, str] = {}
        for item_path, key, item in pairs:
            if environment and not ENV_KEY_RE.match(key) and not self.allow_unsafe:
                self.err(
                    item_path,
                    f"environment variable name {key!r} is not allowed (letters, digits and _, not "
                    "starting with a digit); --allow-unsafe accepts it",
                )
                continue
            if item is None:
                if environment and not self.allow_unsafe:
                    self.err(
                        item_path,
                        f"{key} has no value, so it would be taken from the host's environment; "
                        "give a value or run with --allow-unsafe",
                    )
                    continue
                import os

                out[key] = os.environ.get(key, "") if environment else ""
            elif isinstance(item, bool):
                out[key] = "true" if item else "false"
            elif isinstance(item, str | int | float):
                if isinstance(item, str) and "\x00" in item:
                    self.err(item_path, "must not contain NUL characters")
                    continue
                out[key] = str(item)
            else:
                self.err(item_path, f"must be text or a number, got {describe(item)}")
        return out

    def inside_folder(self, path: KeyPath, raw: str, what: str) -> Path:
        resolved = (self.folder / Path(raw).expanduser()).resolve()
        if not resolved.is_relative_to(self.folder) and not self.allow_unsafe:
            self.err(
                path,
                f"{what} {raw!r} is outside the scenario's folder; only --allow-unsafe permits host paths outside it",
            )
        return resolved

    # --- the scenario ------------------------------------------------------------------------------
    def scenario(self) -> Scenario | None:
        root = self.doc.value
        if not isinstance(root, dict):
            self.err((), f"the file must be a mapping of keys (name, flow, services, ...), got {describe(root)}")
            return None
        ignore = root.get("ignore-unsupported-compose", False)
        self.ignore_unsupported = self.boolean(("ignore-unsupported-compose",), ignore)
        self.mapping((), root, TOP_KEYS, TOP_REQUIRED, where="top-level")
        name = self.text(("name",), root["name"]) if "name" in root else None
        author = self.text(("author",), root["author"]) if "author" in root else None
        description = self.text(("description",), root["description"]) if "description" in root else None
        backend = self.backend(root)
        architecture = None
        if "architecture" in root:
            architecture = self.text(("architecture",), root["architecture"])
        version = self.text(("version",), root["version"], numbers=True) if "version" in root else None
        networks = self.networks(root.get("networks"), backend) if "networks" in root else {}
        volumes = self.volumes(root.get("volumes"), backend) if "volumes" in root else []
        services: dict[str, Service] = {}
        if "services" in root:
            raw_services = self.mapping(("services",), root["services"], None)
            for key, spec in (raw_services or {}).items():
                service = self.service(str(key), spec, backend, networks, volumes)
                if service is not None:
                    services[str(key)] = service
            self.service_links(services)
        metrics = self.custom_metrics(root.get("custom_metrics")) if "custom_metrics" in root else {}
        sci = self.legacy_sci(root.get("sci")) if "sci" in root else None
        flow = self.flow(root["flow"], services) if "flow" in root else []
        if self.problems:
            return None
        assert name is not None and author is not None and description is not None
        return Scenario(
            path=self.doc.path,
            text=self.doc.text,
            name=name,
            author=author,
            description=description,
            flow=flow,
            services=services,
            networks=networks,
            volumes=volumes,
            custom_metrics=metrics,
            sci=sci,
            backend=backend,
            architecture=architecture,
            version=version,
            warnings=self.warnings,
            files=self.doc.files,
        )

    def backend(self, root: dict[str, Any]) -> str:
        chosen = "container"
        if "x-wattwise" in root:
            settings = self.mapping(("x-wattwise",), root["x-wattwise"], WATTWISE_KEYS, where="x-wattwise")
            if settings and "backend" in settings:
                value = settings["backend"]
                if value in BACKENDS:
                    chosen = value
                else:
                    self.err(
                        ("x-wattwise", "backend"),
                        f"must be one of {', '.join(BACKENDS)}, got {describe(value)}",
                    )
        if self.backend_choice in BACKENDS:
            chosen = self.backend_choice
        return chosen

    def networks(self, value: Any, backend: str) -> dict[str, dict[str, object]]:
        path: KeyPath = ("networks",)
        if backend == "host":
            self.err(path, "the host backend runs services as host processes: it has no networks")
            return {}
        out: dict[str, dict[str, object]] = {}
        if isinstance(value, list):  # legacy: a list of names
            for index, item in enumerate(value):
                name = self.text((*path, index), item)
                if name is not None:
                    out[name] = {}
            return out
        if value is None:
            return out
        raw = self.mapping(path, value, None)
        for name, spec in (raw or {}).items():
            item_path = (*path, name)
            if not SERVICE_NAME_RE.match(str(name)):
                self.err(item_path, "network names use letters, digits, '_', '.' and '-'")
            if spec is None:
                out[str(name)] = {}
                continue
            checked = self.mapping(item_path, spec, NETWORK_KEYS, where="network")
            if checked is None:
                continue
            options: dict[str, object] = {}
            if "internal" in checked:
                options["internal"] = self.boolean((*item_path, "internal"), checked["internal"])
            if "driver" in checked:
                driver = self.text((*item_path, "driver"), checked["driver"])
                if driver is not None and driver != "bridge":
                    self.err((*item_path, "driver"), f"only the bridge driver is supported, got {driver!r}")
            if "labels" in checked:
                options["labels"] = self.key_values((*item_path, "labels"), checked["labels"], environment=False)
            out[str(name)] = options
        return out

    def volumes(self, value: Any, backend: str) -> list[str]:
        path: KeyPath = ("volumes",)
        if backend == "host":
            self.err(path, "the host backend runs services as host processes: it has no volumes")
            return []
        if value is None:
            return []
        raw = self.mapping(path, value, None)
        out = []
        for name, spec in (raw or {}).items():
            if not SERVICE_NAME_RE.match(str(name)):
                self.err((*path, name), "volume names use letters, digits, '_', '.' and '-'")
            if spec is not None:
                self.mapping((*path, name), spec, VOLUME_KEYS, where="volume")
            out.append(str(name))
        return out

    # --- services ----------------------------------------------------------------------------------
    def service(
        self, name: str, spec: Any, backend: str, networks: dict[str, Any], volumes: list[str]
    ) -> Service | None:
        path: KeyPath = ("services", name)
        if not SERVICE_NAME_RE.match(name):
            self.err(path, "service names use letters, digits, '_', '.' and '-', starting with a letter or digit")
        raw = self.mapping(path, spec, SERVICE_KEYS, where="service")
        if raw is None:
            return None
        service = Service(name=name)
        if backend == "host":
            for key in HOST_UNSUPPORTED:
                if key in raw:
                    self.err(
                        (*path, key),
                        "not supported by the host backend (services run as host processes in their own cgroup)",
                    )
        elif "image" not in raw and "build" not in raw:
            self.err(
                path,
                "needs 'image' or 'build' (a scenario without images runs on the host backend: "
                "set x-wattwise: {backend: host})",
            )
        if "image" in raw:
            image = self.text((*path, "image"), raw["image"])
            if image is not None and not IMAGE_RE.match(image):
                self.err((*path, "image"), f"{image!r} is not an image reference")
            service.image = image
        if "build" in raw:
            service.build = self.build((*path, "build"), raw["build"])
        if "container_name" in raw:
            container = self.text((*path, "container_name"), raw["container_name"])
            if container is not None and not SERVICE_NAME_RE.match(container):
                self.err((*path, "container_name"), "container names use letters, digits, '_', '.' and '-'")
            service.container_name = container
        if "environment" in raw:
            service.environment = self.key_values((*path, "environment"), raw["environment"], environment=True)
        if "labels" in raw:
            service.labels = self.key_values((*path, "labels"), raw["labels"], environment=False)
        if "ports" in raw:
            service.ports = self.string_list((*path, "ports"), raw["ports"])
            if service.ports and not self.allow_unsafe and backend != "host":
                self.err(
                    (*path, "ports"),
                    "publishing ports on the host is not allowed by default (containers reach each other "
                    "by service name); run with --allow-unsafe to publish them",
                )
        if "volumes" in raw:
            service.volumes = self.mounts((*path, "volumes"), raw["volumes"], volumes)
        if "networks" in raw:
            service.networks = self.service_networks((*path, "networks"), raw["networks"], networks)
        if "depends_on" in raw:
            service.depends_on = self.depends_on((*path, "depends_on"), raw["depends_on"])
        if "healthcheck" in raw:
            service.healthcheck = self.healthcheck((*path, "healthcheck"), raw["healthcheck"])
        if "command" in raw:
            service.command = self.argv((*path, "command"), raw["command"])
        if "entrypoint" in raw:
            service.entrypoint = self.argv((*path, "entrypoint"), raw["entrypoint"])
        if "setup-commands" in raw:
            service.setup_commands = self.setup_commands((*path, "setup-commands"), raw["setup-commands"])
        if "mem_limit" in raw:
            service.mem_limit = self.size((*path, "mem_limit"), raw["mem_limit"])
        if "cpus" in raw:
            service.cpus = self.cpus((*path, "cpus"), raw["cpus"])
        if "deploy" in raw:
            self.deploy((*path, "deploy"), raw["deploy"], service)
        if "docker-run-args" in raw:
            service.engine_args = self.engine_args((*path, "docker-run-args"), raw["docker-run-args"])
        for key, attribute in (
            ("init", "init"),
            ("log-stdout", "log_stdout"),
            ("log-stderr", "log_stderr"),
            ("read-notes-stdout", "read_notes_stdout"),
            ("read-sci-stdout", "read_sci_stdout"),
        ):
            if key in raw:
                setattr(service, attribute, self.boolean((*path, key), raw[key]))
        return service

    def engine_args(self, path: KeyPath, value: Any) -> list[str]:
        """GMT's docker-run-args: options handed to the engine's create command as they are."""
        items = self.string_list(path, value)
        if items and not self.allow_unsafe:
            self.err(path, "passes options to the container engine unchecked; only --allow-unsafe permits it")
            return []
        args: list[str] = []
        for index, item in enumerate(items):
            try:
                args.extend(shlex.split(item))
            except ValueError as exc:
                self.err((*path, index), f"cannot split into arguments: {exc}")
        return args

    def build(self, path: KeyPath, value: Any) -> BuildSpec | None:
        if isinstance(value, str):
            return BuildSpec(self.inside_folder(path, value, "build context"))
        raw = self.mapping(path, value, BUILD_KEYS, where="build")
        if raw is None:
            return None
        context = self.text((*path, "context"), raw.get("context", "."))
        spec = BuildSpec(self.inside_folder((*path, "context"), context or ".", "build context"))
        if "dockerfile" in raw:
            dockerfile = self.text((*path, "dockerfile"), raw["dockerfile"])
            if dockerfile is not None:
                self.inside_folder((*path, "dockerfile"), str(Path(context or ".") / dockerfile), "dockerfile")
            spec.dockerfile = dockerfile
        if "args" in raw:
            spec.args = self.key_values((*path, "args"), raw["args"], environment=False)
        if "target" in raw:
            spec.target = self.text((*path, "target"), raw["target"])
        return spec

    def mounts(self, path: KeyPath, value: Any, declared: list[str]) -> list[VolumeMount]:
        if not isinstance(value, list):
            self.err(path, f"must be a list, got {describe(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            item_path = (*path, index)
            if isinstance(item, dict):
                raw = self.mapping(item_path, item, {"type", "source", "target", "read_only"}, ("target",), "volume")
                if raw is None:
                    continue
                kind = raw.get("type", "volume")
                if kind not in ("bind", "volume"):
                    self.err((*item_path, "type"), f"must be bind or volume, got {describe(kind)}")
                    continue
                source = self.text((*item_path, "source"), raw.get("source"))
                target = self.text((*item_path, "target"), raw.get("target"))
                read_only = self.boolean((*item_path, "read_only"), raw.get("read_only", False))
            elif isinstance(item, str):
                parts = item.split(":")
                if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
                    self.err(item_path, f"must be SOURCE:TARGET or SOURCE:TARGET:ro, got {item!r}")
                    continue
                source, target = parts[0], parts[1]
                mode = parts[2] if len(parts) == 3 else "rw"
                if not set(mode.split(",")) <= {"ro", "rw", "z", "Z"}:
                    self.err(item_path, f"mode must be ro or rw, got {mode!r}")
                    continue
                read_only = "ro" in mode.split(",")
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            else:
                self.err(item_path, f"must be SOURCE:TARGET text or a mapping, got {describe(item)}")
                continue
            if source is None or target is None:
                continue
            if not target.startswith("/"):
                self.err(item_path, f"the target {target!r} must be an absolute path in the container")
                continue
            if kind == "bind":
                resolved = self.inside_folder(item_path, source, "the host path")
                out.append(VolumeMount("bind", str(resolved), target, read_only))
            else:
                if source not in declared:
                    self.err(item_path, f"volume {source!r} is not declared under the top-level volumes key")
                    continue
                out.append(VolumeMount("volume", source, target, read_only))
        return out

    def service_networks(self, path: KeyPath, value: Any, declared: dict[str, Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        items: list[tuple[KeyPath, Any, Any]] = []
        if isinstance(value, list):
            items = [((*path, index), name, None) for index, name in enumerate(value)]
        elif isinstance(value, dict):
            items = [((*path, name), name, spec) for name, spec in value.items()]
        else:
            self.err(path, f"must be a list of network names or a mapping, got {describe(value)}")
            return out
        for item_path, name, spec in items:
            text = self.text(item_path, name)
            if text is None:
                continue
            if text not in declared:
                self.err(item_path, f"network {text!r} is not declared under the top-level networks key")
                continue
            aliases: list[str] = []
            if spec is not None:
                raw = self.mapping(item_path, spec, {"aliases"}, where="service network")
                if raw and "aliases" in raw:
                    aliases = self.string_list((*item_path, "aliases"), raw["aliases"])
                    for index, alias in enumerate(aliases):
                        if not SERVICE_NAME_RE.match(alias):
                            self.err((*item_path, "aliases", index), f"{alias!r} is not a valid host name")
            out[text] = aliases
        return out

    def depends_on(self, path: KeyPath, value: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        if isinstance(value, list):
            for index, item in enumerate(value):
                name = self.text((*path, index), item)
                if name is not None:
                    out[name] = "service_started"
                    self.dependency_paths[(path[1], name)] = (*path, index)
            return out
        raw = self.mapping(path, value, None)
        for name, spec in (raw or {}).items():
            item_path = (*path, name)
            condition = "service_started"
            if spec is not None:
                checked = self.mapping(item_path, spec, DEPENDS_KEYS, where="depends_on")
                if checked and "condition" in checked:
                    if checked["condition"] in CONDITIONS:
                        condition = checked["condition"]
                    else:
                        self.err(
                            (*item_path, "condition"),
                            f"must be {' or '.join(CONDITIONS)}, got {describe(checked['condition'])}",
                        )
            out[str(name)] = condition
            self.dependency_paths[(path[1], str(name))] = item_path
        return out

    def healthcheck(self, path: KeyPath, value: Any) -> Healthcheck | None:
        raw = self.mapping(path, value, HEALTH_KEYS, where="healthcheck")
        if raw is None:
            return None
        if raw.get("disable") is True:
            return None
        if "disable" in raw:
            self.boolean((*path, "disable"), raw["disable"])
        if "test" not in raw:
            self.err(path, "missing required key 'test'")
            return None
        test = raw["test"]
        argv: list[str] | None = None
        if isinstance(test, str):
            argv = ["/bin/sh", "-c", test]
        elif isinstance(test, list) and test:
            items = self.string_list((*path, "test"), test)
            if items and items[0] == "NONE":
                return None
            if items and items[0] == "CMD" and len(items) > 1:
                argv = items[1:]
            elif items and items[0] == "CMD-SHELL" and len(items) == 2:
                argv = ["/bin/sh", "-c", items[1]]
            else:
                self.err(
                    (*path, "test"),
                    'must be ["CMD", program, args...], ["CMD-SHELL", "command"], ["NONE"] or a shell command',
                )
        else:
            self.err((*path, "test"), f"must be a shell command or a list, got {describe(test)}")
        check = Healthcheck(argv or [])
        for key, attribute in (
            ("interval", "interval_s"),
            ("timeout", "timeout_s"),
            ("start_period", "start_period_s"),
            ("start_interval", "start_interval_s"),
        ):
            if key in raw:
                seconds = self.duration((*path, key), raw[key])
                if seconds is not None:
                    setattr(check, attribute, seconds)
        if "retries" in raw:
            retries = self.integer((*path, "retries"), raw["retries"], minimum=1)
            if retries is not None:
                check.retries = retries
        return check if argv else None

    def shell_options(self, path: KeyPath, value: Any) -> list[str]:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                self.err(path, f"cannot split into options: {exc}")
                return []
        options = self.string_list(path, value)
        for index, option in enumerate(options):
            if not option.startswith("-"):
                self.err((*path, index), f"shell options start with '-', got {option!r}")
        return options

    def setup_commands(self, path: KeyPath, value: Any) -> list[ShellCommand]:
        if not isinstance(value, list):
            self.err(path, f"must be a list, got {describe(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            item_path = (*path, index)
            if isinstance(item, str):  # legacy: the command itself
                command = ShellCommand(item, path=item_path)
            else:
                raw = self.mapping(item_path, item, SETUP_KEYS, ("command",), where="setup command")
                if raw is None or "command" not in raw:
                    continue
                text = self.text((*item_path, "command"), raw["command"])
                if text is None:
                    continue
                command = ShellCommand(text, path=item_path)
                if "shell" in raw:
                    command.shell = self.program((*item_path, "shell"), raw["shell"])
                if "shell-options" in raw:
                    command.shell_options = self.shell_options((*item_path, "shell-options"), raw["shell-options"])
                    if "shell" not in raw:
                        self.err((*item_path, "shell-options"), "needs 'shell' (the program the options are for)")
                if "detach" in raw:
                    command.detach = self.boolean((*item_path, "detach"), raw["detach"])
            self.check_split(item_path if isinstance(item, str) else (*item_path, "command"), command)
            out.append(command)
        return out

    def check_split(self, path: KeyPath, command: ShellCommand) -> None:
        if command.shell:
            return
        try:
            argv = shlex.split(command.command)
        except ValueError as exc:
            self.err(
                path,
                f"cannot split {command.command!r} into arguments ({exc}); set shell: sh to run it in a shell",
            )
            return
        if not argv:
            self.err(path, "the command is empty")

    def size(self, path: KeyPath, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str) and SIZE_RE.match(value.strip()):
            return value.strip()
        self.err(path, f"must be a size such as 512m or 2g, got {describe(value)}")
        return None

    def cpus(self, path: KeyPath, value: Any) -> str | None:
        try:
            number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or number <= 0:
            self.err(path, f"must be a positive number of CPUs such as 0.5 or 2, got {describe(value)}")
            return None
        return f"{number:g}"

    def deploy(self, path: KeyPath, value: Any, service: Service) -> None:
        raw = self.mapping(path, value, {"resources"}, where="deploy")
        if not raw or "resources" not in raw:
            return
        resources = self.mapping((*path, "resources"), raw["resources"], {"limits"}, where="deploy.resources")
        if not resources or "limits" not in resources:
            return
        limits_path = (*path, "resources", "limits")
        limits = self.mapping(limits_path, resources["limits"], {"cpus", "memory"}, where="limits")
        if not limits:
            return
        if "cpus" in limits:
            service.cpus = self.cpus((*limits_path, "cpus"), limits["cpus"])
        if "memory" in limits:
            service.mem_limit = self.size((*limits_path, "memory"), limits["memory"])

    def service_links(self, services: dict[str, Service]) -> None:
        for name, service in services.items():
            for dep, condition in service.depends_on.items():
                path = self.dependency_paths.get((name, dep), ("services", name, "depends_on", dep))
                if dep == name:
                    self.err(path, "a service cannot depend on itself")
                elif dep not in services:
                    known = ", ".join(sorted(services)) or "none"
                    self.err(path, f"no service named {dep!r} (services: {known})")
                elif condition == "service_healthy" and services[dep].healthcheck is None:
                    self.err(
                        path,
                        f"condition service_healthy needs a healthcheck on {dep!r}, which has none",
                    )
        # cycles
        state: dict[str, int] = {}

        def visit(name: str, chain: list[str]) -> None:
            state[name] = 1
            for dep in services[name].depends_on:
                if dep not in services or dep == name:
                    continue
                if state.get(dep) == 1:
                    cycle = " -> ".join([*chain[chain.index(dep) :], dep])
                    self.err(("services", name, "depends_on"), f"services depend on each other in a cycle: {cycle}")
                elif dep not in state:
                    visit(dep, [*chain, dep])
            state[name] = 2

        for name in services:
            if name not in state:
                visit(name, [name])
        seen: dict[str, str] = {}
        for name, service in services.items():
            for alias in {service.name, service.display_name}:
                if alias in seen and seen[alias] != name:
                    self.err(
                        ("services", name, "container_name"),
                        f"{alias!r} already names service {seen[alias]!r}",
                    )
                seen.setdefault(alias, name)

    # --- metrics, sci ------------------------------------------------------------------------------
    def custom_metrics(self, value: Any) -> dict[str, CustomMetric]:
        path: KeyPath = ("custom_metrics",)
        raw = self.mapping(path, value, None)
        out: dict[str, CustomMetric] = {}
        for name, spec in (raw or {}).items():
            item_path = (*path, name)
            if not METRIC_NAME_RE.match(str(name)):
                self.err(item_path, "metric names start with a letter and use letters, digits, '_', '.', '-'")
                continue
            checked = self.mapping(item_path, spec, CUSTOM_METRIC_KEYS, ("unit", "regex"), where="custom metric")
            if not checked or "unit" not in checked or "regex" not in checked:
                continue
            unit = self.text((*item_path, "unit"), checked["unit"])
            pattern = self.text((*item_path, "regex"), checked["regex"])
            sci = self.boolean((*item_path, "sci"), checked["sci"]) if "sci" in checked else False
            if unit is None or pattern is None:
                continue
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                self.err((*item_path, "regex"), f"is not a valid regular expression: {exc}")
                continue
            if {"timestamp", "value"} <= set(regex.groupindex):
                groups: tuple[int | str, int | str] = ("timestamp", "value")
            elif regex.groups == 2:
                groups = (1, 2)
            else:
                self.err(
                    (*item_path, "regex"),
                    f"needs two groups, (timestamp) then (value), or groups named timestamp and value; "
                    f"it has {regex.groups}",
                )
                continue
            out[str(name)] = CustomMetric(str(name), unit, regex, sci, groups[0], groups[1])
        sci_metrics = [m.name for m in out.values() if m.sci]
        if len(sci_metrics) > 1:
            self.err(
                path,
                "only one custom metric can be the SCI functional unit (sci: true): " + ", ".join(sci_metrics),
            )
        return out

    def legacy_sci(self, value: Any) -> dict[str, object] | None:
        raw = self.mapping(("sci",), value, None)
        if raw is None:
            return None
        out: dict[str, object] = {}
        for key, item in raw.items():
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                out[str(key)] = item
            else:
                self.err(("sci", key), f"must be text or a number, got {describe(item)}")
        return out

    # --- flow --------------------------------------------------------------------------------------
    def flow(self, value: Any, services: dict[str, Service]) -> list[FlowStep]:
        path: KeyPath = ("flow",)
        if not isinstance(value, list):
            self.err(path, f"must be a list of steps, got {describe(value)}")
            return []
        if not value:
            self.err(path, "needs at least one step")
            return []
        by_container: dict[str, str] = {}
        for key, service in services.items():
            by_container[service.display_name] = key
            by_container.setdefault(key, key)
        steps: list[FlowStep] = []
        names: dict[str, int] = {}
        for index, item in enumerate(value):
            item_path = (*path, index)
            raw = self.mapping(item_path, item, STEP_KEYS, ("name", "container", "commands"), where="flow step")
            if raw is None:
                continue
            name = self.text((*item_path, "name"), raw["name"]) if "name" in raw else None
            if name is not None:
                if name in names:
                    self.err((*item_path, "name"), f"{name!r} is already the name of flow[{names[name]}]")
                names.setdefault(name, index)
            container = self.text((*item_path, "container"), raw["container"]) if "container" in raw else None
            service_key = None
            if container is not None:
                service_key = by_container.get(container)
                if service_key is None:
                    known = ", ".join(sorted(by_container)) or "none are defined"
                    self.err((*item_path, "container"), f"no service or container named {container!r} ({known})")
            hidden = self.boolean((*item_path, "hidden"), raw["hidden"]) if "hidden" in raw else False
            commands = self.commands((*item_path, "commands"), raw["commands"]) if "commands" in raw else []
            if name is not None and container is not None and service_key is not None:
                steps.append(FlowStep(name, service_key, container, commands, hidden))
        return steps

    def commands(self, path: KeyPath, value: Any) -> list[FlowCommand]:
        if not isinstance(value, list):
            self.err(path, f"must be a list of commands, got {describe(value)}")
            return []
        if not value:
            self.err(path, "needs at least one command")
            return []
        out = []
        for index, item in enumerate(value):
            item_path = (*path, index)
            raw = self.mapping(item_path, item, COMMAND_KEYS, ("type", "command"), where="command")
            if raw is None or "command" not in raw:
                continue
            if "type" in raw and raw["type"] != "console":
                self.err(
                    (*item_path, "type"),
                    f"must be console (the only command type), got {describe(raw['type'])}",
                )
            text = self.text((*item_path, "command"), raw["command"])
            if text is None:
                continue
            command = FlowCommand(text, path=item_path)
            if "note" in raw:
                command.note = self.text((*item_path, "note"), raw["note"], numbers=True)
            if "shell" in raw:
                command.shell = self.program((*item_path, "shell"), raw["shell"])
            if "shell-options" in raw:
                command.shell_options = self.shell_options((*item_path, "shell-options"), raw["shell-options"])
                if "shell" not in raw:
                    self.err((*item_path, "shell-options"), "needs 'shell' (the program the options are for)")
            for key, attribute in (
                ("detach", "detach"),
                ("read-notes-stdout", "read_notes_stdout"),
                ("read-sci-stdout", "read_sci_stdout"),
                ("ignore-errors", "ignore_errors"),
                ("log-stdout", "log_stdout"),
                ("log-stderr", "log_stderr"),
            ):
                if key in raw:
                    setattr(command, attribute, self.boolean((*item_path, key), raw[key]))
            self.check_split((*item_path, "command"), command)
            out.append(command)
        return out


def check_document(document: Document, *, allow_unsafe: bool = False, backend: str = "auto") -> Scenario:
    checker = _Checker(document, allow_unsafe, backend)
    scenario = checker.scenario()
    if scenario is None:
        raise ScenarioError(str(document.path), checker.problems)
    return scenario


def load_scenario(
    path: str | Path,
    variables: dict[str, str] | None = None,
    *,
    allow_unsafe: bool = False,
    backend: str = "auto",
) -> Scenario:
    """Read and check a scenario file. Raises ScenarioError listing every problem with file and line."""
    if backend not in ("auto", *BACKENDS):
        raise ScenarioError(str(path), [Problem(None, (), f"backend must be auto, container or host, got {backend!r}")])
    return check_document(load_document(path, variables), allow_unsafe=allow_unsafe, backend=backend)
