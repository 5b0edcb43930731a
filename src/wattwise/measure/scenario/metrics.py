"""Checks of `custom_metrics` and the legacy `sci` key (the SCI functional unit R)."""

from __future__ import annotations

import re
from typing import Any

from wattwise.measure.scenario.checks import ShapeChecks, describe
from wattwise.measure.scenario.model import CustomMetric
from wattwise.measure.scenario.problems import KeyPath

CUSTOM_METRIC_KEYS = {"unit", "regex", "sci"}
METRIC_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")


def default_metric_regex(name: str) -> str:
    """Without `regex`, a metric is read from note-style lines as GMT prints them:
    `<timestamp> <name>=<value>` (the timestamp in s, ms, µs or ns; the value a number)."""
    return rf"^(?P<timestamp>\d+)\s+{re.escape(name)}=(?P<value>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$"


class MetricChecks(ShapeChecks):
    def custom_metrics(self, value: Any) -> dict[str, CustomMetric]:
        path: KeyPath = ("custom_metrics",)
        raw = self.mapping(path, value, None)
        out: dict[str, CustomMetric] = {}
        for name, spec in (raw or {}).items():
            item_path = (*path, name)
            if not METRIC_NAME_RE.match(str(name)):
                self.err(item_path, "metric names start with a letter and use letters, digits, '_', '.', '-'")
                continue
            checked = self.mapping(item_path, spec, CUSTOM_METRIC_KEYS, ("unit",), where="custom metric")
            if not checked or "unit" not in checked:
                continue
            unit = self.text((*item_path, "unit"), checked["unit"])
            if "regex" in checked:
                pattern = self.text((*item_path, "regex"), checked["regex"])
            else:
                pattern = default_metric_regex(str(name))
                self.note(item_path, f"no regex: lines '<timestamp> {name}=<value>' are read (GMT's default)")
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
