"""Checking a usage scenario and turning it into the dataclasses of `model`.

The checks are split by concern: generic shapes and safety (`checks`), services, networks and volumes
(`services`), the flow (`flow`), custom metrics and SCI (`metrics`); this module checks the top level and
puts them together. Every problem is collected with the file, line and key path it is about.

Paths in the file (build contexts, bind mounts) are judged against a root, as GMT does with `--uri`:
they may leave the scenario's folder but never the root. Keys starting with `x-` are compose extension
fields and are ignored; `x-wattwise` holds this tool's own settings (`backend: host|container`). The host
backend runs commands on the machine itself, so a file alone cannot choose it: the machine must (the
`--backend host` flag, a client's configuration, or `--allow-unsafe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattwise.measure.scenario.checks import CheckOptions, describe, parse_compose_duration
from wattwise.measure.scenario.flow import FlowChecks
from wattwise.measure.scenario.metrics import MetricChecks
from wattwise.measure.scenario.model import Scenario, Service
from wattwise.measure.scenario.problems import KeyPath, Problem, ScenarioError
from wattwise.measure.scenario.services import ServiceChecks
from wattwise.measure.scenario.source import Document, LoadLimits, load_document

__all__ = ["CheckOptions", "check_document", "describe", "load_scenario", "parse_compose_duration"]

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
    "relations",
    "optimizations_ignore",
    "x-wattwise",
}
TOP_REQUIRED = ("name", "author", "description", "flow")
WATTWISE_KEYS = {"backend"}
BACKENDS = ("container", "host")


class _Checker(ServiceChecks, FlowChecks, MetricChecks):
    def scenario(self) -> Scenario | None:
        root = self.doc.value
        if not isinstance(root, dict):
            self.err((), f"the file must be a mapping of keys (name, flow, services, ...), got {describe(root)}")
            return None
        ignore = root.get("ignore-unsupported-compose", False)
        self.ignore_unsupported = self.boolean(("ignore-unsupported-compose",), ignore)
        self.mapping((), root, TOP_KEYS, TOP_REQUIRED, where="top-level")
        name = self.text(("name",), root["name"], numbers=True) if "name" in root else None
        author = self.text(("author",), root["author"], numbers=True) if "author" in root else None
        description = self.text(("description",), root["description"], numbers=True) if "description" in root else None
        backend = self.backend(root)
        architecture = None
        if "architecture" in root:
            architecture = self.text(("architecture",), root["architecture"])
        version = self.text(("version",), root["version"], numbers=True) if "version" in root else None
        for key, what in (("relations", "links to other runs"), ("optimizations_ignore", "GMT's optimization hints")):
            if key in root:
                self.note((key,), f"accepted and ignored ({what}; wattwise does not use them)")
        networks = self.networks(root.get("networks"), backend) if "networks" in root else {}
        volumes = self.volumes(root.get("volumes"), backend) if "volumes" in root else []
        services: dict[str, Service] = {}
        if "services" in root and root["services"] is not None:
            raw_services = self.mapping(("services",), root["services"], None)
            for key, spec in (raw_services or {}).items():
                service = self.service(str(key), spec, backend, networks, volumes)
                if service is not None:
                    services[str(key)] = service
            self.service_links(services, backend)
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
            notes=self.notes,
            root=self.options.root,
        )

    def backend(self, root: dict[str, Any]) -> str:
        """The machine's choice (--backend, a client's configuration) wins; the file may ask for the host
        backend, which is only granted with --allow-unsafe."""
        asked = None
        path: KeyPath = ("x-wattwise", "backend")
        if "x-wattwise" in root:
            settings = self.mapping(("x-wattwise",), root["x-wattwise"], WATTWISE_KEYS, where="x-wattwise")
            if settings and "backend" in settings:
                value = settings["backend"]
                if value in BACKENDS:
                    asked = value
                else:
                    self.err(path, f"must be one of {', '.join(BACKENDS)}, got {describe(value)}")
        choice = self.options.backend
        if choice in BACKENDS:
            return choice
        if asked == "host" and not self.options.allow_unsafe:
            self.err(
                path,
                "the file asks for the host backend, which runs its commands on this machine without isolation; "
                "a scenario cannot choose that by itself: run with --backend host (or --allow-unsafe), or set "
                "backend: host in the cluster client's configuration",
            )
            return "host"
        return asked or "container"


def check_document(document: Document, options: CheckOptions | None = None) -> Scenario:
    checker = _Checker(document, options or CheckOptions())
    scenario = checker.scenario()
    if scenario is None:
        raise ScenarioError(str(document.path), checker.problems)
    return scenario


def load_scenario(
    path: str | Path,
    variables: dict[str, str] | None = None,
    *,
    allow_unsafe: bool = False,
    skip_unsafe: bool = False,
    backend: str = "auto",
    root: str | Path | None = None,
    strict_duplicates: bool = False,
    limits: LoadLimits | None = None,
) -> Scenario:
    """Read and check a scenario file. Raises ScenarioError listing every problem with file and line.

    `root` is what paths may not leave (GMT's `--uri`; default: the scenario's folder). Duplicate keys are
    warnings (the last one wins, as in GMT) unless `strict_duplicates`."""
    if backend not in ("auto", *BACKENDS):
        raise ScenarioError(str(path), [Problem(None, (), f"backend must be auto, container or host, got {backend!r}")])
    if allow_unsafe and skip_unsafe:
        raise ScenarioError(str(path), [Problem(None, (), "--allow-unsafe and --skip-unsafe cannot be combined")])
    root_path = Path(root).resolve() if root is not None else None
    document = load_document(
        path, variables, root=root_path, duplicates="error" if strict_duplicates else "warn", limits=limits
    )
    options = CheckOptions(allow_unsafe=allow_unsafe, skip_unsafe=skip_unsafe, backend=backend, root=root_path)
    return check_document(document, options)
