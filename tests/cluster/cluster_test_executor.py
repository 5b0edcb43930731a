"""A cheap executor for client processes started by the tests, loaded through the client configuration
(``executors: {command: "cluster_test_executor:RecordingExecutor"}`` with this folder on PYTHONPATH).

It records each execution in ``cluster_test_executions``, whose UNIQUE ``job_id`` proves exactly-once: a
second execution of a job cannot be recorded and fails the job with "executed twice".
The job variable ``sleep_s`` makes it take that long (stopping early when the job is cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, UniqueConstraint, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from wattwise.cluster.executors import ExecutionContext, ExecutionResult
from wattwise.cluster.records import JobInfo

T = TypeVar("T")
metadata = MetaData()
EXECUTIONS = Table(
    "cluster_test_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("client_id", String(120), nullable=False),
    Column("machine_id", String(100), nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    UniqueConstraint("job_id", name="uq_cluster_test_executions_job"),
)


def _retry(action: Callable[[], T], deadline_s: float = 60.0) -> T:
    """Retry through a database restart."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return action()
        except OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


class RecordingExecutor:
    name = "recording"

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        engine = context.store.engine
        row = {
            "job_id": job.id,
            "attempt": job.attempts,
            "client_id": context.client_id,
            "machine_id": context.machine_id,
            "started": time.time(),
        }

        def record() -> bool:
            try:
                with engine.begin() as connection:
                    connection.execute(insert(EXECUTIONS).values(**row))
                return True
            except IntegrityError:
                # after a lost connection the first insert may have committed: then the row is ours
                with engine.connect() as connection:
                    existing = connection.execute(
                        select(EXECUTIONS.c.client_id, EXECUTIONS.c.attempt).where(EXECUTIONS.c.job_id == job.id)
                    ).first()
                return existing is not None and tuple(existing) == (context.client_id, job.attempts)

        if not _retry(record):
            return ExecutionResult(False, error=f"job {job.id} executed twice")
        sleep_s = float(job.variables.get("sleep_s", "0"))
        if sleep_s > 0 and context.cancel.wait(sleep_s):
            return ExecutionResult(False, error="cancelled")

        def done() -> None:
            with engine.begin() as connection:
                connection.execute(
                    update(EXECUTIONS).where(EXECUTIONS.c.job_id == job.id).values(ended=time.time())
                )

        _retry(done)
        return ExecutionResult(True, summary={"phases": []})
