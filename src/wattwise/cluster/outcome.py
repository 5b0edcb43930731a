"""How did a job end? A pure function from what the client knows when the executor returned to what it
records: the final state (FINISHED, FAILED, CANCELLED), giving the job back to the queue (with or without
counting the attempt), or nothing at all (the lease was lost: the job is someone else's now).

The rules, first match wins:

| facts | decision |
| --- | --- |
| lease lost (another client may own the job) | drop: write nothing but a status note |
| lease not renewed in time (self-fenced) | give back, attempt counted |
| the client is stopping and stopped the job (no cancel request) | give back, attempt not counted |
| failed while the database was unavailable, no cancel, attempts left | give back, attempt counted |
| cancel requested | CANCELLED |
| the executor succeeded | FINISHED |
| otherwise | FAILED with the executor's error |
"""

from __future__ import annotations

from dataclasses import dataclass

from wattwise.cluster.models import JobState


class Action:
    FINISH = "finish"  # record `state` (and the run) with the job
    RELEASE = "release"  # back to WAITING
    DROP = "drop"  # the lease is gone: change nothing


@dataclass(frozen=True)
class JobFacts:
    """What the client knows once the executor returned (or raised)."""

    ok: bool  # the executor reports success
    error: str | None = None  # the executor's error
    lease_lost: bool = False  # a renewal found the lease no longer ours
    fenced: bool = False  # the lease could not be renewed in time and the job was stopped
    stopping: bool = False  # the client is stopping (SIGTERM) and stopped the job, no cancel was requested
    cancel_requested: bool = False  # someone cancelled the job while it ran
    database_failed: bool = False  # the database was unavailable during the job
    attempts_left: bool = True  # attempts < max_attempts


@dataclass(frozen=True)
class JobEnd:
    action: str  # Action.*
    state: str | None = None  # with FINISH: FINISHED, FAILED or CANCELLED
    error: str | None = None  # with FINISH: the job's error (None when FINISHED)
    reason: str = ""  # with RELEASE or DROP: why
    count_attempt: bool = False  # with RELEASE: the attempt counts towards max_attempts


def how_job_ended(facts: JobFacts) -> JobEnd:
    """The decision for `facts` (see the module's table)."""
    if facts.lease_lost:
        return JobEnd(Action.DROP, reason="lease lost while running; result not recorded")
    if facts.fenced:
        reason = "lease could not be renewed; job stopped and given back"
        return JobEnd(Action.RELEASE, reason=reason, count_attempt=True)
    if facts.stopping:
        return JobEnd(Action.RELEASE, reason="client stopped during the job; job given back to the queue")
    if not facts.ok and facts.database_failed and not facts.cancel_requested and facts.attempts_left:
        return JobEnd(
            Action.RELEASE,
            reason=f"the database was unavailable during the job ({facts.error}); it runs again",
            count_attempt=True,
        )
    if facts.cancel_requested:
        detail = f" ({facts.error})" if facts.error else ""
        return JobEnd(Action.FINISH, JobState.CANCELLED, "cancelled while running" + detail)
    if facts.ok:
        return JobEnd(Action.FINISH, JobState.FINISHED)
    return JobEnd(Action.FINISH, JobState.FAILED, facts.error or "failed")
