"""Reading a usage_scenario.yml: variables, YAML with the line of every key, `!include`, `compose-file`.

The steps, in order:
1. `__GMT_VAR_NAME__` variables are replaced as plain text in the scenario and in every file it
   includes (before YAML parsing, so a variable may stand anywhere). A variable in a file with no value
   given is an error naming its line; a value given for a variable that no file uses is an error too.
2. The text is parsed into YAML nodes (within the limits of `yamlguard`: size, depth, aliases) and
   converted to plain Python values. Each key and list item's file and line are recorded by key path, so
   that later checks can say where a problem is. A key given twice keeps its last value, as in GMT, with
   a warning naming both lines (`duplicates="error"` makes it an error).
3. `!include FILE`, `!include [FILE, KEY]` (GMT's form; `!include FILE KEY` works too) is replaced by
   FILE's content, or by the value of KEY found anywhere in it (depth first, GMT's recursive lookup).
   FILE is relative to the including file; it may leave the scenario's folder but never the root
   (`--uri`), symlinks included. `!include-gmt-helper NAME` reads one of GMT's helper files
   (`gmt-playwright-[with-cache-]vX.Y.Z.yml`) from `$WATTWISE_GMT_HELPERS`.
4. `compose-file: <mapping>` (usually `!include compose.yml`) is deep-merged under the scenario: the
   scenario's keys win, mappings merge key by key, and services set to null are removed. Then
   `flow-prepend` (usually from a helper) is put before the scenario's `flow`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from wattwise.measure.scenario.problems import KeyPath, Location, Problem, ScenarioError, format_path
from wattwise.measure.scenario.yamlguard import GuardedLoader, LimitExceeded, LoadLimits, NodeBudget, prescan

__all__ = ["Document", "LoadLimits", "deep_merge", "load_document", "parse_variables", "variable_name"]

VARIABLE_RE = re.compile(r"__GMT_VAR_(\w+?)__")
MERGE_TAG = "tag:yaml.org,2002:merge"
INCLUDE_TAG = "!include"
HELPER_TAG = "!include-gmt-helper"
HELPER_RE = re.compile(r"gmt-playwright-(?:with-cache-)?v\d+\.\d+\.\d+\.yml")
ENV_HELPERS = "WATTWISE_GMT_HELPERS"
MAX_INCLUDE_DEPTH = 10


def variable_name(key: str) -> str:
    """`PORT` or `__GMT_VAR_PORT__` -> `__GMT_VAR_PORT__`."""
    key = key.strip()
    if VARIABLE_RE.fullmatch(key):
        return key
    if re.fullmatch(r"\w+", key) and not key.startswith("__"):
        return f"__GMT_VAR_{key}__"
    raise ScenarioError(
        "--variable",
        [
            Problem(
                None,
                (),
                f"variable name {key!r} is not valid: use NAME=VALUE or __GMT_VAR_NAME__=VALUE "
                "(letters, digits and underscores)",
            )
        ],
    )


def parse_variables(pairs: list[str] | None) -> dict[str, str]:
    """`--variable K=V` values into {'__GMT_VAR_K__': 'V'}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ScenarioError(
                "--variable",
                [Problem(None, (), f"{pair!r} has no value: use --variable NAME=VALUE")],
            )
        key, value = pair.split("=", 1)
        out[variable_name(key)] = value
    return out


