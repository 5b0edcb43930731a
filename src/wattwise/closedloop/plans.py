"""Plans executed on Slurm, stored in the wattwise database (SQLite by default, PostgreSQL for teams)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.store.models import Base, utcnow

__all__ = ["FINAL_STATUSES", "SlurmPlan", "add_event", "get_plan", "merge_records", "replace_tail", "save_plan",
           "set_status", "update_plan"]

FINAL_STATUSES = ("done", "failed", "cancelled")


class SlurmPlan(Base):
    __tablename__ = "slurm_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))  # chain
    status: Mapped[str] = mapped_column(String(16))  # submitting | submitted | done | cancelled | failed
    checkpoint_dir: Mapped[str] = mapped_column(String(1000))
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    jobs: Mapped[list[Any]] = mapped_column(JSON)  # [{"index", "job_id", "argv"}]
    sbatch_args: Mapped[list[str]] = mapped_column(JSON)
    #: what the agent did, in order: {"t_s", "kind": checked|replan|suspend|resume|cancel|end, ...}
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)


def save_plan(store: Store, **fields: Any) -> int:
    with store.session() as session:
        row = SlurmPlan(**fields)
        session.add(row)
        session.flush()
        return int(row.id)


def update_plan(store: Store, plan_id: int, **fields: Any) -> None:
    with store.session() as session:
        row = session.get(SlurmPlan, plan_id)
        if row is None:
            raise WattwiseError(f"no Slurm plan with id {plan_id}")
        for key, value in fields.items():
            setattr(row, key, value)


def get_plan(store: Store, plan_id: int) -> SlurmPlan:
    with store.session() as session:
        row = session.scalars(select(SlurmPlan).where(SlurmPlan.id == plan_id)).first()
        if row is None:
            raise WattwiseError(f"no Slurm plan with id {plan_id} in {store.url}: see `wattwise slurm submit`")
        return row


def _locked(session: Session, plan_id: int) -> SlurmPlan:
    """The plan's row, locked until the transaction ends (`SELECT … FOR UPDATE` where the database has it; SQLite
    serialises writers anyway), so that a read-merge-write never overwrites a concurrent change."""
    row = session.scalars(select(SlurmPlan).where(SlurmPlan.id == plan_id).with_for_update()).first()
    if row is None:
        raise WattwiseError(f"no Slurm plan with id {plan_id}")
    return row


def add_event(store: Store, plan_id: int, kind: str, t_s: float, **details: Any) -> None:
    with store.session() as session:
        row = _locked(session, plan_id)
        row.events = [*(row.events or []), {"t_s": t_s, "kind": kind, **details}]


def merge_records(store: Store, plan_id: int, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the Slurm records of `jobs` (a possibly stale copy of the plan's jobs) with the plan: only each job's
    `record` is merged, into the job of the same id as the row holds it now. Returns the row's jobs after."""
    records = {j["job_id"]: j["record"] for j in jobs if j.get("record") and j.get("job_id") is not None}
    with store.session() as session:
        row = _locked(session, plan_id)
        current = list(row.jobs or [])
        merged = [{**j, "record": records[j["job_id"]]} if j.get("job_id") in records else j for j in current]
        if merged != current:
            row.jobs = merged
        return merged


def replace_tail(store: Store, plan_id: int, plan: dict[str, Any], first_index: int,
                 jobs: list[dict[str, Any]]) -> None:
    """A re-plan: the new plan, and the jobs from `first_index` on replaced by `jobs` (the earlier ones as the row
    holds them now, with any records merged meanwhile)."""
    with store.session() as session:
        row = _locked(session, plan_id)
        row.plan = plan
        row.jobs = [*(j for j in row.jobs or [] if j["index"] < first_index), *jobs]


def set_status(store: Store, plan_id: int, status: str) -> str:
    """Set the status unless the plan has reached a final one meanwhile (e.g. `slurm cancel`); returns it as it is."""
    with store.session() as session:
        row = _locked(session, plan_id)
        if row.status not in FINAL_STATUSES:
            row.status = status
        return row.status
