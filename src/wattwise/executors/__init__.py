"""Executors: carry a scheduling decision out on a real system (least-carbon start, Slurm `sbatch --begin`).

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.executors.planning import StartPlan, carbon_for_starts, plan_start
    from wattwise.executors.slurm import Submission, sbatch_argv, slurm_begin, submit

__all__ = [
    "StartPlan",
    "Submission",
    "carbon_for_starts",
    "plan_start",
    "sbatch_argv",
    "slurm_begin",
    "submit",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "StartPlan": "wattwise.executors.planning",
    "carbon_for_starts": "wattwise.executors.planning",
    "plan_start": "wattwise.executors.planning",
    "Submission": "wattwise.executors.slurm",
    "sbatch_argv": "wattwise.executors.slurm",
    "slurm_begin": "wattwise.executors.slurm",
    "submit": "wattwise.executors.slurm",
})
