"""`how_job_ended` as a table: what the client knows when the executor returned → what it records."""

from __future__ import annotations

import pytest

from wattwise.cluster.outcome import Action, JobEnd, JobFacts, how_job_ended

DB_RELEASE = "the database was unavailable during the job (no samples); it runs again"
FENCED = "lease could not be renewed; job stopped and given back"
STOPPED = "client stopped during the job; job given back to the queue"

TABLE = [
    # facts, expected decision
    (JobFacts(ok=True), JobEnd(Action.FINISH, "FINISHED")),
    (JobFacts(ok=False, error="exit 3"), JobEnd(Action.FINISH, "FAILED", "exit 3")),
    (JobFacts(ok=False), JobEnd(Action.FINISH, "FAILED", "failed")),
    (JobFacts(ok=False, error="killed", cancel_requested=True),
     JobEnd(Action.FINISH, "CANCELLED", "cancelled while running (killed)")),
    (JobFacts(ok=True, cancel_requested=True), JobEnd(Action.FINISH, "CANCELLED", "cancelled while running")),
    # the lease is gone: nothing may be written, whatever else is true
    (JobFacts(ok=True, lease_lost=True),
     JobEnd(Action.DROP, reason="lease lost while running; result not recorded")),
    (JobFacts(ok=False, lease_lost=True, fenced=True, cancel_requested=True, database_failed=True),
     JobEnd(Action.DROP, reason="lease lost while running; result not recorded")),
    # self-fenced: given back with the attempt counted, even when a cancel was requested
    (JobFacts(ok=False, fenced=True), JobEnd(Action.RELEASE, reason=FENCED, count_attempt=True)),
    (JobFacts(ok=False, fenced=True, cancel_requested=True, stopping=True),
     JobEnd(Action.RELEASE, reason=FENCED, count_attempt=True)),
    # the client is stopping: given back, the attempt not counted
    (JobFacts(ok=False, stopping=True), JobEnd(Action.RELEASE, reason=STOPPED)),
    (JobFacts(ok=True, stopping=True, database_failed=True), JobEnd(Action.RELEASE, reason=STOPPED)),
    # the database went away: not the job's fault while attempts are left and nobody cancelled
    (JobFacts(ok=False, error="no samples", database_failed=True),
     JobEnd(Action.RELEASE, reason=DB_RELEASE, count_attempt=True)),
    (JobFacts(ok=False, error="no samples", database_failed=True, attempts_left=False),
     JobEnd(Action.FINISH, "FAILED", "no samples")),
    (JobFacts(ok=False, error="no samples", database_failed=True, cancel_requested=True),
     JobEnd(Action.FINISH, "CANCELLED", "cancelled while running (no samples)")),
    # a job that succeeded is finished even if renewals failed on the way
    (JobFacts(ok=True, database_failed=True), JobEnd(Action.FINISH, "FINISHED")),
]


@pytest.mark.parametrize(("facts", "expected"), TABLE)
def test_how_job_ended(facts: JobFacts, expected: JobEnd) -> None:
    assert how_job_ended(facts) == expected
