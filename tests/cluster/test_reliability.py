"""Reliability with real PostgreSQL and real client processes: exactly-once with 4 clients and 200 jobs,
recovery after `kill -9` of a client mid-job, and clients carrying on through a PostgreSQL restart (on a
private instance: the shared server is never restarted)."""

from __future__ import annotations

import itertools
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.submission import JobRequest
from wattwise.measure.process import descendants
from wattwise.store import Store

from .cluster_test_executor import EXECUTIONS, metadata
from .conftest import ClientProcess, PrivatePostgres, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RECORDING = {"command": "cluster_test_executor:RecordingExecutor"}


def executions(queue: ClusterQueue) -> list[dict[str, Any]]:
    with queue.db.transaction(write=False) as connection:
        return [dict(r) for r in connection.execute(select(EXECUTIONS).order_by(EXECUTIONS.c.id)).mappings()]


def assert_one_job_at_a_time_per_machine(rows: list[dict[str, Any]]) -> None:
    by_machine: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        by_machine[row["machine_id"]].append((row["started"], row["ended"]))
    for machine, spans in by_machine.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"{machine} ran two jobs at once"


def stop_all(clients: list[ClientProcess]) -> None:
    for client in clients:
        assert client.alive(), client.text()[-3000:]
    for client in clients:
        assert client.stop() == 0, client.text()[-3000:]


def test_four_clients_run_200_jobs_exactly_once(pg_url: str, start_client: Callable[..., ClientProcess]) -> None:
    queue = ClusterQueue(Store(pg_url))
    metadata.create_all(queue.db.engine)
    machines = [f"m{i}" for i in range(4)]
    for machine in machines:
        queue.machines.register(machine)
    # every fifth job is for one machine, the others for any machine: clients compete for them
    requests = [
        JobRequest(name=f"job-{i}", command=["true"], machine_id=machines[i % 4] if i % 5 == 0 else None,
                   variables={"sleep_s": "0.005"})
        for i in range(200)
    ]
    jobs = queue.jobs.submit_many(requests)
    clients = [
        start_client(pg_url, machine, sleep_time_s=0.2, lease_s=20, heartbeat_interval_s=2, executors=RECORDING)
        for machine in machines
    ]
    wait_for(lambda: queue.jobs.state_counts()["FINISHED"] + queue.jobs.state_counts()["FAILED"] == 200, timeout_s=150,
             interval_s=0.5, what="200 jobs to end")
    stop_all(clients)
    assert queue.jobs.state_counts() == {"WAITING": 0, "RUNNING": 0, "FINISHED": 200, "FAILED": 0, "CANCELLED": 0}
    rows = executions(queue)
    assert len(rows) == 200 and {r["job_id"] for r in rows} == {j.id for j in jobs}  # UNIQUE(job_id): once each
    final = {j.id: j for j in queue.jobs.list_jobs(limit=1000)}
    for row in rows:
        job = final[row["job_id"]]
        assert job.attempts == 1 and row["attempt"] == 1
        assert row["machine_id"] == job.running_machine_id
        assert job.machine_id in (None, row["machine_id"])  # a job runs only on its machine
    assert len({r["machine_id"] for r in rows}) >= 2
    assert_one_job_at_a_time_per_machine(rows)


def test_kill_9_during_a_job_is_recovered_by_another_client(
    pg_url: str, start_client: Callable[..., ClientProcess]
) -> None:
    queue = ClusterQueue(Store(pg_url))
    queue.machines.register("a")
    queue.machines.register("b")
    job = queue.jobs.submit(JobRequest(name="sleeper", command=["sleep", "4"]))
    settings = {"sleep_time_s": 0.2, "lease_s": 3, "heartbeat_interval_s": 1,
                "measure": {"baseline_s": 0, "interval_s": 0.1}}
    a = start_client(pg_url, "a", **settings)
    # a records its run with the job as soon as the run exists
    running = wait_for(lambda: (j := queue.jobs.get_job(job.id)).state == "RUNNING" and j.run_id is not None and j,
                       what=lambda: f"a to run\n{a.text()}")
    assert running.running_machine_id == "a"
    b = start_client(pg_url, "b", **settings)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)
    orphaned = queue.jobs.get_job(job.id)
    assert orphaned.state == "RUNNING" and orphaned.lease_owner == running.lease_owner, "a ended before the kill"
    last_lease = orphaned.lease_expires_at  # nobody renews it any more
    done = wait_for(lambda: (j := queue.jobs.get_job(job.id)).state in ("FINISHED", "FAILED") and j, timeout_s=90,
                    what=lambda: f"recovery\n{b.text()}")
    assert done.state == "FINISHED", done.error
    assert (done.attempts, done.running_machine_id) == (2, "b")
    run = queue.store.get_run(done.run_id)
    assert run.status == "finished" and run.command == ["sleep", "4"]
    dead_run = queue.store.get_run(running.run_id)  # a's run is not left `running` forever
    assert dead_run.id != run.id
    # marked by the reclaim (failed), or first by wattwise's recovery of runs whose measuring process is gone
    # (crashed: b started on the same host, where a's pid no longer exists)
    assert dead_run.status in ("failed", "crashed"), (dead_run.status, dead_run.error)
    assert dead_run.status == "crashed" or "lease expired" in dead_run.error
    assert run.started_at > last_lease  # b started only after a's lease had expired: never twice at once
    expired = [e for e in queue.machines.status_history(limit=200) if e.status == "lease-expired"]
    assert len(expired) == 1 and running.lease_owner in expired[0].message
    assert "job is now WAITING (attempt 1 of 3)" in expired[0].message
    stop_all([b])


