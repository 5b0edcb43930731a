"""Control-workload validation: coefficient of variation over the window, pausing and releasing the machine."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import select

from wattwise.cluster.client import Client
from wattwise.cluster.config import parse_config
from wattwise.cluster.control import CONTROL, coefficient_of_variation, phase_values
from wattwise.cluster.database import EMAILS
from wattwise.cluster.executors import ExecutionContext, ExecutionResult, Executor
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import JobInfo
from wattwise.cluster.submission import JobRequest


class ScriptedControl(Executor):
    """Returns one prepared [RUNTIME] energy per execution."""

    def __init__(self, energies: list[float | None]) -> None:
        self.energies = list(energies)
        self.jobs: list[JobInfo] = []

    def execute(self, job: JobInfo, context: ExecutionContext) -> ExecutionResult:
        self.jobs.append(job)
        energy = self.energies.pop(0)
        phase = {"name": "[RUNTIME]", "energy_j": energy, "duration_s": 10.0,
                 "mean_power_w": None if energy is None else energy / 10}
        return ExecutionResult(True, run_id=1000 + len(self.jobs), summary={"phases": [phase]})


CONFIG = """\
machine_id: bench-1
notify_email: ops@example.org
control_workload:
  command: [stress-ng, --cpu, "1", --timeout, 10s]
  comparison_window: 3
  threshold: 0.05
  metrics: [energy_j, duration_s]
  time_between_control_workload_validations_s: 0
"""


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([10, 10, 10]) == 0.0
    assert coefficient_of_variation([9, 10, 11]) == pytest.approx(0.1)  # sample std 1, mean 10
    assert coefficient_of_variation([-1, 1]) == math.inf
    with pytest.raises(ValueError):
        coefficient_of_variation([1.0])


def test_phase_values_name_what_is_missing() -> None:
    summary = {"phases": [{"name": "[RUNTIME]", "energy_j": None, "duration_s": 3.0}]}
    assert phase_values(summary, "[RUNTIME]", ["duration_s"]) == {"duration_s": 3.0}
    with pytest.raises(ValueError, match="metric 'energy_j' is not available in phase '\\[RUNTIME\\]'"):
        phase_values(summary, "[RUNTIME]", ["energy_j"])
    with pytest.raises(ValueError, match="no phase 'Train' \\(it has: \\[RUNTIME\\]\\)"):
        phase_values(summary, "Train", ["energy_j"])


def _emails(queue: ClusterQueue) -> list[tuple[str, str]]:
    with queue.db.transaction(write=False) as connection:
        return [tuple(r) for r in connection.execute(select(EMAILS.c.recipient, EMAILS.c.subject).order_by(EMAILS.c.id))]


def test_unstable_machine_stops_taking_jobs_until_a_passing_validation(sqlite_queue: ClusterQueue) -> None:
    control = ScriptedControl([100, 101, 99, 150, 100, 100, 100])
    client = Client(sqlite_queue.store, parse_config(CONFIG), executors={"command": control})
    client.start()
    queue = client.queue
    client.validate_control()  # first validation fills the window: 3 runs
    assert len(control.jobs) == 3 and control.jobs[0].command == ["stress-ng", "--cpu", "1", "--timeout", "10s"]
    machine = queue.machines.get("bench-1")
    assert machine.accepts_jobs and machine.last_control_workload_at is not None
    assert [e.status for e in queue.machines.status_history("bench-1")] == ["control-workload-passed", "control-workload", "starting"]

    client.validate_control()  # one more run: 150 J, the window is 150, 99, 101
    machine = queue.machines.get("bench-1")
    assert not machine.accepts_jobs
    assert machine.paused_reason.startswith("control workload: unstable: energy_j CV 0.2")
    assert "> threshold 0.05 (phase [RUNTIME], last 3 control runs (run ids 1004, 1003, 1002))" in machine.paused_reason
    assert _emails(queue) == [("ops@example.org", "[wattwise] bench-1: control workload unstable")]

    job = queue.jobs.submit(JobRequest(name="waits", command=["true"], machine_id="bench-1"))
    assert client.iteration() is False  # validation due again (100 J, still unstable), no job taken
    assert queue.jobs.get_job(job.id).state == "WAITING" and queue.machines.get("bench-1").status == "paused"
    client.validate_control()  # window 100, 100, 150: still unstable, no second e-mail
    assert not queue.machines.get("bench-1").accepts_jobs and len(_emails(queue)) == 1
    client.validate_control()  # window 100, 100, 100
    machine = queue.machines.get("bench-1")
    assert machine.accepts_jobs and machine.paused_reason is None
    assert _emails(queue)[-1] == ("ops@example.org", "[wattwise] bench-1: control workload ok")
    with queue.db.transaction(write=False) as connection:
        stored = connection.execute(select(CONTROL.c.run_id, CONTROL.c.ok, CONTROL.c["values"])).all()
    assert len(stored) == 7 and all(ok for _, ok, _ in stored)
    assert stored[3][2] == {"energy_j": 150.0, "duration_s": 10.0}


def test_control_run_without_the_metric_fails_the_validation(sqlite_queue: ClusterQueue) -> None:
    client = Client(sqlite_queue.store, parse_config(CONFIG), executors={"command": ScriptedControl([None])})
    client.start()
    client.validate_control()
    machine = client.queue.machines.get("bench-1")
    assert not machine.accepts_jobs
    assert "metric 'energy_j' is not available in phase '[RUNTIME]'" in machine.paused_reason
    assert client.queue.outbox.pending_count() == 1


def test_real_command_control_workload(sqlite_queue: ClusterQueue) -> None:
    """The control workload measured for real (`true`), duration compared with a lax threshold."""
    config = parse_config(
        "machine_id: m1\nmeasure:\n  baseline_s: 0\n  interval_s: 0.05\n"
        "control_workload:\n  command: 'true'\n  comparison_window: 2\n  threshold: 1000\n  metrics: [duration_s]\n"
    )
    client = Client(sqlite_queue.store, config)
    client.start()
    client.validate_control()
    assert client.queue.machines.get("m1").accepts_jobs
    with client.queue.db.transaction(write=False) as connection:
        rows: list[Any] = connection.execute(select(CONTROL.c.run_id, CONTROL.c.ok)).all()
    assert len(rows) == 2 and all(ok for _, ok in rows)
    for run_id, _ in rows:
        run = sqlite_queue.store.get_run(run_id)
        assert run.status == "finished" and run.command == ["true"]
