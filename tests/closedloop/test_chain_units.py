"""The closed loop's pieces without waiting for jobs to run: the forecast comparison of the agent, sbatch's option
grammar, the segments' time limits and environment, the plan row's merges, and an interrupted submission (on the
real Slurm, with segments that begin in the future and are cancelled at once)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from wattwise.carbon.trace import CarbonTrace
from wattwise.closedloop.agent import _step_chain, forecast_change
from wattwise.closedloop.chain import (
    absolute_db_url,
    check_sbatch_args,
    segment_time_s,
    split_sbatch_args,
    submit_chain,
)
from wattwise.closedloop.plan import ChainPlan, plan_chain
from wattwise.closedloop.plans import (
    add_event,
    get_plan,
    merge_records,
    replace_tail,
    save_plan,
    set_status,
    update_plan,
)
from wattwise.closedloop.report import JobRecord
from wattwise.errors import WattwiseError
from wattwise.jobmodel import JobModel
from wattwise.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm-checkpoint"
SLOT_S = 4.0
T0 = 1_800_000_000.0
LOW, HIGH = 10.0, 1000.0
PATTERN = [HIGH, LOW, LOW, LOW, HIGH, LOW, LOW, LOW, HIGH, LOW, LOW, LOW] + [HIGH] * 12


def _model() -> JobModel:
    return JobModel.from_dict({
        "startup": [{"name": "startup", "duration_s": SLOT_S, "power_w": 60}],
        "work": [{"name": f"unit {i}", "duration_s": SLOT_S, "power_w": 100, "is_checkpoint": True}
                 for i in range(6)]})


def _trace(start_s: float, values: list[float], source: str = "test") -> CarbonTrace:
    return CarbonTrace.from_samples([start_s + SLOT_S * i for i in range(len(values))], values, source=source)


def _plan(source: str = "test") -> ChainPlan:
    return plan_chain(_model(), _trace(T0, PATTERN, source), now_s=T0, wait_s=60, policy="suspend-resume",
                      slot_s=SLOT_S)


def _write_csv(path: Path, start_s: float, values: list[float]) -> Path:
    path.write_text("timestamp,g_per_kwh\n" + "".join(f"{start_s + SLOT_S * i:.0f},{v}\n"
                                                      for i, v in enumerate(values)))
    return path


def test_the_plan_is_three_segments_on_the_trace() -> None:
    plan = _plan()
    assert [round((s.begin_s - T0) / SLOT_S) for s in plan.segments] == [1, 5, 9]
    assert len(plan.settings["intensity_g_per_kwh"]) == round((60 + 7 * SLOT_S) / SLOT_S)  # 22 slots of 4 s


def test_a_forecast_that_starts_after_the_planning_time_compares_only_the_slots_it_covers() -> None:
    plan = _plan()
    old = plan.settings["intensity_g_per_kwh"]
    # the refreshed forecast starts 6 slots after planned_at, and slot 9 (a clean one) is now dirty
    later = [HIGH if i == 3 else v for i, v in enumerate(PATTERN[6:])]
    change, new = forecast_change(plan, T0 + 5 * SLOT_S, _trace(T0 + 6 * SLOT_S, later))
    assert change == pytest.approx((HIGH - LOW) / LOW)
    assert new[:6] == old[:6]  # not covered: kept as planned
    assert new[9] == HIGH and new[6:9] == old[6:9] and new[10:] == old[10:]
    # the same forecast unchanged: no slot moved (slots 0-5 are not compared, though the list keeps them)
    assert forecast_change(plan, T0, _trace(T0 + 6 * SLOT_S, PATTERN[6:]))[0] == 0.0
    # a forecast that starts after the deadline compares nothing
    assert forecast_change(plan, T0, _trace(T0 + 40 * SLOT_S, [HIGH] * 4)) == (0.0, old)
    # the slots of a forecast that starts mid-slot: only whole slots it covers (from slot 7 on)
    change, new = forecast_change(plan, T0, _trace(T0 + 6.5 * SLOT_S, [LOW * 2] * 30))
    assert new[6] == old[6] and new[7] == LOW * 2 and change == pytest.approx(1.0)


def test_a_forecast_file_that_starts_later_is_read_by_the_agent(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "forecast.csv", T0, PATTERN)
    plan = _plan(str(csv))
    assert plan.settings["carbon_source"] == str(csv)
    _write_csv(csv, T0 + 8 * SLOT_S, [HIGH] + [HIGH, LOW, LOW] + [HIGH] * 12)  # slot 9 became dirty
    change, new = forecast_change(plan, T0 + 8 * SLOT_S)
    assert change == pytest.approx((HIGH - LOW) / LOW) and new[9] == HIGH


def _store_with_plan(tmp_path: Path, plan: ChainPlan, jobs: list[dict]) -> tuple[Store, int]:
    store = Store(f"sqlite:///{tmp_path / 'plans.db'}")
    plan_id = save_plan(store, name="job", mode="chain", status="submitted", checkpoint_dir=str(tmp_path / "ck"),
                        model=_model().to_dict(), plan=plan.to_dict(), jobs=jobs, sbatch_args=[], events=[])
    return store, plan_id


def test_the_agent_notes_an_unreadable_forecast_and_keeps_the_plan(tmp_path: Path) -> None:
    csv = _write_csv(tmp_path / "forecast.csv", T0, PATTERN)
    plan = _plan(str(csv))
    jobs = [{"index": i, "job_id": 900_000 + i, "argv": []} for i in range(3)]
    store, plan_id = _store_with_plan(tmp_path, plan, jobs)
    records = {j["job_id"]: JobRecord(j["job_id"], "PENDING", None, None, None, None) for j in jobs}
    csv.write_text("timestamp,g_per_kwh\nnot a time,12\n")  # a refresh that went wrong
    for t in (T0 + 1, T0 + 2):  # noted once, not at every poll
        assert _step_chain(store, get_plan(store, plan_id), plan, records, t, None, 0.1) == "submitted"
    events = get_plan(store, plan_id).events
    assert len(events) == 1 and events[0]["kind"] == "checked" and events[0]["forecast_unavailable"] is True
    assert "the plan is kept" in events[0]["note"] and events[0]["index"] == 0
    _write_csv(csv, T0 + 2 * SLOT_S, PATTERN[2:])  # readable again, starting after planned_at: judged, unchanged
    assert _step_chain(store, get_plan(store, plan_id), plan, records, T0 + 3, None, 0.1) == "submitted"
    last = get_plan(store, plan_id).events[-1]
    assert last["kind"] == "checked" and last["max_change"] == 0.0 and "source_version" in last


def test_records_and_events_merge_into_the_row_as_it_is_now(tmp_path: Path) -> None:
    plan = _plan()
    store, plan_id = _store_with_plan(tmp_path, plan, [{"index": 0, "job_id": 1}, {"index": 1, "job_id": 2}])
    stale = get_plan(store, plan_id).jobs  # what `slurm status` read ...
    update_plan(store, plan_id, jobs=[{"index": 0, "job_id": 1}, {"index": 1, "job_id": 3}])  # ... a re-plan ...
    record = {"job_id": 1, "state": "COMPLETED", "start_s": 1.0, "end_s": 2.0, "exit_code": "0:0", "energy_j": None}
    after = merge_records(store, plan_id, [{**stale[0], "record": record}, stale[1]])  # ... then status writes
    assert after == [{"index": 0, "job_id": 1, "record": record}, {"index": 1, "job_id": 3}]
    assert get_plan(store, plan_id).jobs == after
    add_event(store, plan_id, "checked", 1.0)
    add_event(store, plan_id, "replan", 2.0)
    assert [e["kind"] for e in get_plan(store, plan_id).events] == ["checked", "replan"]
    # a re-plan replaces the jobs from its index on and keeps the earlier ones as the row holds them now
    replace_tail(store, plan_id, plan.to_dict(), 1, [{"index": 1, "job_id": 4}, {"index": 2, "job_id": 5}])
    assert get_plan(store, plan_id).jobs == [{"index": 0, "job_id": 1, "record": record}, {"index": 1, "job_id": 4},
                                             {"index": 2, "job_id": 5}]
    # a plan cancelled meanwhile is not set back to running by a stale status
    assert set_status(store, plan_id, "cancelled") == "cancelled"
    assert set_status(store, plan_id, "done") == "cancelled" and get_plan(store, plan_id).status == "cancelled"


def test_sbatch_options_end_at_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "job.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --ntasks=1\nexec true\n")
    (tmp_path / "out.log").write_text("an existing output file\n")
    assert check_sbatch_args(["-o", "out.log", "job.sbatch"]) == Path("job.sbatch")
    assert check_sbatch_args(["--output", "out.log", "-p", "batch", "job.sbatch"]) == Path("job.sbatch")
    assert check_sbatch_args(["-oout.log", "-vH", "--hold", "job.sbatch"]) == Path("job.sbatch")
    # the script's own arguments are not sbatch's: `-t 5` after the script is the script's business
    assert check_sbatch_args(["job.sbatch", "-t", "5", "--begin=x"]) == Path("job.sbatch")
    assert split_sbatch_args(["-J", "x", "--mem=1G", "job.sbatch", "-t", "5"]) == (
        ["-J", "--mem=1G"], "job.sbatch", ["-t", "5"])
    for reserved in (["-t", "5", "job.sbatch"], ["--time", "5", "job.sbatch"], ["-t5", "job.sbatch"],
                     ["--dependency=afterok:1", "job.sbatch"]):
        with pytest.raises(WattwiseError, match=r"do not pass --(time|dependency)"):
            check_sbatch_args(reserved)
    with pytest.raises(WattwiseError, match=r"the batch script 'missing\.sbatch' is not a file"):
        check_sbatch_args(["-o", "out.log", "missing.sbatch"])
    assert check_sbatch_args(["--wrap", "python train.py"]) is None


def test_the_last_segment_may_run_to_the_deadline_and_the_others_their_share() -> None:
    plan = _plan()
    lead = 30.0
    first, last = plan.segments[0], plan.segments[-1]
    assert segment_time_s(plan, 0, lead) == first.startup_s + first.work_s + lead + 60
    assert segment_time_s(plan, 2, lead) == (plan.deadline_s - last.begin_s) + last.startup_s + last.work_s + lead + 60


def test_a_dry_run_creates_nothing_and_keeps_the_variables_off_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    jobs = submit_chain(_plan(), [str(EXAMPLE / "job.sbatch")], plan_id=0, checkpoint_dir=folder, dry_run=True,
                        measure_db="postgresql://user:secret@db/wattwise")
    assert not folder.exists()
    assert all("WATTWISE" not in " ".join(j["argv"]) and "--export=ALL" in j["argv"] for j in jobs)
    assert [j["env"]["WATTWISE_SEGMENT"] for j in jobs] == ["0", "1", "2"]
    assert all(j["env"]["WATTWISE_PLAN_DB"] == "…" for j in jobs)  # the URL (and its password) is not kept
    assert absolute_db_url("sqlite:///rel/plans.db") == f"sqlite:///{Path('rel/plans.db').resolve()}"
    assert absolute_db_url("sqlite:////abs/plans.db") == "sqlite:////abs/plans.db"
    assert absolute_db_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"


@pytest.mark.slurm
def test_an_interrupted_submission_cancels_what_it_submitted(slurm_env: dict[str, str], tmp_path: Path) -> None:
    now = time.time() + 3600  # segments that begin in an hour: they wait, and are cancelled at once
    plan = plan_chain(_model(), _trace(now, PATTERN), now_s=now, wait_s=60, policy="suspend-resume", slot_s=SLOT_S)
    folder = tmp_path / "ck"
    (folder / "chain.json").mkdir(parents=True)  # writing chain.json fails after the last sbatch
    db = "postgresql://user:secret,with,commas@127.0.0.1/none"
    name = f"interrupted{time.time_ns()}"  # this run's jobs only
    with pytest.raises(IsADirectoryError):
        submit_chain(plan, ["-o", str(tmp_path / "seg-%j.out"), str(EXAMPLE / "job.sbatch")], plan_id=7,
                     checkpoint_dir=folder, env=slurm_env, name=name, measure_db=db)
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T", "--states=all"], capture_output=True, text=True,
                         env=slurm_env, timeout=30).stdout
    ours = [line.split() for line in out.splitlines() if f" {name}-" in line]
    assert len(ours) == 3 and all(state == "CANCELLED" for _, _, state in ours), out
    shown = subprocess.run(["scontrol", "-o", "show", "job", ours[0][0]], capture_output=True, text=True,
                           env=slurm_env, timeout=30).stdout
    assert "secret" not in shown and "WATTWISE" not in shown  # neither on the command line nor in SubmitLine
    assert json.dumps(plan.to_dict())  # the plan itself was not touched


SUBMITTER = """
import sys, time
from pathlib import Path
from wattwise.carbon.trace import CarbonTrace
from wattwise.closedloop.chain import submit_chain
from wattwise.closedloop.plan import plan_chain
from wattwise.jobmodel import JobModel

