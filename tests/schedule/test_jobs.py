"""Job trace readers (GAIA and Carbs forms) and the per-slot profiles of job models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wattwise.jobmodel import load_model
from wattwise.schedule.jobs import JobTraceError, parse_jobs, read_jobs
from wattwise.schedule.profile import profile_from_arrays, slot_profile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schedule"
PAI = Path(__file__).resolve().parents[2] / "data" / "jobs" / "alibaba-pai-1k.csv"


def test_gaia_trace_constant_jobs() -> None:
    jobs = read_jobs(FIXTURES / "gaia-small.csv")
    assert [j.id for j in jobs] == [0, 1, 2, 3]
    assert jobs[1].arrival_s == 600 and jobs[1].length_s == 1000 and jobs[1].cpus == 2
    assert jobs[1].model.work_s == 1000
    assert jobs[1].model.energy_j == pytest.approx(1000 * 2 * 10.0)  # 10 W per CPU by default
    assert read_jobs(FIXTURES / "gaia-small.csv", cpu_power_w=5)[3].model.mean_power_w == 20.0


def test_gaia_trace_with_a_model() -> None:
    model = load_model(FIXTURES / "job-model.json")
    job = read_jobs(FIXTURES / "gaia-small.csv", default_model=model)[2]
    assert job.kind == "model"
    assert job.model.startup_s == 300
    assert job.model.work_s == 7260
    assert [p.name for p in job.model.work] == ["high", "low", "high", "low", "high"]


def test_shipped_pai_trace() -> None:
    jobs = read_jobs(PAI)
    assert len(jobs) == 1000
    assert jobs[0].arrival_s == 0 and jobs[0].length_s == 6302


def test_carbs_trace_all_models() -> None:
    jobs = read_jobs(FIXTURES / "carbs-mixed.csv")
    const, default, listed, dicted, mocked, ml_job = jobs
    assert const.model.mean_power_w == 150 and const.kind == "constant"
    assert default.model.mean_power_w == 10.0
    assert listed.kind == "phases" and listed.model.startup == ()
    assert [p.name for p in listed.model.work] == ["load", "compute"] * 2
    assert listed.model.checkpoint_ends_s == [3600, 7200]
    assert dicted.model.startup_s == 600 and dicted.model.work_s == 5400
    assert mocked.kind == "mocked-constant-from-phases"
    assert mocked.model.startup == () and len(mocked.model.work) == 1
    assert mocked.model.work_s == 7800
    assert mocked.model.energy_j == pytest.approx(600 * 80 + 3600 * 200 + 3600 * 100)
    assert ml_job.kind == "ml"
    assert ml_job.model.startup_s == 120
    assert ml_job.model.work_s == 3000


def test_carbs_per_job_waiting_time() -> None:
    jobs = read_jobs(FIXTURES / "carbs-waiting.csv")
    assert [j.wait_s for j in jobs] == [0, 7200]


def test_averaged_jobs() -> None:
    jobs = read_jobs(FIXTURES / "carbs-mixed.csv", averaged=True)
    for job in jobs:
        assert job.model.startup == () and len(job.model.work) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arrival_time,length\n0,1\n", r"t.csv:1: header .* lacks cpus"),
        ("arrival_time,length,cpus,colour\n0,1,1,red\n", r"t.csv:1: unknown column\(s\) colour"),
        ("arrival_time,length,cpus\n0,1,1\nx,1,1\n", r"t.csv:3: arrival_time is not a number: 'x'"),
        ("arrival_time,length,cpus\n0,0,1\n", r"t.csv:2: length must be > 0"),
        ("arrival_time,length,cpus\n0,10,1.5\n", r"t.csv:2: cpus must be a whole number"),
        ("arrival_time,length,cpus\n0,10\n", r"t.csv:2: expected 3 fields"),
        ("arrival_time|length|cpus|name|args\n0|10|1|gpu|\n", r"t.csv:2: unknown job model name 'gpu'"),
        ("arrival_time|length|cpus|name|args\n0|10|1|phases|[{'name': 'a'\n",
         r"t.csv:2: args .* is not a Python literal"),
        ("arrival_time|length|cpus|name|args\n0|10|1|phases|__import__('os').system('false')\n",
         r"t.csv:2: args .* is not a Python literal"),
        ("arrival_time|length|cpus|name|args\n0|10|1|phases|[{'name': 'a', 'duration': 5}]\n",
         r"t.csv:2: .*missing key 'power_w'"),
        ("arrival_time|length|cpus|name|args\n0|10|1|constant|'fast'\n",
         r"t.csv:2: args of a constant job must be its power"),
        ("arrival_time|length|cpus|name|args\n0|10|1|ml|{'epochs': 1, 'speed': 3}\n",
         r"t.csv:2: args of an ml job: .*speed"),
        ("arrival_time|length|cpus|name|args\n0|10|1|ml|[1, 2]\n", r"t.csv:2: args of an ml job must be a dict"),
        ("arrival_time|length|cpus|name|args\n0|10|1|phases|\n", r"t.csv:2: a 'phases' job needs args"),
        ("arrival_time,length,cpus\n", r"t.csv: job trace has a header but no jobs"),
        ("", r"t.csv: job trace is empty"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(JobTraceError, match=message):
        parse_jobs(text, source="t.csv")


def test_slot_profile_exact_energy_and_checkpoints() -> None:
    model = load_model(FIXTURES / "job-model.json").tiled(4000)
    p = slot_profile(model, 60.0)
    assert p.n_startup == 5 and p.n_work == 67
    assert p.startup_energy_j == pytest.approx(300 * 120)
    assert p.work_j.sum() == pytest.approx(model.work_energy_j)
    assert p.last_work_slot_s == pytest.approx(40.0)
    # stops allowed after 0 slots and where the 'low' checkpoint ends (3600 s of work = 60 slots)
    assert np.flatnonzero(p.stop_ok).tolist() == [0, 60]
    # an odd resolution: energy still exact, the checkpoint rounds up to the end of its slot
    q = slot_profile(model, 7 * 60.0)
    assert q.run_j.sum() == pytest.approx(model.energy_j)
    assert np.flatnonzero(q.stop_ok).tolist() == [0, 9]


def test_profile_from_arrays() -> None:
    p = profile_from_arrays([1, 2], [3, 4, 5], 60.0, stop_ok=[False, False, True])
    assert p.n_slots == 5
    assert p.stop_ok.tolist() == [True, False, True]


def test_time_unit_hours() -> None:
    jobs = parse_jobs("arrival_time,length,cpus,waiting_time\n0.25,0.5,2,1\n", source="azure.csv", time_unit="h")
    assert (jobs[0].arrival_s, jobs[0].length_s, jobs[0].wait_s) == (900.0, 1800.0, 3600.0)
    with pytest.raises(JobTraceError, match="unknown time unit 'days'"):
        parse_jobs("arrival_time,length,cpus\n0,1,1\n", time_unit="days")
