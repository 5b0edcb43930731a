"""GMT's merges after a scenario is read: `compose-file` under the scenario, then `flow-prepend` before `flow`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wattwise.measure.scenario.problems import KeyPath, Location, Problem, ScenarioError

if TYPE_CHECKING:
    from wattwise.measure.scenario.source import Document

__all__ = ["deep_merge", "merge_compose", "prepend_flow"]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def deep_merge(base: Any, over: Any) -> Any:
    """`over` merged onto `base`: mappings key by key (recursively), anything else replaced."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    merged = dict(base)
    for key, value in over.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else value
    return merged


def prepend_flow(document: Document) -> None:
    """GMT's `flow-prepend` (usually from a helper): its steps run before the scenario's `flow`."""
    value = dict(document.value)
    prepend = value.pop("flow-prepend")
    where = document.locations.get(("flow-prepend",))
    if not isinstance(prepend, list):
        raise ScenarioError(
            str(document.path),
            [Problem(where, ("flow-prepend",), f"must be a list of flow steps, got {_describe(prepend)}")],
        )
    flow = value.get("flow")
    own = flow if isinstance(flow, list) else []
    value["flow"] = [*prepend, *own]
    locations: dict[KeyPath, Location] = {}
    for key_path, loc in document.locations.items():
        if key_path[:1] == ("flow",) and len(key_path) > 1 and isinstance(key_path[1], int):
            locations[("flow", key_path[1] + len(prepend), *key_path[2:])] = loc
        elif key_path[:1] == ("flow-prepend",):
            locations[("flow", *key_path[1:])] = loc
        else:
            locations[key_path] = loc
    if flow is not None and not isinstance(flow, list):
        value["flow"] = flow  # let the flow check report its shape
    document.value = value
    document.locations = locations



def merge_compose(document: Document) -> None:
    value = dict(document.value)
    compose = value.pop("compose-file")
    where = document.locations.get(("compose-file",))
    if not isinstance(compose, dict):
        raise ScenarioError(
            str(document.path),
            [
                Problem(
                    where,
                    ("compose-file",),
                    f"must be a mapping, got {_describe(compose)}: write compose-file: !include compose.yml",
                )
            ],
        )
    merged = deep_merge(compose, value)
    services = merged.get("services")
    if isinstance(services, dict):
        merged["services"] = {name: spec for name, spec in services.items() if spec is not None}
    locations: dict[KeyPath, Location] = {}
    for key_path, loc in document.locations.items():
        if key_path[:1] != ("compose-file",):
            locations[key_path] = loc
    for key_path, loc in document.locations.items():
        if key_path[:1] == ("compose-file",) and len(key_path) > 1:
            locations.setdefault(key_path[1:], loc)
    document.value = merged
    document.locations = locations
