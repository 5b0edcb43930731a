"""The client: real command and scenario jobs, cleanup, e-mail, power saving, cancelling, stopping, lost leases,
and the temperature gate (hwmon fixture trees)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from wattwise.cluster.client import Client
from wattwise.cluster.config import parse_config
from wattwise.cluster.database import EMAILS
from wattwise.cluster.executors import ExecutionContext, ExecutionResult, Executor
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import JobInfo
from wattwise.cluster.submission import JobRequest
from wattwise.errors import WattwiseError
from wattwise.measure.process import descendants

from .conftest import SmtpServer, wait_for
from .test_queue import expire
from .test_temperature_gate import hwmon_tree


def config_for(machine: str = "m1", **settings: Any) -> Any:
    base: dict[str, Any] = {"machine_id": machine, "sleep_time_s": 1, "lease_s": 10, "heartbeat_interval_s": 0.5,
                            "measure": {"baseline_s": 0, "idle_s": 0, "interval_s": 0.05}}
    base.update(settings)
    return parse_config(yaml.safe_dump(base))


def email_bodies(queue: ClusterQueue) -> list[tuple[str, str, str]]:
    with queue.db.transaction(write=False) as connection:
        rows = connection.execute(select(EMAILS.c.recipient, EMAILS.c.subject, EMAILS.c.body).order_by(EMAILS.c.id))
        return [tuple(r) for r in rows]


def test_client_once_measures_a_command_job_cleans_up_and_mails(
    sqlite_url: str, sqlite_queue: ClusterQueue, smtp_server: SmtpServer, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    cleanup_log = tmp_path / "cleanup.log"
    config = tmp_path / "client.yml"
    config.write_text(yaml.safe_dump({
        "machine_id": "m1", "sleep_time_s": 1, "web_url": "https://wattwise.example.org",
        "measure": {"baseline_s": 0, "interval_s": 0.05},
        "cleanup_command": ["sh", "-c", f"echo cleaned >> {cleanup_log}; echo cache dropped"],
        "smtp": {"host": smtp_server.host, "port": smtp_server.port, "from": "wattwise@example.org"},
    }))
    sqlite_queue.machines.register("m1")
    job = sqlite_queue.jobs.submit(JobRequest(name="hello", command=["sh", "-c", "echo hello from $GREETING"],
                                         variables={"GREETING": "cluster"}, machine_id="m1", email="me@example.org"))
    result = run_cli("client", "--config", str(config), "--db", sqlite_url, "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    done = sqlite_queue.jobs.get_job(job.id)
    assert done.state == "FINISHED", done.error
    assert done.run_id is not None and done.attempts == 1 and done.running_machine_id == "m1"
    run = sqlite_queue.store.get_run(done.run_id)
    assert run.status == "finished" and run.command == ["sh", "-c", "echo hello from $GREETING"]
    assert "hello from cluster" in "".join(e.text for e in sqlite_queue.store.logs(done.run_id))
    assert cleanup_log.read_text() == "cleaned\n"
    history = [(e.status, e.message) for e in sqlite_queue.machines.status_history("m1")]
    assert any(s == "cleanup" and "exit status 0" in m and "cache dropped" in m for s, m in history)
    assert any(s == "job-finished" and f"(run {done.run_id})" in m for s, m in history)
    [message] = smtp_server.parsed()
    assert message["Subject"] == f"[wattwise] job {job.id} 'hello' finished on m1" and message["To"] == "me@example.org"
    body = message.get_content()
    assert f"Results: https://wattwise.example.org/runs/{done.run_id}" in body and "[RUNTIME]:" in body
    assert "job 1 FINISHED" in result.stderr or "job 1 'hello' FINISHED" in result.stderr


def test_failed_command_job_mails_error_and_log_tail(sqlite_queue: ClusterQueue) -> None:
    client = Client(sqlite_queue.store, config_for())
    client.start()
    job = sqlite_queue.jobs.submit(JobRequest(name="boom", command=["sh", "-c", "echo working; echo boom >&2; exit 3"],
                                         email="me@example.org"))
    assert client.process_one() is not None
    failed = sqlite_queue.jobs.get_job(job.id)
    assert failed.state == "FAILED" and failed.error == "sh exited with code 3" and failed.run_id is not None
    [(_, subject, body)] = email_bodies(sqlite_queue)
    assert subject == f"[wattwise] job {job.id} 'boom' failed on m1"
    assert "Error: sh exited with code 3" in body and "working" in body and "[stderr] boom" in body


class Exploding(Executor):
    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        raise RuntimeError("kaput")


def test_executor_crash_and_missing_executor_fail_the_job(sqlite_queue: ClusterQueue) -> None:
    client = Client(sqlite_queue.store, config_for(), executors={"command": Exploding()})
    client.start()
    crash = sqlite_queue.jobs.submit(JobRequest(name="crash", command=["true"], email="me@example.org"))
    scenario = sqlite_queue.jobs.submit(JobRequest(name="scn", git_url="https://example.org/x.git"))
    client.process_one()
    client.process_one()
    assert sqlite_queue.jobs.get_job(crash.id).error == "RuntimeError: kaput"
    assert "this client has no executor for 'git' jobs" in sqlite_queue.jobs.get_job(scenario.id).error
    [(_, _, body)] = email_bodies(sqlite_queue)
    assert 'raise RuntimeError("kaput")' in body  # the traceback is the log tail


def test_cancel_stops_a_running_command(sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    client = Client(sqlite_queue.store, config_for(heartbeat_interval_s=0.2))
    client.start()
    job = sqlite_queue.jobs.submit(JobRequest(name="long", command=["sleep", "300"]))
    worker = threading.Thread(target=client.process_one)
    worker.start()
    wait_for(lambda: sqlite_queue.jobs.get_job(job.id).state == "RUNNING", what="the job to run")
    wait_for(lambda: any(_cmdline(p).endswith("sleep 300") for p in descendants(os.getpid())), what="sleep to start")
    assert sqlite_queue.jobs.cancel(job.id).startswith("RUNNING")
    worker.join(timeout=60)
    assert not worker.is_alive()
    cancelled = sqlite_queue.jobs.get_job(job.id)
    assert cancelled.state == "CANCELLED" and cancelled.error.startswith("cancelled while running")
    assert not any(_cmdline(p).endswith("sleep 300") for p in descendants(os.getpid()))
    assert sqlite_queue.store.get_run(cancelled.run_id).status == "failed"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class Stealer(Executor):
    """While running, the job's lease is made to expire and another client takes the job."""

    def __init__(self, queue: ClusterQueue) -> None:
        self.queue = queue

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        expire(self.queue, job.id)
        assert self.queue.jobs.claim(context.machine_id, "thief", 30) is not None
        assert context.cancel.wait(30), "the lease keeper must notice"
        return ExecutionResult(True, run_id=None)


