"""The client's YAML configuration (`wattwise client --config client.yml`), read with precise errors:
every problem names the file, the line, the key path, the value and what is allowed.

Durations are in seconds. The Green Metrics Tool's names ``sleep_time`` and
``time_between_control_workload_validations`` are accepted for ``sleep_time_s`` and
``time_between_control_workload_validations_s``. See docs/cluster.md for the reference.
"""

from __future__ import annotations

import difflib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wattwise.cluster.outbox import SmtpSettings
from wattwise.cluster.submission import EMAIL_RE, normalize_mac, validate_machine_id
from wattwise.errors import ConfigError, WattwiseError

ENV_CLIENT_CONFIG = "WATTWISE_CLIENT_CONFIG"
CONTROL_METRICS = (
    "energy_j",
    "mean_power_w",
    "peak_power_w",
    "duration_s",
    "carbon_g",
    "cpu_utilization_mean",
    "unit_energy_j",
    "unit_cpu_time_s",
)


@dataclass
class TemperatureSettings:
    chip: list[str] | None = None
    feature: list[str] | None = None
    source: str = "auto"  # auto | hwmon | sensors
    hwmon_root: str = "/sys/class/hwmon"
    sensors_command: list[str] = field(default_factory=lambda: ["sensors", "-j"])
    base_temperature_c: float | None = None  # None: the machine's base temperature in the database
    warmup_margin_c: float = 10.0  # warm up when more than this below the base temperature
    cooldown_wait_s: float = 60.0
    warmup_s: float = 30.0
    warmup_command: list[str] | None = None  # default: a busy loop on every CPU
    max_tries: int = 30


@dataclass
class ControlWorkloadSettings:
    command: list[str] | None = None
    scenario: str | None = None  # path of a usage_scenario file
    name: str = "control workload"
    interval_s: float = 6 * 3600.0  # time_between_control_workload_validations
    comparison_window: int = 5
    threshold: float = 0.1
    phase: str = "[RUNTIME]"
    metrics: list[str] = field(default_factory=lambda: ["energy_j", "mean_power_w", "duration_s"])


@dataclass
class MeasureSettings:
    """How jobs are measured; None: the default of `wattwise measure` / `wattwise run`."""

    interval_s: float | None = None
    baseline_s: float | None = None
    idle_s: float | None = None  # scenarios only
    providers: list[str] | None = None
    backend: str = "auto"  # scenarios only: auto | container | host


@dataclass
class ClientConfig:
    machine_id: str
    path: Path | None = None
    description: str = ""
    database: str | None = None
    mac_address: str | None = None
    sleep_time_s: float = 300.0
    lease_s: float = 60.0
    heartbeat_interval_s: float = 10.0
    workdir: str | None = None
    web_url: str | None = None
    notify_email: str | None = None
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    executors: dict[str, str] = field(default_factory=dict)
    temperature: TemperatureSettings | None = None
    control_workload: ControlWorkloadSettings | None = None
    cleanup_command: list[str] | None = None
    cleanup_timeout_s: float = 600.0
    shutdown_command: list[str] | None = None
    shutdown_idle_s: float = 0.0
    smtp: SmtpSettings | None = None


# --- YAML with line numbers -------------------------------------------------------------------------


