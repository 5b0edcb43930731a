"""Checks of the `flow`: steps, their names (GMT's character set) and their commands."""

from __future__ import annotations

import re
from typing import Any

from wattwise.measure.scenario.checks import ShapeChecks, describe
from wattwise.measure.scenario.model import FlowCommand, FlowStep, Service
from wattwise.measure.scenario.problems import KeyPath

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
#: flow step names GMT accepts: letters, digits, whitespace, '.', '_', '-', '(' and ')'
FLOW_NAME_RE = re.compile(r"^[.\s0-9a-zA-Z_()-]+$")


class FlowChecks(ShapeChecks):
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
            name = self.text((*item_path, "name"), raw["name"], numbers=True) if "name" in raw else None
            if name is not None:
                if not FLOW_NAME_RE.match(name):
                    bad = sorted({c for c in name if not FLOW_NAME_RE.match(c)})
                    self.err(
                        (*item_path, "name"),
                        f"{name!r} has characters GMT does not allow in flow names ({' '.join(bad)}): use "
                        "letters, digits, spaces, '.', '_', '-', '(' and ')'",
                    )
                    name = None
                elif name in names:
                    self.err((*item_path, "name"), f"{name!r} is already the name of flow[{names[name]}]")
                else:
                    names[name] = index
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
