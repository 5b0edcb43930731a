"""Checks of `services`, top-level `networks` and `volumes`: compose keys as GMT reads them."""

from __future__ import annotations

import re
import shlex
from typing import Any

from wattwise.measure.scenario.checks import SERVICE_NAME_RE, describe
from wattwise.measure.scenario.model import BuildSpec, Service, VolumeMount
from wattwise.measure.scenario.problems import KeyPath
from wattwise.measure.scenario.service_parts import ServicePartChecks

SERVICE_KEYS = {
    "type",
    "image",
    "build",
    "container_name",
    "environment",
    "labels",
    "ports",
    "expose",
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
    "shm_size",
    "restart",
    "folder-destination",
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
    "expose",
    "volumes",
    "networks",
    "labels",
    "init",
    "cpus",
    "shm_size",
)
BUILD_KEYS = {"context", "dockerfile", "args", "target"}
NETWORK_KEYS = {"driver", "internal", "labels", "name"}
VOLUME_KEYS = {"driver", "labels"}
DEPENDS_KEYS = {"condition"}
CONDITIONS = ("service_started", "service_healthy")
RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
EXPOSE_RE = re.compile(r"^\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?$")
IMAGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@+-]*$")
GMT_FORBIDDEN = re.compile(r"(\.\.|\$|'|\"|`|!)")  # characters GMT refuses in service, network and container names
#: docker-run-args GMT allows without --allow-unsafe (its default user capability): labels with plain names/values
DOCKER_RUN_ARGS_ALLOWED = (r"--label\s+([\w.-]+)=([\w.-]+)",)


