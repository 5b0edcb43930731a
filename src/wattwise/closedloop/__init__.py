"""The closed loop on Slurm: a job model and a carbon forecast → the scheduler's optimal plan → executed as a
chain of checkpointed Slurm jobs → what really ran, with its energy and carbon, against the plan.

It sits above both halves of wattwise: it plans with `schedule`'s solvers, submits like `executors`, and keeps
plans in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.closedloop.chain import check_sbatch_args, submit_chain
    from wattwise.closedloop.plan import POLICIES, ChainPlan, Segment, plan_chain
    from wattwise.closedloop.report import job_records, plan_report

__all__ = ["POLICIES", "ChainPlan", "Segment", "check_sbatch_args", "job_records", "plan_chain", "plan_report",
           "submit_chain"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "check_sbatch_args": "wattwise.closedloop.chain",
    "submit_chain": "wattwise.closedloop.chain",
    "POLICIES": "wattwise.closedloop.plan",
    "ChainPlan": "wattwise.closedloop.plan",
    "Segment": "wattwise.closedloop.plan",
    "plan_chain": "wattwise.closedloop.plan",
    "job_records": "wattwise.closedloop.report",
    "plan_report": "wattwise.closedloop.report",
})
