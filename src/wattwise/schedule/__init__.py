"""Carbon-aware scheduling test bed: job and carbon traces, policies, exact solvers, simulator, sweeps.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.errors import Infeasible, JobTraceError
    from wattwise.schedule.jobs import Job, make_job, parse_jobs, read_jobs
    from wattwise.schedule.profile import SlotProfile, slot_profile
    from wattwise.schedule.solvers import Plan
    from wattwise.schedule.sweep import Grid, load_grid, run_sweep

__all__ = [
    "Grid",
    "Infeasible",
    "Job",
    "JobTraceError",
    "Plan",
    "SlotProfile",
    "load_grid",
    "make_job",
    "parse_jobs",
    "read_jobs",
    "run_sweep",
    "slot_profile",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Job": "wattwise.schedule.jobs",
    "make_job": "wattwise.schedule.jobs",
    "parse_jobs": "wattwise.schedule.jobs",
    "read_jobs": "wattwise.schedule.jobs",
    "SlotProfile": "wattwise.schedule.profile",
    "slot_profile": "wattwise.schedule.profile",
    "Plan": "wattwise.schedule.solvers",
    "Grid": "wattwise.schedule.sweep",
    "load_grid": "wattwise.schedule.sweep",
    "run_sweep": "wattwise.schedule.sweep",
    "Infeasible": "wattwise.errors",
    "JobTraceError": "wattwise.errors",
})
