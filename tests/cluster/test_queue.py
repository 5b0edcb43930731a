"""The queue on real SQLite and PostgreSQL: submitting, claiming rules, leases, reclaiming, completion."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from wattwise.cluster.database import JOBS
from wattwise.cluster.models import JobState
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import OutgoingEmail
from wattwise.cluster.submission import JobRequest, normalize_mac
from wattwise.errors import WattwiseError
from wattwise.store import Store


def cmd(name: str = "job", machine: str | None = None, **kw: object) -> JobRequest:
    return JobRequest(name=name, command=["true"], machine_id=machine, **kw)  # type: ignore[arg-type]


def expire(queue: ClusterQueue, job_id: int) -> None:
    """Move a lease into the past, as if its client had stopped renewing it long ago."""
    with queue.db.transaction() as connection:
        connection.execute(
            update(JOBS).where(JOBS.c.id == job_id).values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
        )


def test_migration_creates_tables_and_the_partial_unique_index(queue: ClusterQueue) -> None:
    with queue.db.engine.connect() as connection:
        if queue.db.is_postgres:
            indexdef = connection.scalar(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_cluster_jobs_running_machine'"))
        else:
            indexdef = connection.scalar(text(
                "SELECT sql FROM sqlite_master WHERE name = 'ux_cluster_jobs_running_machine'"))
    assert "UNIQUE" in indexdef.upper() and "RUNNING" in indexdef


def test_submit_validates_and_names_the_problem(queue: ClusterQueue) -> None:
    queue.machines.register("bench-1", description="NUC")
    job = queue.jobs.submit(JobRequest(name="app", git_url="https://example.org/app.git", branch="main",
                                  variables={"PORT": "8080"}, machine_id="bench-1", email="a@example.org"))
    assert (job.state, job.source_type, job.branch, job.filename) == ("WAITING", "git", "main", "usage_scenario.yml")
    assert job.variables == {"PORT": "8080"} and job.attempts == 0 and job.created_at.tzinfo is not None
    problems = {
        "no machine 'nope' in the cluster (known: bench-1)": cmd(machine="nope"),
        "give exactly one job source": JobRequest(name="x"),
        "(got command and folder)": JobRequest(name="x", command=["true"], folder="/srv/app"),
        "is not a git URL": JobRequest(name="x", git_url="not a url"),
        "must be a relative path": JobRequest(name="x", folder="/srv", filename="../etc/passwd"),
        "--branch belongs to --git jobs": JobRequest(name="x", folder="/srv", branch="main"),
        "variable name '1X' is not allowed": JobRequest(name="x", command=["true"], variables={"1X": "a"}),
        "is not an e-mail address": JobRequest(name="x", command=["true"], email="nobody"),
        "--max-attempts must be 1 to 100": JobRequest(name="x", command=["true"], max_attempts=0),
        "a job needs a name": JobRequest(name=" ", command=["true"]),
    }
    for message, request in problems.items():
        with pytest.raises(WattwiseError, match=None) as info:
            queue.jobs.submit(request)
        assert message in str(info.value), (message, str(info.value))
    with pytest.raises(WattwiseError, match="machine id 'bad id' is not allowed"):
        queue.machines.register("bad id")
    assert queue.jobs.state_counts()["WAITING"] == 1


def test_submit_many_is_all_or_nothing(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    with pytest.raises(WattwiseError):
        queue.jobs.submit_many([cmd("a", "m1"), cmd("b", "missing")])
    assert queue.jobs.list_jobs() == []
    jobs = queue.jobs.submit_many([cmd(f"j{i}", "m1" if i % 2 else None) for i in range(10)])
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert queue.jobs.waiting_counts() == {"m1": 5, None: 5}


def test_claim_respects_target_machine_order_and_one_running_job_per_machine(queue: ClusterQueue) -> None:
    for machine in ("m1", "m2"):
        queue.machines.register(machine)
    j1, j2, j3 = queue.jobs.submit_many([cmd("for m2", "m2"), cmd("any"), cmd("for m1", "m1")])
    first = queue.jobs.claim("m1", "c-a", 30)
    assert first is not None and first.id == j2.id  # oldest it may run; j1 is m2's
    assert (first.state, first.attempts, first.running_machine_id, first.lease_owner) == ("RUNNING", 1, "m1", "c-a")
    assert first.lease_expires_at is not None and first.lease_expires_at > first.started_at
    assert queue.jobs.claim("m1", "c-b", 30) is None  # m1 already runs a job, even for another client of m1
    second = queue.jobs.claim("m2", "c-c", 30)
    assert second is not None and second.id == j1.id
    assert queue.jobs.claim("m2", "c-c", 30) is None
    assert queue.jobs.finish(first.id, "c-a", JobState.FINISHED, run_id=7)
    third = queue.jobs.claim("m1", "c-b", 30)
    assert third is not None and third.id == j3.id
    assert queue.jobs.get_job(first.id).run_id == 7 and queue.jobs.get_job(first.id).state == "FINISHED"


def test_database_refuses_two_running_jobs_on_one_machine(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    _, b = queue.jobs.submit_many([cmd("a", "m1"), cmd("b", "m1")])
    assert queue.jobs.claim("m1", "c1", 30) is not None
    with pytest.raises(IntegrityError), queue.db.transaction() as connection:
        connection.execute(update(JOBS).where(JOBS.c.id == b.id).values(state="RUNNING", running_machine_id="m1"))


def test_paused_machine_takes_no_job_until_released(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    queue.jobs.submit(cmd("a", "m1"))
    queue.machines.set_accepts_jobs("m1", False, "control workload: unstable",
                           emails=[OutgoingEmail("ops@example.org", "paused", "body", "control-workload")])
    machine = queue.machines.get("m1")
    assert not machine.accepts_jobs and machine.paused_reason == "control workload: unstable"
    assert queue.jobs.claim("m1", "c1", 30) is None
    queue.machines.set_accepts_jobs("m1", True)
    assert queue.machines.get("m1").paused_reason is None
    assert queue.jobs.claim("m1", "c1", 30) is not None


def test_lease_renewal_loss_and_reclaim_to_waiting_then_failed(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    job = queue.jobs.submit(cmd("flaky", "m1", max_attempts=2, email="me@example.org"))
    claimed = queue.jobs.claim("m1", "dead-client", 30)
    assert claimed is not None
    assert queue.jobs.reclaim_expired() == []  # a live lease is never taken
    assert queue.jobs.claim("m1", "other", 30) is None
    expire(queue, job.id)
    assert queue.jobs.renew(job.id, "someone-else", 30).ok is False
    reclaimed = queue.jobs.reclaim_expired(client_id="other")
    assert [(r.job_id, r.state, r.lease_owner, r.attempts) for r in reclaimed] == [(job.id, "WAITING", "dead-client", 1)]
    # the dead client comes back: it can change nothing any more
    assert queue.jobs.renew(job.id, "dead-client", 30).ok is False
    assert not queue.jobs.finish(job.id, "dead-client", JobState.FINISHED, run_id=1)
    again = queue.jobs.claim("m1", "other", 30)
    assert again is not None and again.attempts == 2
    expire(queue, job.id)
    assert [r.state for r in queue.jobs.reclaim_expired()] == ["FAILED"]
    failed = queue.jobs.get_job(job.id)
    assert failed.state == "FAILED" and "lost the lease 2 time(s)" in failed.error and failed.lease_owner is None
    history = [e.status for e in queue.machines.status_history("m1")]
    assert history.count("lease-expired") == 2

    assert queue.outbox.pending_count() == 1  # the job's owner is told


def test_renew_reports_cancel_and_cancel_rules(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    waiting, running = queue.jobs.submit_many([cmd("w", "m1"), cmd("r")])
    claimed = queue.jobs.claim("m1", "c1", 30)
    assert claimed is not None and claimed.id == waiting.id
    assert queue.jobs.cancel(running.id) == "CANCELLED"
    assert queue.jobs.cancel(claimed.id).startswith("RUNNING (cancel requested")
    assert queue.jobs.renew(claimed.id, "c1", 30).cancel_requested is True
    assert queue.jobs.finish(claimed.id, "c1", JobState.CANCELLED, error="cancelled while running")
    with pytest.raises(WattwiseError, match="already CANCELLED"):
        queue.jobs.cancel(claimed.id)
    with pytest.raises(WattwiseError, match="no cluster job with id 999"):
        queue.jobs.cancel(999)


def test_release_gives_the_job_back_without_counting_the_attempt(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    job = queue.jobs.submit(cmd("a", "m1"))
    assert queue.jobs.claim("m1", "c1", 30) is not None
    assert not queue.jobs.release(job.id, "c2", "not mine")
    assert queue.jobs.release(job.id, "c1", "client stopping")
    back = queue.jobs.get_job(job.id)
    assert (back.state, back.attempts, back.lease_owner, back.started_at) == ("WAITING", 0, None, None)


def test_finish_records_run_id_emails_and_history_together(queue: ClusterQueue) -> None:
    queue.machines.register("m1")
    job = queue.jobs.submit(cmd("a", "m1"))
    assert queue.jobs.claim("m1", "c1", 30) is not None
    assert queue.jobs.set_run_id(job.id, "c1", 41)
    email = OutgoingEmail("me@example.org", "done", "body", "job-finished", job.id, "m1")
    assert queue.jobs.finish(job.id, "c1", JobState.FINISHED, run_id=42, emails=[email])
    done = queue.jobs.get_job(job.id)
    assert (done.state, done.run_id, done.ended_at is not None) == ("FINISHED", 42, True)
    assert queue.machines.status_history("m1")[0].run_id == 42
    with pytest.raises(ValueError):
        queue.jobs.finish(job.id, "c1", JobState.RUNNING)


def test_heartbeat_and_machine_info(queue: ClusterQueue) -> None:
    queue.machines.register("m1", mac_address="3C-EC-EF-01-02-0A", sleep_time_s=5)
    queue.machines.heartbeat("m1", "c1", "idle", "polling", temperature_c=41.5)
    queue.machines.heartbeat("m1", "c1", "idle", "polling", record=False)
    machine = queue.machines.get("m1")
    now = queue.db.db_now()
    assert machine.mac_address == "3c:ec:ef:01:02:0a" and machine.current_temperature_c == 41.5
    assert machine.is_online(now) and machine.to_dict(now)["online"] is True
    assert [e.status for e in queue.machines.status_history("m1")] == ["idle"]
    assert normalize_mac("3cec.ef01.020a") == "3c:ec:ef:01:02:0a"
    with pytest.raises(WattwiseError, match="not a MAC address"):
        normalize_mac("3c:ec:ef:01:02")


def _hammer(url: str, machines: int, clients_per_machine: int, jobs: int) -> tuple[Counter[int], list[str]]:
    """Threads claim and finish jobs as fast as they can; returns how often each job ran and any overlap."""
    setup = ClusterQueue(Store(url))
    for m in range(machines):
        setup.machines.register(f"m{m}")
    setup.jobs.submit_many([cmd(f"j{i}", f"m{i % machines}" if i % 3 == 0 else None) for i in range(jobs)])
    runs: Counter[int] = Counter()
    problems: list[str] = []
    running: dict[str, int] = {}
    lock = threading.Lock()

    def worker(machine: str, client: str) -> None:
        queue = ClusterQueue(Store(url))
        idle = 0
        while idle < 3:
            job = queue.jobs.claim(machine, client, 30)
            if job is None:
                idle += 1
                time.sleep(0.01)
                continue
            idle = 0
            with lock:
                if machine in running:
                    problems.append(f"{machine} runs {running[machine]} and {job.id}")
                running[machine] = job.id
                runs[job.id] += 1
                if job.machine_id not in (None, machine):
                    problems.append(f"job {job.id} for {job.machine_id} ran on {machine}")
            with lock:
                del running[machine]
            assert queue.jobs.finish(job.id, client, JobState.FINISHED)

    threads = [
        threading.Thread(target=worker, args=(f"m{m}", f"c{m}-{k}"))
        for m in range(machines)
        for k in range(clients_per_machine)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert setup.jobs.state_counts()["FINISHED"] == jobs
    return runs, problems


def test_concurrent_claims_run_each_job_once(db_url: str) -> None:
    runs, problems = _hammer(db_url, machines=3, clients_per_machine=2, jobs=90)
    assert problems == []
    assert len(runs) == 90 and set(runs.values()) == {1}