class _Map(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]
    line: int


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.lines = {}
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Reads keys out of a mapping, with errors that name file, line and key path."""

    def __init__(self, file: str, data: _Map, prefix: str = "") -> None:
        self.file = file
        self.data = data
        self.prefix = prefix
        self.used: set[str] = set()
        self.header_line: int | None = None  # the line of the key that opens this section

    def where(self, key: str | None = None) -> str:
        line = self.data.lines.get(key, self.data.line) if key is not None else self.header_line or self.data.line
        path = f"{self.prefix}{key}" if key is not None else self.prefix.rstrip(".") or "(top level)"
        return f"{self.file}, line {line}, {path}"

    def fail(self, key: str | None, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, *aliases: str) -> tuple[str, Any]:
        present = [k for k in (key, *aliases) if k in self.data]
        if len(present) > 1:
            raise self.fail(present[1], f"give either {present[0]!r} or {present[1]!r}, not both")
        self.used.update(present)
        if not present:
            return key, None
        return present[0], self.data[present[0]]

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        name, value = self.raw(key)
        if value is None:
            if required:
                raise self.fail(None, f"missing key '{self.prefix}{key}'")
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(name, f"expected text, got {value!r}")
        return str(value)

    def number(
        self,
        key: str,
        default: float | None,
        *aliases: str,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
        integer: bool = False,
    ) -> Any:
        name, value = self.raw(key, *aliases)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if integer else "a number"
            raise self.fail(name, f"expected {kind}, got {value!r}")
        if integer and not isinstance(value, int):
            raise self.fail(name, f"expected a whole number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(name, f"must be greater than 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.fail(name, f"must be at most {maximum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def argv(self, key: str) -> list[str] | None:
        """A command: a list of strings, or one string split like a shell would."""
        name, value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                parts = shlex.split(value)
            except ValueError as exc:
                raise self.fail(name, f"cannot split the command {value!r}: {exc}") from None
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            parts = [str(v) for v in value]
        else:
            raise self.fail(name, f"expected a command (a list of strings or one string), got {value!r}")
        if not parts:
            raise self.fail(name, "the command is empty")
        return parts

    def patterns(self, key: str) -> list[str] | None:
        name, value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.fail(name, f"expected a name pattern or a list of them, got {value!r}")

    def section(self, key: str) -> _Reader | None:
        name, value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, _Map):
            raise self.fail(name, f"expected a mapping (indented keys), got {value!r}")
        reader = _Reader(self.file, value, f"{self.prefix}{key}.")
        reader.header_line = self.data.lines.get(name)
        return reader

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            key = unknown[0]
            known = sorted(self.used | set(self.allowed))
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(key, f"unknown key {key!r}{hint}; allowed here: {', '.join(known)}")

    allowed: tuple[str, ...] = ()


_TOP = (
    "machine_id",
    "description",
    "database",
    "mac_address",
    "sleep_time_s",
    "sleep_time",
    "lease_s",
    "heartbeat_interval_s",
    "workdir",
    "web_url",
    "notify_email",
    "measure",
    "executors",
    "temperature",
    "control_workload",
    "cleanup_command",
    "cleanup_timeout_s",
    "shutdown_command",
    "shutdown_idle_s",
    "smtp",
)
_TEMPERATURE = (
    "chip",
    "feature",
    "source",
    "hwmon_root",
    "sensors_command",
    "base_temperature_c",
    "warmup_margin_c",
    "cooldown_wait_s",
    "warmup_s",
    "warmup_command",
    "max_tries",
)
_CONTROL = (
    "command",
    "scenario",
    "name",
    "time_between_control_workload_validations_s",
    "time_between_control_workload_validations",
    "comparison_window",
    "threshold",
    "phase",
    "metrics",
)
_MEASURE = ("interval_s", "baseline_s", "idle_s", "providers", "backend")
_SMTP = ("host", "port", "username", "password", "password_file", "security", "from")


def _email(reader: _Reader, key: str) -> str | None:
    value = reader.text(key)
    if value is not None and not EMAIL_RE.match(value):
        raise reader.fail(key, f"{value!r} is not an e-mail address")
    return value


def parse_config(text: str, file: str = "<config>") -> ClientConfig:
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{file}, {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, _Map):
        raise ConfigError(f"{file}: expected a mapping of settings (machine_id: …), got {data!r}")
    top = _Reader(file, data)
    top.allowed = _TOP
    machine_id = top.text("machine_id", required=True)
    assert machine_id is not None
    try:
        validate_machine_id(machine_id, "machine_id")
    except WattwiseError as exc:
        raise top.fail("machine_id", str(exc)) from None
    config = ClientConfig(machine_id=machine_id, path=Path(file) if file != "<config>" else None)
    config.description = top.text("description", "") or ""
    config.database = top.text("database")
    if isinstance(top.data.get("mac_address"), int) and not isinstance(top.data.get("mac_address"), bool):
        raise top.fail(
            "mac_address",
            "YAML read this MAC address as a number (digits separated by ':' are base 60 in YAML 1.1): "
            "put it in quotes, e.g. mac_address: \"00:11:22:33:44:55\"",
        )
    mac = top.text("mac_address")
    if mac is not None:
        try:
            config.mac_address = normalize_mac(mac)
        except WattwiseError as exc:
            raise top.fail("mac_address", str(exc)) from None
    config.sleep_time_s = top.number("sleep_time_s", 300.0, "sleep_time", positive=True)
    config.lease_s = top.number("lease_s", 60.0, minimum=1)
    config.heartbeat_interval_s = top.number(
        "heartbeat_interval_s", min(10.0, config.lease_s / 3), positive=True
    )
    if config.heartbeat_interval_s * 2 > config.lease_s:
        raise top.fail(
            "heartbeat_interval_s" if top.has("heartbeat_interval_s") else "lease_s",
            f"heartbeat_interval_s ({config.heartbeat_interval_s:g}) must be at most half of lease_s "
            f"({config.lease_s:g}), so that one missed renewal does not lose the lease",
        )
    config.workdir = top.text("workdir")
    config.web_url = top.text("web_url")
    if config.web_url is not None and not config.web_url.startswith(("http://", "https://")):
        raise top.fail("web_url", f"expected an http:// or https:// address, got {config.web_url!r}")
    config.notify_email = _email(top, "notify_email")

    measure = top.section("measure")
    if measure is not None:
        measure.allowed = _MEASURE
        backend = measure.text("backend", "auto") or "auto"
        if backend not in ("auto", "container", "host"):
            raise measure.fail("backend", f"{backend!r} is not a scenario backend: use auto, container or host")
        config.measure = MeasureSettings(
            interval_s=measure.number("interval_s", None, minimum=0.01),
            baseline_s=measure.number("baseline_s", None, minimum=0),
            idle_s=measure.number("idle_s", None, minimum=0),
            providers=measure.patterns("providers"),
            backend=backend,
        )
        measure.finish()

    executors = top.section("executors")
    if executors is not None:
        for key in list(executors.data):
            value = executors.text(str(key))
            if str(key) not in ("command", "folder", "git"):
                raise executors.fail(str(key), "executors are set per job source: command, folder or git")
            if not value or ":" not in value:
                raise executors.fail(str(key), f"expected 'package.module:ClassName', got {value!r}")
            config.executors[str(key)] = value

    temperature = top.section("temperature")
    if temperature is not None:
        temperature.allowed = _TEMPERATURE
        t = TemperatureSettings()
        t.chip = temperature.patterns("chip")
        t.feature = temperature.patterns("feature")
        t.source = temperature.text("source", "auto") or "auto"
        if t.source not in ("auto", "hwmon", "sensors"):
            raise temperature.fail(
                "source", f"{t.source!r} is not a temperature source: use auto, hwmon or sensors"
            )
        t.hwmon_root = temperature.text("hwmon_root", t.hwmon_root) or t.hwmon_root
        t.sensors_command = temperature.argv("sensors_command") or t.sensors_command
        t.base_temperature_c = temperature.number("base_temperature_c", None, minimum=-50, maximum=150)
        t.warmup_margin_c = temperature.number("warmup_margin_c", 10.0, minimum=0)
        t.cooldown_wait_s = temperature.number("cooldown_wait_s", 60.0, minimum=0)
        t.warmup_s = temperature.number("warmup_s", 30.0, minimum=0)
        t.warmup_command = temperature.argv("warmup_command")
        t.max_tries = temperature.number("max_tries", 30, integer=True, minimum=1)
        temperature.finish()
        config.temperature = t

    control = top.section("control_workload")
    if control is not None:
        control.allowed = _CONTROL
        c = ControlWorkloadSettings()
        c.command = control.argv("command")
        c.scenario = control.text("scenario")
        if (c.command is None) == (c.scenario is None):
            raise control.fail(
                None,
                "give exactly one of 'command' (measured like a command job) or "
                "'scenario' (path of a usage_scenario file)",
            )
        c.name = control.text("name", c.name) or c.name
        c.interval_s = control.number(
            "time_between_control_workload_validations_s",
            c.interval_s,
            "time_between_control_workload_validations",
            minimum=0,
        )
        c.comparison_window = control.number("comparison_window", 5, integer=True, minimum=2)
        c.threshold = control.number("threshold", 0.1, positive=True)
        c.phase = control.text("phase", c.phase) or c.phase
        metrics = control.patterns("metrics")
        if metrics is not None:
            for metric in metrics:
                if metric not in CONTROL_METRICS:
                    raise control.fail(
                        "metrics", f"unknown metric {metric!r}; allowed: {', '.join(CONTROL_METRICS)}"
                    )
            c.metrics = metrics
        control.finish()
        config.control_workload = c

    config.cleanup_command = top.argv("cleanup_command")
    config.cleanup_timeout_s = top.number("cleanup_timeout_s", 600.0, positive=True)
    config.shutdown_command = top.argv("shutdown_command")
    config.shutdown_idle_s = top.number("shutdown_idle_s", 0.0, minimum=0)

    smtp = top.section("smtp")
    if smtp is not None:
        smtp.allowed = _SMTP
        host = smtp.text("host", required=True)
        assert host is not None
        security = smtp.text("security", "none") or "none"
        if security not in ("none", "starttls", "ssl"):
            raise smtp.fail("security", f"{security!r} is not allowed: use none, starttls or ssl")
        port = smtp.number("port", 465 if security == "ssl" else 25, integer=True, minimum=1, maximum=65535)
        password = smtp.text("password")
        password_file = smtp.text("password_file")
        if password is not None and password_file is not None:
            raise smtp.fail("password_file", "give either 'password' or 'password_file', not both")
        if password_file is not None:
            try:
                password = Path(password_file).expanduser().read_text().strip()
            except OSError as exc:
                raise smtp.fail("password_file", f"cannot read {password_file}: {exc.strerror}") from None
        sender = _email(smtp, "from") or "wattwise@localhost"
        config.smtp = SmtpSettings(
            host=host,
            port=port,
            username=smtp.text("username"),
            password=password,
            security=security,
            from_address=sender,
        )
        smtp.finish()
    top.finish()
    return config


def load_config(path: str | Path | None) -> ClientConfig:
    """Read the client configuration from `path`, else from $WATTWISE_CLIENT_CONFIG."""
    if path is None:
        env = os.environ.get(ENV_CLIENT_CONFIG)
        if not env:
            raise ConfigError(f"no client configuration: pass --config FILE or set {ENV_CLIENT_CONFIG}")
        path = env
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"client configuration {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read client configuration {path}: {exc.strerror}") from None
    return parse_config(text, str(path))