model = JobModel.from_dict({"startup": [{"name": "s", "duration_s": 4, "power_w": 60}],
                            "work": [{"name": f"u{i}", "duration_s": 4, "power_w": 100, "is_checkpoint": True}
                                     for i in range(6)]})
pattern = [float(v) for v in sys.argv[3].split(",")]
now = time.time() + 3600
trace = CarbonTrace.from_samples([now + 4 * i for i in range(len(pattern))], pattern)
plan = plan_chain(model, trace, now_s=now, wait_s=60, policy="suspend-resume", slot_s=4)
submit_chain(plan, ["-o", "/dev/null", sys.argv[4]], plan_id=1, checkpoint_dir=Path(sys.argv[1]), name=sys.argv[2])
"""


@pytest.mark.slurm
def test_a_submission_stopped_by_sigterm_cancels_what_it_submitted(slurm_env: dict[str, str], tmp_path: Path,
                                                                   wait_until) -> None:
    import os
    import signal
    import sys

    folder = tmp_path / "ck"
    folder.mkdir()
    os.mkfifo(folder / "chain.json")  # the submitter blocks writing chain.json after its last sbatch: stop it there
    name = f"sigterm{time.time_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", SUBMITTER, str(folder), name, ",".join(map(str, PATTERN)),
                             str(EXAMPLE / "job.sbatch")], env=slurm_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def ours() -> list[list[str]]:
        out = subprocess.run(["squeue", "-h", "-o", "%i %j %T", "--states=all"], capture_output=True, text=True,
                             env=slurm_env, timeout=30).stdout
        return [line.split() for line in out.splitlines() if f" {name}-" in line]

    try:
        wait_until(lambda: len(ours()) == 3, "the three segments to be submitted", timeout_s=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [state for _, _, state in ours()] == ["CANCELLED"] * 3


@pytest.mark.slurm
def test_a_replan_that_cannot_be_submitted_keeps_the_old_chain(slurm_env: dict[str, str], tmp_path: Path) -> None:
    from wattwise.closedloop.agent import _replan
    from wattwise.closedloop.report import job_records

    now = float(int(time.time()) + 3600)  # segments that begin in an hour: they wait
    trace = _trace(now, PATTERN)
    plan = plan_chain(_model(), trace, now_s=now, wait_s=60, policy="suspend-resume", slot_s=SLOT_S)
    folder = tmp_path / "ck"
    script = str(EXAMPLE / "job.sbatch")
    old = submit_chain(plan, ["-o", "/dev/null", script], plan_id=1, checkpoint_dir=folder, env=slurm_env,
                       name=f"keep{time.time_ns()}")
    ids = [j["job_id"] for j in old]
    try:
        store = Store(f"sqlite:///{tmp_path / 'plans.db'}")
        # the stored sbatch arguments name a partition the cluster does not have: the re-plan's sbatch fails
        plan_id = save_plan(store, name="job", mode="chain", status="submitted", checkpoint_dir=str(folder),
                            model=_model().to_dict(), plan=plan.to_dict(), jobs=old,
                            sbatch_args=["--partition=no-such-partition", script], events=[])
        changed = _trace(now, [LOW] * len(PATTERN))  # every slot clean now: a re-plan would run the rest at once
        _replan(store, get_plan(store, plan_id), plan, plan.segments[1], now, 1.0, slurm_env, "v2", changed)
        row = get_plan(store, plan_id)
        assert [j["job_id"] for j in row.jobs] == ids and row.plan == plan.to_dict()
        assert row.events[-1]["kind"] == "checked" and "old chain is kept" in row.events[-1]["note"]
        assert [job_records(ids, slurm_env)[i].state for i in ids] == ["PENDING"] * 3  # nothing was cancelled
    finally:
        subprocess.run(["scancel", *map(str, ids)], env=slurm_env, timeout=30, check=False)
