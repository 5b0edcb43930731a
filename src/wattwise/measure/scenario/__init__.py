"""Usage scenarios (GMT usage_scenario.yml): source → schema → model → runner → backends.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.errors import ScenarioError
    from wattwise.measure.scenario.runner import RunOptions, ScenarioInterrupted, ScenarioResult, run_scenario
    from wattwise.measure.scenario.schema import load_scenario

__all__ = [
    "RunOptions",
    "ScenarioError",
    "ScenarioInterrupted",
    "ScenarioResult",
    "load_scenario",
    "run_scenario",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "load_scenario": "wattwise.measure.scenario.schema",
    "RunOptions": "wattwise.measure.scenario.runner",
    "ScenarioInterrupted": "wattwise.measure.scenario.runner",
    "ScenarioResult": "wattwise.measure.scenario.runner",
    "run_scenario": "wattwise.measure.scenario.runner",
    "ScenarioError": "wattwise.errors",
})
