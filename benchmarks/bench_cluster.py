"""Cluster queue benchmark: claims per second with 8 client processes.

Each client process registers its own machine and loops claim → finish (the queue's whole life of a job,
without measuring anything) until the queue is empty; N jobs for any machine are queued before the clients
are released together. Figures: jobs claimed and finished per second over all clients, claim latency
percentiles, and a check that every job ran exactly once (all FINISHED with one attempt).

PostgreSQL (the cluster database; target ≥ 200 claims/s with 8 clients) in a fresh database on
$WATTWISE_TEST_PG's server, and SQLite (one machine; 8 processes on one file, no target).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.cluster.models import JobState
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.submission import JobRequest
from wattwise.store import Store

PG_ADMIN = os.environ.get("WATTWISE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS = int(os.environ.get("WATTWISE_BENCH_CLUSTER_CLIENTS", "8"))
JOBS_PG = int(os.environ.get("WATTWISE_BENCH_CLUSTER_JOBS", "4000"))
JOBS_SQLITE = int(os.environ.get("WATTWISE_BENCH_CLUSTER_SQLITE_JOBS", "2000"))


def _client(url: str, index: int, start: mp.Event, results: mp.Queue) -> None:  # type: ignore[type-arg]
    queue = ClusterQueue(Store(url))
    machine = f"bench-{index}"
    client_id = f"{machine}:{os.getpid()}"
    queue.machines.register(machine)
    latencies: list[float] = []
    start.wait()
    began = time.monotonic()
    while True:
        t0 = time.perf_counter()
        job = queue.jobs.claim(machine, client_id, 60)
        if job is None:
            if not queue.jobs.has_waiting(machine):
                break
            continue
        latencies.append(time.perf_counter() - t0)
        assert queue.jobs.finish(job.id, client_id, JobState.FINISHED, run_id=None)
    results.put((index, len(latencies), began, time.monotonic(), latencies))


def run(url: str, jobs: int) -> tuple[float, float, float, int]:
    """(claims/s, p50 ms, p99 ms, jobs finished once)."""
    queue = ClusterQueue(Store(url))
    for index in range(CLIENTS):
        queue.machines.register(f"bench-{index}")
    queue.jobs.submit_many([JobRequest(name=f"job-{i}", command=["true"]) for i in range(jobs)])
    context = mp.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    processes = [context.Process(target=_client, args=(url, i, start, results)) for i in range(CLIENTS)]
    for process in processes:
        process.start()
    time.sleep(3)  # let every process import, connect and register before the start signal
    start.set()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    began = min(o[2] for o in outcomes)
    ended = max(o[3] for o in outcomes)
    claims = sum(o[1] for o in outcomes)
    latencies = sorted(x for o in outcomes for x in o[4])
    per_client = sorted(o[1] for o in outcomes)
    print(f"  {claims} claims by {CLIENTS} clients in {ended - began:.2f} s; per client {per_client}")
    jobs_once = sum(1 for j in queue.jobs.list_jobs(limit=jobs + 10) if j.state == "FINISHED" and j.attempts == 1)
    counts = queue.jobs.state_counts()
    assert counts["FINISHED"] == jobs and jobs_once == jobs and claims == jobs, (counts, jobs_once, claims)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    queue.store.close()
    return claims / (ended - began), p50, p99, jobs_once


def main() -> int:
    ok = True
    try:
        import psycopg

        name = f"wattwise_bench_cluster_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            print(f"PostgreSQL, {JOBS_PG} jobs, {CLIENTS} client processes (claim with FOR UPDATE SKIP LOCKED):")
            rate, p50, p99, once = run(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, JOBS_PG)
            print(f"  claim latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; {once} jobs ran exactly once")
            ok &= report("cluster_claims_postgresql_8_clients", rate, "claims/s", 200, higher_is_better=True)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:
        print(f"cluster_claims_postgresql_8_clients: skipped ({type(exc).__name__}: {exc})")
        ok = False
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {JOBS_SQLITE} jobs, {CLIENTS} client processes (claim inside BEGIN IMMEDIATE):")
        rate, p50, p99, once = run(f"sqlite:///{Path(tmp) / 'cluster.db'}", JOBS_SQLITE)
        print(f"  claim latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; {once} jobs ran exactly once")
        print(f"TARGET-FREE cluster_claims_sqlite_8_clients: {rate:.4g} claims/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
