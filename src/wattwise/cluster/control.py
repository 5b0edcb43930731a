"""Control-workload validation: is this machine still measuring reproducibly?

Every ``time_between_control_workload_validations_s`` the client runs the configured control workload (a
command or a usage_scenario) and stores the configured metrics of the configured phase (default
``[RUNTIME]``: energy_j, mean_power_w, duration_s, as computed by `summarize_run`). Over the last
``comparison_window`` successful control runs it computes each metric's coefficient of variation
(sample standard deviation / mean). Above ``threshold`` for any metric, the machine stops taking jobs
(``accepts_jobs`` false, ``paused_reason`` says why) and an e-mail goes out; a later passing validation
releases it. A failed control run, or a metric the run does not have, fails the validation too.

The first validation on a machine runs the workload until the window is full.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from wattwise.cluster.config import ControlWorkloadSettings
from wattwise.cluster.executors import ExecutionContext, ExecutionResult, Executor
from wattwise.cluster.mail import control_workload_email
from wattwise.cluster.models import ClusterControlRun, JobState, SourceType
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import JobInfo, MachineInfo

CONTROL = cast(Table, ClusterControlRun.__table__)  # the ORM types __table__ as a FromClause
PAUSE_PREFIX = "control workload: "  # paused_reason of a machine this module paused
log = logging.getLogger("wattwise.cluster.client")


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over the mean (0 for identical values; inf for a zero mean)."""
    if len(values) < 2:
        raise ValueError("a coefficient of variation needs at least two values")
    mean = statistics.fmean(values)
    std = statistics.stdev(values)
    if std == 0:
        return 0.0
    if mean == 0:
        return math.inf
    return std / abs(mean)


@dataclass
class ValidationResult:
    passed: bool
    message: str
    cvs: dict[str, float] = field(default_factory=dict)
    run_ids: list[int | None] = field(default_factory=list)


def phase_values(summary: dict[str, Any] | None, phase: str, metrics: Sequence[str]) -> dict[str, float]:
    """The metrics of `phase` in a run summary; raises ValueError naming what is missing."""
    phases = [p for p in (summary or {}).get("phases", []) if p.get("name") == phase]
    if not phases:
        names = [p.get("name") for p in (summary or {}).get("phases", [])]
        raise ValueError(
            f"the control run has no phase {phase!r} (it has: {', '.join(map(str, names)) or 'none'})"
        )
    values: dict[str, float] = {}
    for metric in metrics:
        value = phases[0].get(metric)
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(
                f"metric {metric!r} is not available in phase {phase!r} of the control run "
                "(no energy provider on this machine?)"
            )
        values[metric] = float(value)
    return values


def control_job(settings: ControlWorkloadSettings) -> JobInfo:
    """The control workload as a job for the executors (id 0, never stored in the queue)."""
    if settings.command:
        source_type, source, filename, command = (
            SourceType.COMMAND,
            " ".join(settings.command),
            None,
            settings.command,
        )
    else:
        path = Path(settings.scenario or "").expanduser()
        source_type, source, filename, command = SourceType.FOLDER, str(path.parent), path.name, None
    return JobInfo(
        id=0,
        name=settings.name,
        source_type=source_type,
        source=source,
        branch=None,
        filename=filename,
        command=command,
        variables={},
        machine_id=None,
        email=None,
        state=JobState.RUNNING,
        attempts=1,
        max_attempts=1,
        run_id=None,
        created_at=None,
        started_at=None,
        ended_at=None,
        error=None,
        running_machine_id=None,
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
    )