class ServiceChecks(ServicePartChecks):
    def networks(self, value: Any, backend: str) -> dict[str, dict[str, object]]:
        path: KeyPath = ("networks",)
        if backend == "host":
            self.err(path, "the host backend runs services as host processes: it has no networks")
            return {}
        out: dict[str, dict[str, object]] = {}
        items: list[tuple[KeyPath, Any, Any]]
        if isinstance(value, list):  # legacy: a list of names
            items = [((*path, index), item, None) for index, item in enumerate(value)]
        elif value is None:
            return out
        elif isinstance(value, dict):
            items = [((*path, name), name, spec) for name, spec in value.items()]
        else:
            self.err(path, f"must be a mapping or a list of network names, got {describe(value)}")
            return out
        for item_path, raw_name, spec in items:
            name = self.text(item_path, raw_name)
            if name is None:
                continue
            if not SERVICE_NAME_RE.match(name):
                self.err(item_path, "network names use letters, digits, '_', '.' and '-'")
            if name == "host" and not self.unsafe(item_path, "the network 'host' is the machine's own network"):
                continue
            if spec is None:
                out[name] = {}
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
            if "name" in checked:
                self.note((*item_path, "name"), "ignored: wattwise names the network wattwise-<run>-<key>")
            out[name] = options
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

    # --- one service -------------------------------------------------------------------------------
    def service(
        self, name: str, spec: Any, backend: str, networks: dict[str, Any], volumes: list[str]
    ) -> Service | None:
        path: KeyPath = ("services", name)
        if not SERVICE_NAME_RE.match(name) or GMT_FORBIDDEN.search(name):
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
                "set x-wattwise: {backend: host} and run with --backend host)",
            )
        if "type" in raw and raw["type"] != "container":
            self.err((*path, "type"), f"must be container (GMT's only service type), got {describe(raw['type'])}")
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
            ports = self.string_list((*path, "ports"), raw["ports"])
            if ports and backend != "host" and self.unsafe(
                (*path, "ports"),
                "publishing ports on the host is not allowed by default (containers reach each other "
                "by service name)",
                "run with --allow-unsafe to publish them",
            ):
                service.ports = ports
        if "expose" in raw:
            service.expose = self.expose((*path, "expose"), raw["expose"])
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
        self.limits(path, raw, service)
        if "shm_size" in raw:
            service.shm_size = self.size((*path, "shm_size"), raw["shm_size"])
        if "restart" in raw:
            restart = self.text((*path, "restart"), raw["restart"])
            if restart is not None and not RESTART_RE.match(restart):
                self.err((*path, "restart"), f"must be no, always, on-failure or unless-stopped, got {restart!r}")
            self.note((*path, "restart"), "ignored: a measured container is never restarted")
        if "folder-destination" in raw:
            folder = self.text((*path, "folder-destination"), raw["folder-destination"])
            if folder is not None:
                if not folder.startswith("/") or any(c in folder for c in ":,"):
                    self.err(
                        (*path, "folder-destination"), f"must be an absolute path without ':' or ',', got {folder!r}"
                    )
                else:
                    service.folder_destination = folder
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

    def expose(self, path: KeyPath, value: Any) -> list[str]:
        items = self.string_list(path, value if isinstance(value, list) else [value])
        for index, item in enumerate(items):
            if not EXPOSE_RE.match(item):
                self.err((*path, index), f"must be a port or range such as 8080, 8000-8010 or 53/udp, got {item!r}")
        return [item for item in items if EXPOSE_RE.match(item)]

    def engine_args(self, path: KeyPath, value: Any) -> list[str]:
        """GMT's docker-run-args: arguments matching the allow-list (labels), anything with --allow-unsafe."""
        items = self.string_list(path, value)
        args: list[str] = []
        for index, item in enumerate(items):
            allowed = any(re.fullmatch(pattern, item) for pattern in DOCKER_RUN_ARGS_ALLOWED)
            if not allowed and not self.unsafe(
                (*path, index),
                f"{item!r} is not on the allow-list of docker-run-args (--label NAME=VALUE)",
                "only --allow-unsafe passes other options to the container engine",
            ):
                continue
            try:
                args.extend(shlex.split(item))
            except ValueError as exc:
                self.err((*path, index), f"cannot split into arguments: {exc}")
        return args

    def build(self, path: KeyPath, value: Any) -> BuildSpec | None:
        if isinstance(value, str):
            context = self.inside_root(path, value, "build context")
            return BuildSpec(context) if context is not None else None
        raw = self.mapping(path, value, BUILD_KEYS, where="build")
        if raw is None:
            return None
        text = self.text((*path, "context"), raw.get("context", ".")) or "."
        context = self.inside_root((*path, "context"), text, "build context")
        if context is None:
            return None
        spec = BuildSpec(context)
        if "dockerfile" in raw:
            dockerfile = self.text((*path, "dockerfile"), raw["dockerfile"])
            if dockerfile is not None:
                self.inside_root((*path, "dockerfile"), str(context / dockerfile), "dockerfile")
            spec.dockerfile = dockerfile
        if "args" in raw:
            args = raw["args"]
            if isinstance(args, list) and all(isinstance(item, dict) for item in args):  # GMT: a list of mappings
                args = {k: v for item in args for k, v in item.items()}
            spec.args = self.key_values((*path, "args"), args, environment=False)
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
                if target is not None and any(c in target for c in ":,"):
                    self.err(
                        (*item_path, "target"),
                        f"the target {target!r} contains ':' or ',': targets are paths, never mount options",
                    )
                    continue
                if source is not None and kind == "bind" and any(c in source for c in ":,"):
                    self.err((*item_path, "source"), f"the source {source!r} contains ':' or ','")
                    continue
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
                if "," in source or "," in target:
                    self.err(item_path, f"SOURCE and TARGET must not contain ',', got {item!r}")
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
                resolved = self.inside_root(item_path, source, "the host path")
                if resolved is not None:
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
            if text == "host":
                self.unsafe(item_path, "joining the network 'host' (the machine's own network) is not allowed")
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
                        elif alias == "host":
                            self.unsafe((*item_path, "aliases", index), "the alias 'host' is not allowed")
            out[text] = aliases
        return out

    def depends_on(self, path: KeyPath, value: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        if isinstance(value, list):
            for index, item in enumerate(value):
                name = self.text((*path, index), item)
                if name is not None:
                    out[name] = "service_started"
                    self.dependency_paths[(str(path[1]), name)] = (*path, index)
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
            self.dependency_paths[(str(path[1]), str(name))] = item_path
        return out

    # --- across services ---------------------------------------------------------------------------
    def service_links(self, services: dict[str, Service], backend: str) -> None:
        for name, service in services.items():
            for dep, condition in service.depends_on.items():
                path = self.dependency_paths.get((name, dep), ("services", name, "depends_on", dep))
                if dep == name:
                    self.err(path, "a service cannot depend on itself")
                elif dep not in services:
                    known = ", ".join(sorted(services)) or "none"
                    self.err(path, f"no service named {dep!r} (services: {known})")
                elif condition == "service_healthy" and services[dep].healthcheck is None:
                    if backend == "host":
                        self.err(path, f"condition service_healthy needs a healthcheck on {dep!r}, which has none")
                    else:
                        self.note(
                            path,
                            f"{dep!r} has no healthcheck in the file: the HEALTHCHECK of its image is used "
                            "(checked when the run starts)",
                        )
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