def test_clients_carry_on_through_a_postgres_restart(
    private_pg: PrivatePostgres, start_client: Callable[..., ClientProcess]
) -> None:
    queue = ClusterQueue(Store(private_pg.url))
    metadata.create_all(queue.db.engine)
    for machine in ("r1", "r2"):
        queue.machines.register(machine)
    batch = [JobRequest(name=f"before-{i}", command=["true"], variables={"sleep_s": "0.05"}) for i in range(20)]
    queue.jobs.submit_many(batch)
    clients = [
        start_client(private_pg.url, machine, sleep_time_s=0.2, lease_s=20, heartbeat_interval_s=2,
                     executors=RECORDING)
        for machine in ("r1", "r2")
    ]
    wait_for(lambda: queue.jobs.state_counts()["FINISHED"] >= 5, what="the first jobs")
    # both clients are past their start (the machine row names them) before the database goes: a client that
    # cannot open the database at start exits (systemd restarts it), which is not what this test is about
    wait_for(lambda: all(queue.machines.get(c.machine_id).client_id for c in clients), timeout_s=120,
             what=lambda: "both clients to start\n" + "\n".join(c.text()[-2000:] for c in clients))
    private_pg.stop("fast")
    for client in clients:
        wait_for(lambda c=client: "database unavailable" in c.text(), timeout_s=120,
                 what=lambda c=client: f"{c.machine_id} to notice\n{c.text()[-3000:]}")
        assert client.alive(), client.text()[-3000:]
    private_pg.start()
    queue.jobs.submit_many([JobRequest(name=f"after-{i}", command=["true"], variables={"sleep_s": "0.05"})
                       for i in range(20)])
    wait_for(lambda: queue.jobs.state_counts()["FINISHED"] + queue.jobs.state_counts()["FAILED"] == 40, timeout_s=120,
             interval_s=0.5, what="all 40 jobs")
    stop_all(clients)
    assert queue.jobs.state_counts()["FINISHED"] == 40
    rows = executions(queue)
    assert len(rows) == 40 and len({r["job_id"] for r in rows}) == 40
    assert_one_job_at_a_time_per_machine(rows)
    after = [j for j in queue.jobs.list_jobs(limit=100) if j.name.startswith("after-")]
    assert {j.running_machine_id for j in after} <= {"r1", "r2"} and len(after) == 20


def _measured_sleeps(client: ClientProcess) -> list[int]:
    """Pids of the `sleep 300` the client's job started (its descendants, from /proc)."""
    pids = []
    for pid in descendants(client.process.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode(errors="replace")).name == "sleep" and argv[1:2] == [b"300"]:
            pids.append(pid)
    return pids


def test_client_cut_off_from_the_database_stops_its_job_before_the_lease_expires(
    private_pg: PrivatePostgres, start_client: Callable[..., ClientProcess]
) -> None:
    queue = ClusterQueue(Store(private_pg.url))
    queue.machines.register("f1")
    job = queue.jobs.submit(JobRequest(name="long", command=["sleep", "300"], max_attempts=3))
    client = start_client(private_pg.url, "f1", sleep_time_s=0.2, lease_s=3, heartbeat_interval_s=1,
                          measure={"baseline_s": 0, "interval_s": 0.1})
    wait_for(lambda: queue.jobs.get_job(job.id).state == "RUNNING", what=lambda: f"the job to run\n{client.text()}")
    sleeps = wait_for(lambda: _measured_sleeps(client), what=lambda: f"the measured command\n{client.text()}")
    private_pg.stop("fast")
    # what the client guarantees: it stops the job's processes itself (it cannot tell anyone: the database is
    # gone); the deadline only guards against a hang, however slow this machine is
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in sleeps), timeout_s=120,
             what=lambda: f"the job's process to be stopped\n{client.text()}")
    # it says why (the watchdog's or the failed renewal's wording, whichever noticed first)
    assert "stopping the job before" in client.text(), client.text()[-3000:]
    assert client.alive(), client.text()[-3000:]
    private_pg.start()
    # the job is someone's again only through the queue: reclaimed (or given back) and run again (attempt 2)
    wait_for(lambda: (j := queue.jobs.get_job(job.id)).state == "RUNNING" and j.attempts == 2, timeout_s=120,
             what=lambda: f"the second attempt\n{client.text()}")
    first = [e for e in queue.machines.status_history("f1", 200) if e.job_id == job.id]
    assert {"lease-expired", "job-released"} & {e.status for e in first}, [e.to_dict() for e in first]
    assert client.alive()
    assert queue.jobs.cancel(job.id).startswith("RUNNING")
    wait_for(lambda: queue.jobs.get_job(job.id).state == "CANCELLED", timeout_s=60, what="the cancel")
    stop_all([client])
