"""Generic shape checks of a scenario's values: the base of the service, flow and metric checks.

Every problem is collected (not only the first) with the file, line and key path it is about. Unknown
keys are errors unless the scenario sets `ignore-unsupported-compose: true`, in which case they are
warnings. Unsafe items (host ports, host paths outside the root, odd environment names, ...) are errors,
warnings that drop the item with `skip_unsafe` (GMT's `--skip-unsafe`), or allowed with `allow_unsafe`.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.measure.scenario.model import ShellCommand
from wattwise.measure.scenario.problems import KeyPath, Problem, format_path
from wattwise.measure.scenario.source import Document

SERVICE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
PROGRAM_RE = re.compile(r"^[a-zA-Z0-9_./+-]+$")
SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*([bkmgt]i?b?)?$", re.IGNORECASE)
MAX_VALUE_CHARS = 1024  # GMT's limit for environment and label values (without --allow-unsafe)
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


def _host_memory_b() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class CheckOptions:
    """How a scenario is judged: safety switches, the root its paths must stay in, the host's size."""

    allow_unsafe: bool = False
    skip_unsafe: bool = False  # unsafe items are left out with a warning instead of being errors
    backend: str = "auto"  # auto | container | host: what the machine (command line, configuration) chose
    root: Path | None = None  # paths may leave the scenario's folder, never this (default: the scenario's folder)
    host_cpus: float | None = field(default_factory=lambda: float(os.cpu_count() or 1))
    host_memory_b: int | None = field(default_factory=_host_memory_b)
    verbose: bool = False  # notes on keys accepted and ignored go into Scenario.notes


class ShapeChecks:
    """Reporting and the checks of plain shapes (mappings, text, numbers, lists, key=value pairs)."""

    def __init__(self, document: Document, options: CheckOptions) -> None:
        self.doc = document
        self.options = options
        self.allow_unsafe = options.allow_unsafe
        self.problems: list[Problem] = []
        self.warnings: list[str] = list(document.warnings)
        self.notes: list[str] = []
        self.ignore_unsupported = False
        self.folder = document.path.resolve().parent
        self.root = (options.root or self.folder).resolve()
        self.dependency_paths: dict[tuple[str, str], KeyPath] = {}

    # --- reporting -------------------------------------------------------------------------------
    def where(self, path: KeyPath) -> str:
        location = self.doc.location(path)
        return f"{location}: " if location else ""

    def err(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.doc.location(path), path, message))

    def warn(self, path: KeyPath, message: str) -> None:
        self.warnings.append(f"{self.where(path)}{format_path(path)}: {message}")

    def note(self, path: KeyPath, message: str) -> None:
        """Said with --verbose: how a key GMT accepts is used or ignored."""
        self.notes.append(f"{self.where(path)}{format_path(path)}: {message}")

    def unsafe(self, path: KeyPath, message: str, hint: str = "run with --allow-unsafe to allow it") -> bool:
        """Whether an unsafe item may be used: yes with --allow-unsafe, no (a warning) with --skip-unsafe,
        else no (an error)."""
        if self.options.allow_unsafe:
            return True
        if self.options.skip_unsafe:
            self.warn(path, f"{message}; left out (--skip-unsafe)")
            return False
        self.err(path, f"{message}; {hint}")
        return False

    def unknown(self, path: KeyPath, allowed: set[str], where: str) -> None:
        key = str(path[-1])
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if self.ignore_unsupported:
            self.warnings.append(
                f"{self.where(path)}{format_path(path)}: {where} key {key!r} is not supported and is ignored"
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
        """A mapping or a list of KEY=VALUE strings (environment or labels), with GMT's safety checks."""
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
        what = "environment variable" if environment else "label"
        key_re = ENV_KEY_RE if environment else LABEL_KEY_RE
        allowed_chars = "letters, digits and _" if environment else "letters, digits, _ and ."
        out: dict[str, str] = {}
        for item_path, key, item in pairs:
            if not key_re.match(key) and not self.unsafe(
                item_path,
                f"{what} name {key!r} is not allowed ({allowed_chars}, not starting with a digit)",
                "--allow-unsafe accepts it",
            ):
                continue
            if item is None:
                if environment and not self.unsafe(
                    item_path,
                    f"{key} has no value, so it would be taken from the host's environment",
                    "give a value or run with --allow-unsafe",
                ):
                    continue
                out[key] = os.environ.get(key, "") if environment else ""
                continue
            if isinstance(item, bool):
                text = "true" if item else "false"
            elif isinstance(item, str | int | float):
                text = str(item)
            else:
                self.err(item_path, f"must be text or a number, got {describe(item)}")
                continue
            if "\x00" in text:
                self.err(item_path, "must not contain NUL characters")
                continue
            if len(text) > MAX_VALUE_CHARS and not self.unsafe(
                item_path,
                f"the value of {what} {key!r} has {len(text)} characters, more than {MAX_VALUE_CHARS}",
                "--allow-unsafe accepts it",
            ):
                continue
            out[key] = text
        return out

    def inside_root(self, path: KeyPath, raw: str, what: str) -> Path | None:
        """A path of the file (relative to the scenario's folder) resolved, symlinks included. It may leave
        the scenario's folder but not the root; absolute host paths need --allow-unsafe. None when refused."""
        given = Path(raw).expanduser()
        written = Path(os.path.normpath(self.folder / given))  # `..` taken as written, symlinks not followed
        resolved = written.resolve()
        if resolved.is_relative_to(self.root):
            return resolved
        shown = "the scenario's folder" if self.root == self.folder else "the root (--uri)"
        message = f"{what} {raw!r} is outside {shown}"
        if given.is_absolute():
            message += " (an absolute host path)"
        elif written.is_relative_to(self.root):
            message += f" (through a symlink, to {resolved})"
        return resolved if self.unsafe(path, message, "only --allow-unsafe permits host paths outside it") else None

    def size(self, path: KeyPath, value: Any) -> str | None:
        """A memory size: plain bytes (a number or digits) or with a unit (512m, 2g, 1GiB)."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, float) and value > 0:
            return str(int(value))
        if isinstance(value, str) and SIZE_RE.match(value.strip()):
            return value.strip()
        self.err(path, f"must be a size such as 512m, 2g or a number of bytes, got {describe(value)}")
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

    def shell_options(self, path: KeyPath, value: Any) -> list[str]:
        """`shell-options`: a string split like a shell would, or a list kept in its order."""
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                self.err(path, f"cannot split into options: {exc}")
                return []
        if not isinstance(value, list):
            self.err(path, f"must be text or a list of options, got {describe(value)}")
            return []
        options = self.string_list(path, value)
        for index, option in enumerate(options):
            if not option.startswith("-") and not (index > 0 and options[index - 1] in ("-o", "+o")):
                self.err((*path, index), f"shell options start with '-' (or follow -o), got {option!r}")
        return options

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