class ControlWorkload:
    def __init__(
        self,
        queue: ClusterQueue,
        settings: ControlWorkloadSettings,
        machine_id: str,
        executors: dict[str, Executor],
        context: Callable[[], ExecutionContext],
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.machine_id = machine_id
        self.executors = executors
        self.context = context

    def apply(self, result: ValidationResult, recipient: str | None) -> None:
        """Note the validation time; pause the machine after a failed validation, release it after a passing
        one when a control workload had paused it, with an e-mail to `recipient` when that changes."""
        machines = self.queue.machines
        machines.set_control_workload_time(self.machine_id)
        machine = machines.get(self.machine_id)
        if result.passed:
            if not machine.accepts_jobs and (machine.paused_reason or "").startswith(PAUSE_PREFIX):
                emails = [control_workload_email(recipient, self.machine_id, True, result.message)] if recipient else []
                machines.set_accepts_jobs(self.machine_id, True, emails=emails)
                log.info("machine %s takes jobs again", self.machine_id)
            return
        reason = PAUSE_PREFIX + result.message
        if machine.accepts_jobs or machine.paused_reason != reason:
            emails = (
                [control_workload_email(recipient, self.machine_id, False, result.message)]
                if recipient and machine.accepts_jobs
                else []
            )
            machines.set_accepts_jobs(self.machine_id, False, reason, emails=emails)
        log.warning("machine %s stops taking jobs: %s", self.machine_id, result.message)

    def due(self, machine: MachineInfo, now: datetime) -> bool:
        last = machine.last_control_workload_at
        return last is None or (now - last).total_seconds() >= self.settings.interval_s

    def successful_runs(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` successful control runs of this machine, newest first."""
        query = (
            select(CONTROL)
            .where(
                CONTROL.c.machine_id == self.machine_id,
                CONTROL.c.ok.is_(True),
                CONTROL.c.phase == self.settings.phase,
            )
            .order_by(CONTROL.c.id.desc())
            .limit(limit)
        )
        with self.queue.db.transaction(write=False) as connection:
            return [dict(r) for r in connection.execute(query).mappings().all()]

    def count_runs(self) -> int:
        with self.queue.db.transaction(write=False) as connection:
            return int(
                connection.scalar(
                    select(func.count()).select_from(CONTROL).where(CONTROL.c.machine_id == self.machine_id)
                )
                or 0
            )

    def run_once(self) -> tuple[ExecutionResult, dict[str, float] | None, str | None]:
        job = control_job(self.settings)
        executor = self.executors[job.source_type]
        result = executor.execute(job, self.context())
        values: dict[str, float] | None = None
        error: str | None = None
        if not result.ok:
            error = f"control workload run {result.run_id} failed: {result.error}"
        else:
            try:
                values = phase_values(result.summary, self.settings.phase, self.settings.metrics)
            except ValueError as exc:
                error = f"run {result.run_id}: {exc}"
        with self.queue.db.transaction() as connection:
            connection.execute(
                insert(CONTROL).values(
                    machine_id=self.machine_id,
                    run_id=result.run_id,
                    ok=error is None,
                    phase=self.settings.phase,
                    values=values or {},
                    error=error,
                    created_at=self.queue.db.now(),
                )
            )
        return result, values, error

    def validate(self) -> ValidationResult:
        """Run the workload (until the window is full), then judge the last `comparison_window` runs."""
        window = self.settings.comparison_window
        have = len(self.successful_runs(window))
        runs_now = max(1, window - have)
        for _ in range(runs_now):
            if self.context().cancel.is_set():
                return ValidationResult(False, "stopped before the control workload finished")
            result, _values, error = self.run_once()
            if error is not None:
                return ValidationResult(False, error, run_ids=[result.run_id])
        rows = self.successful_runs(window)
        if len(rows) < 2:
            return ValidationResult(False, f"only {len(rows)} successful control run(s): cannot judge")
        cvs: dict[str, float] = {}
        too_high: list[str] = []
        for metric in self.settings.metrics:
            values = [float(r["values"][metric]) for r in rows if metric in (r["values"] or {})]
            if len(values) < 2:
                return ValidationResult(False, f"metric {metric!r} is missing from the stored control runs")
            cv = coefficient_of_variation(values)
            cvs[metric] = cv
            if cv > self.settings.threshold:
                too_high.append(f"{metric} CV {cv:.4f} > threshold {self.settings.threshold:g}")
        runs = [r["run_id"] for r in rows]
        figures = ", ".join(f"{m} CV {v:.4f}" for m, v in cvs.items())
        run_list = ", ".join(map(str, runs))
        where = f"phase {self.settings.phase}, last {len(rows)} control runs (run ids {run_list})"
        if too_high:
            return ValidationResult(False, f"unstable: {'; '.join(too_high)} ({where})", cvs, runs)
        return ValidationResult(
            True, f"stable: {figures} ≤ threshold {self.settings.threshold:g} ({where})", cvs, runs
        )