@dataclass
class Document:
    """A scenario's merged content, the location of each key path, and what was read to make it."""

    path: Path
    value: Any
    locations: dict[KeyPath, Location]
    text: str  # the scenario file's text after variable substitution
    files: list[str] = field(default_factory=list)  # display names of every file read
    warnings: list[str] = field(default_factory=list)  # e.g. duplicate keys (the last one wins)

    def location(self, path: KeyPath) -> Location | None:
        """Where a key path is written (or the nearest enclosing key that is)."""
        while True:
            if path in self.locations:
                return self.locations[path]
            if not path:
                return None
            path = path[:-1]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Reader:
    def __init__(
        self,
        root: Path,
        variables: dict[str, str],
        duplicates: Literal["warn", "error"] = "warn",
        limits: LoadLimits | None = None,
    ) -> None:
        self.root = root.resolve()
        self.folder = self.root  # the scenario's folder; set by load_document
        self.variables = variables
        self.duplicates = duplicates
        self.limits = limits or LoadLimits()
        self.budget = NodeBudget(self.limits)
        self.used: set[str] = set()
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.files: list[str] = []
        self.include_stack: list[Path] = []

    def display(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def problem(self, location: Location | None, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(location, path, message))

    # --- text ------------------------------------------------------------------------------------
    def substitute(self, text: str, file: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(0)
            if name in self.variables:
                self.used.add(name)
                return self.variables[name]
            line = text.count("\n", 0, match.start()) + 1
            short = match.group(1)
            self.problem(
                Location(file, line),
                (),
                f"variable {name} has no value: give it with --variable {short}=VALUE",
            )
            return name

        return VARIABLE_RE.sub(replace, text)

    def read_file(self, path: Path, base: KeyPath, locations: dict[KeyPath, Location]) -> tuple[Any, str] | None:
        """Parse one file; its key locations are stored under `base`. None when it could not be read."""
        file = self.display(path)
        try:
            size = path.stat().st_size
            if size > self.limits.max_file_bytes:
                self.problem(
                    Location(file, 1),
                    (),
                    f"the file has {size:,} bytes, more than the limit of {self.limits.describe_size()} "
                    f"(${'WATTWISE_SCENARIO_MAX_BYTES'} sets it)",
                )
                return None
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.problem(Location(file, 1), (), "is not UTF-8 text")
            return None
        except OSError as exc:
            self.problem(None, (), f"cannot read {file}: {exc.strerror}")
            return None
        self.files.append(file)
        text = self.substitute(raw, file)
        try:
            prescan(text, self.limits)
            loader = GuardedLoader(text, self.limits)
        except LimitExceeded as exc:
            self.problem(Location(file, exc.line), (), exc.message)
            return None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, max(0, exc.position)) + 1
            self.problem(Location(file, line), (), f"YAML syntax error: character {exc.character!r} is not allowed")
            return None
        try:
            node = loader.get_single_node()
        except LimitExceeded as exc:
            self.problem(Location(file, exc.line), (), exc.message)
            return None
        except RecursionError:
            self.problem(Location(file, 1), (), "values are nested too deeply")
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            reason = str(exc.problem or exc)
            if exc.context:
                context = str(exc.context)
                if exc.context_mark is not None and exc.context_mark.line + 1 != line:
                    context += f" that starts on line {exc.context_mark.line + 1}"
                reason += f" ({context})"
            self.problem(Location(file, line), (), f"YAML syntax error: {reason}")
            return None
        except yaml.reader.ReaderError as exc:  # a bad character found later in the stream
            line = text.count("\n", 0, max(0, exc.position)) + 1
            self.problem(Location(file, line), (), f"YAML syntax error: character {exc.character!r} is not allowed")
            return None
        except yaml.YAMLError as exc:
            self.problem(Location(file, 1), (), f"YAML syntax error: {exc}")
            return None
        finally:
            loader.dispose()
        if node is None:
            return None, text
        self.include_stack.append(path.resolve())
        try:
            value = self.convert(node, loader, file, base, locations)
        except LimitExceeded as exc:
            self.problem(Location(file, exc.line), (), exc.message)
            return None
        finally:
            self.include_stack.pop()
        return value, text

    # --- nodes -----------------------------------------------------------------------------------
    def convert(
        self, node: Node, loader: GuardedLoader, file: str, path: KeyPath, locations: dict[KeyPath, Location]
    ) -> Any:
        here = Location(file, node.start_mark.line + 1)
        self.budget.spend(here.line)
        locations.setdefault(path, here)
        if node.tag in (INCLUDE_TAG, HELPER_TAG):
            return self.include(node, loader, file, path, locations)
        if isinstance(node, MappingNode):
            try:
                pairs = _merge_key_pairs(node)  # YAML merge keys (<<: *anchor), resolved by the spec
            except _MergeKeyError as exc:
                self.problem(Location(file, exc.line), path, f"YAML merge key error: {exc}")
                return {}
            explicit = {id(k) for k, _ in node.value}
            result: dict[Any, Any] = {}
            first_line: dict[Any, int] = {}
            first_explicit: dict[Any, bool] = {}
            for key_node, value_node in pairs:
                if not isinstance(key_node, ScalarNode):
                    self.problem(Location(file, key_node.start_mark.line + 1), path, "keys must be plain text")
                    continue
                key = self.scalar(key_node, loader, file, path)
                if isinstance(key, bool | int | float) or key is None:
                    key = key_node.value  # `80: x` or `on: x` keep their text
                line = key_node.start_mark.line + 1
                is_explicit = id(key_node) in explicit
                if key in first_line:
                    if first_explicit[key] and is_explicit:
                        if self.duplicates == "error":
                            self.problem(
                                Location(file, line),
                                (*path, key),
                                f"duplicate key (first given on line {first_line[key]})",
                            )
                            continue
                        self.warnings.append(
                            f"{file}:{line}: {format_path((*path, key))}: duplicate key (first given on line "
                            f"{first_line[key]}); the value of line {line} is used, as GMT does"
                        )
                        for stale in [p for p in locations if p[: len(path) + 1] == (*path, key)]:
                            del locations[stale]
                    # a merged value overridden by the mapping's own key (merged pairs come first)
                    locations[(*path, key)] = Location(file, line)
                first_line[key] = line
                first_explicit[key] = first_explicit.get(key, False) or is_explicit
                locations.setdefault((*path, key), Location(file, line))
                result[key] = self.convert(value_node, loader, file, (*path, key), locations)
            return result
        if isinstance(node, SequenceNode):
            return [
                self.convert(item, loader, file, (*path, index), locations) for index, item in enumerate(node.value)
            ]
        return self.scalar(node, loader, file, path)

    def scalar(self, node: Node, loader: GuardedLoader, file: str, path: KeyPath) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = exc.problem or str(exc)
            if node.tag.startswith("!"):
                problem = f"unknown YAML tag {node.tag} (only !include and !include-gmt-helper are supported)"
            self.problem(Location(file, node.start_mark.line + 1), path, problem)
            return None

    def include_args(self, node: Node, loader: GuardedLoader, here: Location, path: KeyPath) -> list[str] | None:
        """`!include FILE`, `!include FILE KEY` or `!include [FILE, KEY]` -> [FILE] or [FILE, KEY]."""
        usage = f"{node.tag} takes a file name and an optional key: {node.tag} FILE or {node.tag} [FILE, KEY]"
        args: list[str]
        if isinstance(node, ScalarNode):
            args = str(node.value).split()
        elif isinstance(node, SequenceNode) and all(isinstance(item, ScalarNode) for item in node.value):
            args = [str(item.value) for item in node.value]
        else:
            self.problem(here, path, usage)
            return None
        if not 1 <= len(args) <= 2 or not all(arg.strip() for arg in args):
            self.problem(here, path, usage)
            return None
        return args

    def include(
        self, node: Node, loader: GuardedLoader, file: str, path: KeyPath, locations: dict[KeyPath, Location]
    ) -> Any:
        here = Location(file, node.start_mark.line + 1)
        args = self.include_args(node, loader, here, path)
        if args is None:
            return None
        name, key = args[0], (args[1] if len(args) == 2 else None)
        shown = f"{node.tag} {name}"
        if node.tag == HELPER_TAG:
            if not HELPER_RE.fullmatch(name):
                self.problem(
                    here, path, f"{shown}: GMT's helpers are named gmt-playwright-[with-cache-]vX.Y.Z.yml"
                )
                return None
            helpers = os.environ.get(ENV_HELPERS, "")
            if not helpers or not (Path(helpers) / name).is_file():
                self.problem(
                    here,
                    path,
                    f"{shown}: GMT's helper files are not part of wattwise; put GMT's templates/partials folder "
                    f"on this machine and name it in ${ENV_HELPERS}"
                    + (f" (not found in {helpers})" if helpers else ""),
                )
                return None
            resolved = (Path(helpers) / name).resolve()
        else:
            target = Path(name)
            including = self.folder  # as GMT does: relative to the scenario's folder, also in included files
            resolved = (including / target).resolve()
            if target.is_absolute() or not resolved.is_relative_to(self.root):
                where = "the scenario's folder" if self.root == self.folder else "the root (--uri)"
                self.problem(here, path, f"{shown}: only files inside {where} can be included")
                return None
            if not resolved.is_file():
                self.problem(here, path, f"{shown}: no such file ({self.display(including / target)})")
                return None
        if resolved in self.include_stack:
            chain = " -> ".join(self.display(p) for p in [*self.include_stack, resolved])
            self.problem(here, path, f"{shown}: files include each other ({chain})")
            return None
        if len(self.include_stack) > MAX_INCLUDE_DEPTH:
            self.problem(here, path, f"{shown}: more than {MAX_INCLUDE_DEPTH} nested includes")
            return None
        inner: dict[KeyPath, Location] = {}
        read = self.read_file(resolved, (), inner)
        if read is None:
            return None
        value, _ = read
        if key is not None:
            found = _lookup(value, key)
            if found is None:
                self.problem(here, path, f"{shown} {key}: {name} has no key {key!r} (looked up at every level)")
                return None
            prefix, value = found
            inner = {p[len(prefix) :]: loc for p, loc in inner.items() if p[: len(prefix)] == prefix}
        for sub, loc in inner.items():
            if sub:
                locations.setdefault((*path, *sub), loc)
        return value


def _lookup(value: Any, key: str) -> tuple[KeyPath, Any] | None:
    """GMT's recursive key lookup: KEY at the top level, else in nested mappings, depth first.
    Returns (the key path where it was found, its value)."""
    stack: list[tuple[KeyPath, Any]] = [((), value)]
    while stack:
        prefix, current = stack.pop()
        if not isinstance(current, dict):
            continue
        if key in current:
            return (*prefix, key), current[key]
        stack.extend(reversed([((*prefix, k), v) for k, v in current.items() if isinstance(v, dict)]))
    return None


class _MergeKeyError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _merge_key_pairs(
    node: MappingNode, _visiting: frozenset[int] = frozenset(), _memo: dict[int, list[tuple[Node, Node]]] | None = None
) -> list[tuple[Node, Node]]:
    """The mapping's pairs with YAML merge keys (`<<`) resolved as the merge-key spec says, whatever the
    PyYAML version: merged pairs first, then the mapping's own pairs (so its own keys override merged ones);
    with a list of sources, a key from an earlier source wins over the same key from a later one. Merged
    mappings may merge in turn. The node is not changed (anchored nodes are shared)."""
    own: list[tuple[Node, Node]] = []
    sources: list[Node] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag == MERGE_TAG:
            items = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            sources.extend(items)
        else:
            own.append((key_node, value_node))
    if not sources:
        return own
    memo = {} if _memo is None else _memo  # a source merged many times is resolved once (no merge-key bomb)
    if id(node) in memo:
        return memo[id(node)]
    merged: list[tuple[Node, Node]] = []
    seen: set[tuple[str, str]] = set()
    visiting = _visiting | {id(node)}
    for source in sources:
        if id(source) in visiting:
            raise _MergeKeyError("a mapping merges itself (<< refers to its own anchor)", source.start_mark.line + 1)
        if not isinstance(source, MappingNode):
            raise _MergeKeyError(
                f"<< expects a mapping or a list of mappings, found {getattr(source, 'id', 'a value')}",
                source.start_mark.line + 1,
            )
        for key_node, value_node in _merge_key_pairs(source, visiting, memo):
            ident = (key_node.tag, key_node.value) if isinstance(key_node, ScalarNode) else ("", str(id(key_node)))
            if ident not in seen:  # an earlier source already gave this key
                seen.add(ident)
                merged.append((key_node, value_node))
    memo[id(node)] = merged + own
    return memo[id(node)]


def load_document(
    path: str | Path,
    variables: dict[str, str] | None = None,
    *,
    root: Path | None = None,
    duplicates: Literal["warn", "error"] = "error",
    limits: LoadLimits | None = None,
) -> Document:
    """Read, substitute, parse, include and merge a scenario file. Raises ScenarioError with every
    problem found (file, line, key path, message).

    `root`: what includes may not leave (default: the scenario's folder). `duplicates`: a key given twice
    in one mapping is an error, or a warning with the last value kept (GMT's behaviour, used by
    `load_scenario`)."""
    path = Path(path)
    variables = dict(variables or {})
    if not path.is_file():
        raise ScenarioError(str(path), [Problem(None, (), "no such file")])
    folder = path.resolve().parent
    root = (root or folder).resolve()
    if not folder.is_relative_to(root):
        raise ScenarioError(str(path), [Problem(None, (), f"the scenario file is outside the root {root}")])
    reader = _Reader(root, variables, duplicates, limits)
    reader.folder = folder
    locations: dict[KeyPath, Location] = {}
    read = reader.read_file(path.resolve(), (), locations)
    for name in sorted(set(variables) - reader.used):
        short = VARIABLE_RE.fullmatch(name)
        shown = short.group(1) if short else name
        reader.problem(None, (), f"variable {shown} is given (--variable) but no file of the scenario uses {name}")
    if reader.problems or read is None:
        if read is not None and read[0] is None and not reader.problems:
            reader.problem(Location(reader.display(path), 1), (), "the file is empty")
        raise ScenarioError(str(path), reader.problems)
    value, text = read
    if value is None:
        raise ScenarioError(str(path), [Problem(Location(reader.display(path), 1), (), "the file is empty")])
    document = Document(path, value, locations, text, reader.files, reader.warnings)
    if isinstance(value, dict) and "compose-file" in value:
        merge_compose(document)
    if isinstance(document.value, dict) and "flow-prepend" in document.value:
        prepend_flow(document)
    return document


from wattwise.measure.scenario.compose import deep_merge, merge_compose, prepend_flow  # noqa: E402
