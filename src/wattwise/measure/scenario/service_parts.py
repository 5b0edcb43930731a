"""Parts of a service: its healthcheck, setup commands and resource limits (cpus, memory, deploy)."""

from __future__ import annotations

from typing import Any

from wattwise.measure.scenario.checks import ShapeChecks, describe
from wattwise.measure.scenario.model import Healthcheck, Service, ShellCommand
from wattwise.measure.scenario.problems import KeyPath

HEALTH_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
SETUP_KEYS = {"command", "detach", "shell", "shell-options"}


class ServicePartChecks(ShapeChecks):
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

    # --- resources ---------------------------------------------------------------------------------
    def limits(self, path: KeyPath, raw: dict[str, Any], service: Service) -> None:
        """`cpus`/`mem_limit` and `deploy.resources.limits`: they must agree, and fit the host."""
        given: dict[str, tuple[KeyPath, str]] = {}  # "cpus"/"memory" -> (where, value)
        if "mem_limit" in raw:
            size = self.size((*path, "mem_limit"), raw["mem_limit"])
            if size is not None:
                given["memory"] = ((*path, "mem_limit"), size)
        if "cpus" in raw:
            cpus = self.cpus((*path, "cpus"), raw["cpus"])
            if cpus is not None:
                given["cpus"] = ((*path, "cpus"), cpus)
        if "deploy" in raw:
            self.deploy((*path, "deploy"), raw["deploy"], given)
        from wattwise.measure.scenario.backends import parse_size_b

        if "cpus" in given:
            where, value = given["cpus"]
            host = self.options.host_cpus
            if host is not None and float(value) > host:
                self.err(where, f"asks for {value} CPUs, more than this machine has ({host:g})")
            service.cpus = value
        if "memory" in given:
            where, value = given["memory"]
            host_b = self.options.host_memory_b
            limit_b = parse_size_b(value)
            if host_b is not None and limit_b is not None and limit_b > host_b:
                self.err(where, f"asks for {value} of memory, more than this machine has ({host_b} bytes)")
            service.mem_limit = value

    def deploy(self, path: KeyPath, value: Any, given: dict[str, tuple[KeyPath, str]]) -> None:
        if value is None:
            self.note(path, "deploy: null is accepted and ignored (as compose and GMT do)")
            return
        raw = self.mapping(path, value, {"resources"}, where="deploy")
        if not raw or raw.get("resources") is None:
            return
        resources = self.mapping((*path, "resources"), raw["resources"], {"limits"}, where="deploy.resources")
        if not resources or resources.get("limits") is None:
            return
        limits_path = (*path, "resources", "limits")
        limits = self.mapping(limits_path, resources["limits"], {"cpus", "memory"}, where="limits")
        if not limits:
            return
        from wattwise.measure.scenario.backends import parse_size_b

        for key, service_key in (("cpus", "cpus"), ("memory", "mem_limit")):
            if key not in limits:
                continue
            where = (*limits_path, key)
            value = self.cpus(where, limits[key]) if key == "cpus" else self.size(where, limits[key])
            if value is None:
                continue
            if key in given:
                first_path, first = given[key]
                same = (
                    float(first) == float(value)
                    if key == "cpus"
                    else parse_size_b(first) == parse_size_b(value) and parse_size_b(value) is not None
                )
                if not same:
                    first_at = self.doc.location(first_path)
                    self.err(
                        where,
                        f"{value} disagrees with {service_key}: {first}"
                        + (f" (line {first_at.line})" if first_at else "")
                        + "; give one, or the same value in both",
                    )
                    continue
            given[key] = (where, value)
