"""Limits that keep hostile scenario files harmless: file size, nesting depth, aliases and expansion.

A scenario may come from someone else (a cluster queue, a pull request), so reading it must stay cheap
whatever it holds:

- files larger than `max_file_bytes` (default 10 MB, `$WATTWISE_SCENARIO_MAX_BYTES`) are refused before
  they are parsed;
- mappings and lists nested deeper than `max_depth` are refused while composing (PyYAML's composer is
  recursive: 100,000 levels would end in a RecursionError);
- at most `max_events` (30,000) YAML events (scalars, mappings, lists, aliases) per file: these limits are checked
  first by libyaml's C parser (≈ 0.5 M events/s), so a huge file is refused in about a second, and what
  PyYAML's pure-Python composer then reads (≈ 8-15 k events/s with the checks, for line numbers) stays
  under ≈ 4 s;
- at most `max_aliases` aliases (`*name`) per file, and at most `max_nodes` values after aliases are
  expanded: a "billion laughs" file of a few hundred bytes expands to billions of values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node

INCLUDE_TAGS = ("!include", "!include-gmt-helper")
_ENV_MAX_BYTES = "WATTWISE_SCENARIO_MAX_BYTES"


def _default_max_bytes() -> int:
    raw = os.environ.get(_ENV_MAX_BYTES, "")
    try:
        return int(raw) if raw.strip() else 10_000_000
    except ValueError:
        return 10_000_000


@dataclass
class LoadLimits:
    max_file_bytes: int = field(default_factory=_default_max_bytes)
    max_depth: int = 64
    max_aliases: int = 1_000
    max_events: int = 30_000  # per file, before aliases are expanded
    max_nodes: int = 200_000  # values after aliases and includes are expanded, over all files

    def describe_size(self) -> str:
        return f"{self.max_file_bytes / 1e6:g} MB"


class LimitExceeded(yaml.YAMLError):
    """A hostile or absurdly large file; `line` is where it was noticed (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def prescan(text: str, limits: LoadLimits) -> None:
    """Depth, aliases and events counted at C speed (libyaml) before the slow composer runs. Raises
    LimitExceeded; syntax errors are left to the composer, which reports them with their line."""
    try:
        from yaml._yaml import CParser  # libyaml
    except ImportError:  # PyYAML without libyaml: the composer's own checks still apply
        return
    parser = CParser(text)
    depth = aliases = events = 0
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            events += 1
            line = event.start_mark.line + 1 if event.start_mark else 1
            if events > limits.max_events:
                raise LimitExceeded(
                    f"the file has more than {limits.max_events:,} YAML values and structures: refused as too large",
                    line,
                )
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    raise LimitExceeded(f"values are nested more than {limits.max_depth} levels deep", line)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            elif isinstance(event, AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    raise LimitExceeded(
                        f"more than {limits.max_aliases} aliases (*name): refused as a possible alias bomb", line
                    )
    except yaml.YAMLError as exc:
        if isinstance(exc, LimitExceeded):
            raise
        return  # a syntax error: the composer reports it with its line
    finally:
        parser.dispose()


class GuardedLoader(yaml.SafeLoader):
    """SafeLoader that knows the include tags (resolved later, node by node) and enforces LoadLimits while
    composing: nesting depth and the number of aliases."""

    limits = LoadLimits()

    def __init__(self, stream: str, limits: LoadLimits) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > self.limits.max_aliases:
                event = self.peek_event()
                raise LimitExceeded(
                    f"more than {self.limits.max_aliases} aliases (*name): refused as a possible alias bomb",
                    event.start_mark.line + 1,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                event = self.peek_event()
                raise LimitExceeded(
                    f"values are nested more than {self.limits.max_depth} levels deep",
                    event.start_mark.line + 1,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _include_placeholder(loader: GuardedLoader, node: Node) -> None:  # pragma: no cover - never called
    raise AssertionError("!include is resolved while converting nodes")


for _tag in INCLUDE_TAGS:
    GuardedLoader.add_constructor(_tag, _include_placeholder)


class NodeBudget:
    """Counts the values produced while converting nodes (aliases and includes expanded)."""

    def __init__(self, limits: LoadLimits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, line: int) -> None:
        self.used += 1
        if self.used > self.limits.max_nodes:
            raise LimitExceeded(
                f"the scenario expands to more than {self.limits.max_nodes:,} values (aliases and includes "
                "counted as often as they are used): refused as too large or an alias bomb",
                line,
            )
