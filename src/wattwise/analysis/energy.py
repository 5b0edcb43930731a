"""The three energy figures of a phase, defined once (docs/measurement.md, "Energy figures").

* machine energy (`energy_j`): everything the machine drew during the phase, from the best source present
  (IPMI at the wall; RAPL package + DRAM + GPU; else ≈ the load→power estimate);
* the unit's attributed energy (`unit_energy_j`): machine energy × the unit's share (`unit_cpu_share`), the
  unit's cgroup CPU seconds ÷ the machine's busy CPU seconds in the phase — idle power included, in
  proportion to the CPU work the unit did; a container's `attributed_energy_j` is the same with the
  container's CPU seconds;
* energy above baseline (`above_baseline_energy_j`): machine energy − baseline power × duration, never below
  0, where the baseline power (`baseline_power_w`) is the mean machine power of `[BASELINE]` (or the run's
  `settings.baseline_power_w`); the unit's part is `unit_above_baseline_energy_j` = that × its share.

`add_energy_figures` adds the baseline figures to a `summarize_run` dictionary in place.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BASELINE", "above_baseline_j", "add_energy_figures"]

BASELINE = "[BASELINE]"


def above_baseline_j(energy_j: float | None, baseline_power_w: float | None, duration_s: float) -> float | None:
    """max(0, E − P₀ × d); None without an energy or a baseline."""
    if energy_j is None or baseline_power_w is None:
        return None
    surplus = energy_j - baseline_power_w * duration_s
    if abs(surplus) <= 1e-9 * max(abs(energy_j), 1.0):  # rounding noise of equal powers
        return 0.0
    return max(0.0, surplus)


def add_energy_figures(summary: dict[str, Any], baseline_power_w: float | None = None) -> dict[str, Any]:
    """Add `baseline_power_w` to the summary and `above_baseline_energy_j`,
    `unit_above_baseline_energy_j` to each phase (None where they cannot be known)."""
    phases = summary.get("phases", [])
    if baseline_power_w is None:
        baseline = next((p for p in phases if p.get("name") == BASELINE), None)
        if baseline is not None and baseline.get("duration_s"):
            baseline_power_w = baseline.get("mean_power_w")
    summary["baseline_power_w"] = baseline_power_w
    for p in phases:
        if p.get("name") == BASELINE:
            above = None
        else:
            above = above_baseline_j(p.get("energy_j"), baseline_power_w, float(p.get("duration_s") or 0.0))
        p["above_baseline_energy_j"] = above
        share = p.get("unit_cpu_share")
        p["unit_above_baseline_energy_j"] = above * share if above is not None and share is not None else None
    return summary