def test_lost_lease_stops_the_job_and_records_nothing(sqlite_queue: ClusterQueue) -> None:
    client = Client(sqlite_queue.store, config_for(heartbeat_interval_s=0.1), executors={"command": Stealer(sqlite_queue)})
    client.start()
    job = sqlite_queue.jobs.submit(JobRequest(name="stolen", command=["true"]))
    assert client.run_job(client.queue.jobs.claim("m1", client.client_id, 10)) is None
    taken = sqlite_queue.jobs.get_job(job.id)
    assert (taken.state, taken.lease_owner, taken.attempts) == ("RUNNING", "thief", 2)
    assert sqlite_queue.machines.status_history("m1")[0].status == "job-lease-lost"


class Quick(Executor):
    def __init__(self) -> None:
        self.ran: list[int] = []

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        self.ran.append(job.id)
        return ExecutionResult(True, summary={"phases": []})


def test_temperature_gate_keeps_jobs_queued_until_the_machine_is_cool(sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    root, package = hwmon_tree(tmp_path, 70000)
    quick = Quick()
    temperature = {"chip": "coretemp", "feature": "Package id 0", "source": "hwmon", "hwmon_root": str(root),
                   "base_temperature_c": 40, "cooldown_wait_s": 0, "max_tries": 2}
    client = Client(sqlite_queue.store, config_for(temperature=temperature, notify_email="ops@example.org"),
                    executors={"command": quick})
    client.start()
    job = sqlite_queue.jobs.submit(JobRequest(name="hot", command=["true"]))
    assert client.iteration() is False and client.iteration() is False
    machine = sqlite_queue.machines.get("m1")
    assert machine.status == "temperature-gate-failed" and machine.current_temperature_c == 70.0
    assert sqlite_queue.jobs.get_job(job.id).state == "WAITING" and quick.ran == []
    assert [s for _, s, _ in email_bodies(sqlite_queue)] == ["[wattwise] m1: temperature gate gave up"]  # once
    statuses = [e.status for e in sqlite_queue.machines.status_history("m1")]
    assert "cooldown" in statuses
    package.write_text("38500\n")
    assert client.iteration() is True and quick.ran == [job.id]


def test_temperature_gate_needs_a_base_temperature(sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    root, _ = hwmon_tree(tmp_path, 40000)
    config = config_for(temperature={"source": "hwmon", "hwmon_root": str(root)})
    client = Client(sqlite_queue.store, config, executors={"command": Quick()})
    client.start()
    sqlite_queue.jobs.submit(JobRequest(name="x", command=["true"]))
    with pytest.raises(WattwiseError, match=r"machine 'm1' has no base temperature: set temperature\.base_temperature_c"):
        client.iteration()
    sqlite_queue.machines.register("m1", base_temperature_c=45)  # `cluster machines --add m1 --base-temperature 45`
    assert client.iteration() is True


def test_shutdown_command_when_the_queue_is_empty(sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    marker = tmp_path / "shutdown.log"
    client = Client(sqlite_queue.store, config_for(shutdown_command=["sh", "-c", f"echo off >> {marker}"]),
                    executors={"command": Quick()})
    client.start()
    sqlite_queue.jobs.submit(JobRequest(name="x", command=["true"]))
    assert client.iteration() is True and not marker.exists()
    assert client.iteration() is False
    assert marker.read_text() == "off\n"
    assert any(e.status == "shutdown" and "exit status 0" in e.message for e in sqlite_queue.machines.status_history("m1"))
    idle = Client(sqlite_queue.store, config_for("m2", shutdown_command=["true"], shutdown_idle_s=3600))
    idle.start()
    assert idle.iteration() is False
    assert not any(e.status == "shutdown" for e in sqlite_queue.machines.status_history("m2"))


def test_sigterm_gives_the_running_job_back(
    sqlite_url: str, sqlite_queue: ClusterQueue, start_client: Callable[..., Any]
) -> None:
    from .cluster_test_executor import metadata

    metadata.create_all(sqlite_queue.db.engine)
    sqlite_queue.machines.register("m1")
    job = sqlite_queue.jobs.submit(JobRequest(name="slow", command=["true"], variables={"sleep_s": "300"}))
    client = start_client(sqlite_url, "m1", sleep_time_s=0.2,
                          executors={"command": "cluster_test_executor:RecordingExecutor"})
    wait_for(lambda: sqlite_queue.jobs.get_job(job.id).state == "RUNNING", what=lambda: f"job to run\n{client.text()}")
    client.process.send_signal(signal.SIGTERM)
    assert client.process.wait(30) == 0, client.text()
    back = sqlite_queue.jobs.get_job(job.id)
    assert (back.state, back.attempts, back.lease_owner) == ("WAITING", 0, None)
    statuses = [e.status for e in sqlite_queue.machines.status_history("m1")][:2]
    assert statuses == ["stopped", "job-released"], client.text()[-3000:]


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, check=True,
                   capture_output=True)


SCENARIO = """\
name: cluster scenario
author: wattwise tests
description: One host step that echoes a variable.
x-wattwise:
  backend: host
services:
  job: {}
flow:
  - name: Work
    container: job
    commands:
      - type: console
        command: echo word=__GMT_VAR_WORD__
"""


@pytest.mark.cgroups
def test_scenario_jobs_from_a_folder_and_from_git(sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the host backend needs root for its cgroups")
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "scenario.yml").write_text(SCENARIO)
    _git("init", "-q", cwd=repo)
    _git("checkout", "-q", "-b", "measure", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "scenario", cwd=repo)
    # the host backend only because this machine's configuration says so (the file alone cannot choose it)
    measure = {"baseline_s": 0, "idle_s": 0, "interval_s": 0.05, "backend": "host"}
    client = Client(sqlite_queue.store, config_for(workdir=str(tmp_path / "work"), measure=measure))
    client.start()
    folder_job = sqlite_queue.jobs.submit(JobRequest(name="folder", folder=str(repo / "bench"), filename="scenario.yml",
                                                variables={"WORD": "local"}))
    git_job = sqlite_queue.jobs.submit(JobRequest(name="git", git_url=f"file://{repo}", branch="measure",
                                             filename="bench/scenario.yml", variables={"__GMT_VAR_WORD__": "remote"}))
    missing = sqlite_queue.jobs.submit(JobRequest(name="nobranch", git_url=f"file://{repo}", branch="nope"))
    for _ in range(3):
        client.process_one()
    for job, word in ((folder_job, "local"), (git_job, "remote")):
        done = sqlite_queue.jobs.get_job(job.id)
        assert done.state == "FINISHED", done.error
        run = sqlite_queue.store.get_run(done.run_id)
        assert run.kind == "scenario" and run.name == job.name
        assert f"word={word}" in "".join(e.text for e in sqlite_queue.store.logs(done.run_id))
    failed = sqlite_queue.jobs.get_job(missing.id)
    assert failed.state == "FAILED" and "git clone of file://" in failed.error and "(branch nope) failed" in failed.error
    assert list((tmp_path / "work").iterdir()) == []  # checkouts are removed
    assert sqlite_queue.outbox.pending_count() == 0


def test_jobs_run_one_and_configuration_errors(sqlite_url: str, sqlite_queue: ClusterQueue, tmp_path: Path) -> None:
    from .conftest import invoke

    config = tmp_path / "client.yml"
    config.write_text("machine_id: cron-1\nmeasure:\n  baseline_s: 0\n  interval_s: 0.05\n")
    assert "no job run" in invoke("jobs", "run-one", "--config", str(config), "--db", sqlite_url).stdout
    first, second = sqlite_queue.jobs.submit_many([JobRequest(name=f"cron-{i}", command=["true"]) for i in range(2)])
    result = invoke("jobs", "run-one", "--config", str(config), "--db", sqlite_url)
    assert result.exit_code == 0, result.exception
    assert f"job {first.id} 'cron-0' processed" in result.stdout
    assert sqlite_queue.jobs.get_job(first.id).state == "FINISHED" and sqlite_queue.jobs.get_job(second.id).state == "WAITING"
    assert sqlite_queue.machines.get("cron-1").status == "idle"
    config.write_text("machine_id: cron-1\nsleep_time: never\n")
    result = invoke("client", "--config", str(config), "--db", sqlite_url, "--once")
    assert str(result.exception) == f"{config}, line 2, sleep_time: expected a number, got 'never'"
    config.write_text("machine_id: cron-1\nexecutors:\n  command: no_such_module:Executor\n")
    result = invoke("jobs", "run-one", "--config", str(config), "--db", sqlite_url)
    assert "executors.command: cannot import 'no_such_module'" in str(result.exception)


HOST_ASKING = """\
name: asks for the host
x-wattwise:
  backend: host
services:
  job: {}
flow:
  - name: Work
    container: job
    commands:
      - type: console
        command: touch __GMT_VAR_MARKER__
"""


@pytest.mark.parametrize("backend", [None, "auto", "container"])
def test_a_queued_scenario_cannot_choose_the_host_backend(
    sqlite_queue: ClusterQueue, tmp_path: Path, backend: str | None
) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "usage_scenario.yml").write_text(HOST_ASKING)
    marker = tmp_path / "ran-on-the-host"
    measure: dict[str, Any] = {"baseline_s": 0, "idle_s": 0, "interval_s": 0.05}
    if backend is not None:
        measure["backend"] = backend
    client = Client(sqlite_queue.store, config_for(workdir=str(tmp_path / "work"), measure=measure))
    client.start()
    job = sqlite_queue.jobs.submit(JobRequest(name="sneaky", folder=str(folder), variables={"MARKER": str(marker)}))
    client.process_one()
    done = sqlite_queue.jobs.get_job(job.id)
    assert done.state == "FAILED", done.error
    if backend != "container":  # auto: the file's wish is refused with what would allow it
        assert "host backend" in done.error and "cluster client's configuration" in done.error
    assert not marker.exists()  # nothing ran on this machine
