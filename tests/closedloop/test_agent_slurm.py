"""The plan agent on the real one-node Slurm: a forecast change re-plans a chain (with the agent killed and started
again), suspend mode suspends and resumes one job at the planned windows, and a plan is cancelled midway."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm-checkpoint"
SLOT_S = 4
LOW, HIGH = 10.0, 1000.0
FINISHED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "GONE")


def submit(run_cli, env, db: Path, folder: Path, model: Path, trace: Path, now: int, *extra: str) -> dict:
    out = run_cli("slurm", "submit", "--model", str(model), "--policy", "suspend-resume", "--slot", f"{SLOT_S}s",
                  "--carbon", str(trace), "--wait-hours", str(60 / 3600), "--now", str(now), "--checkpoint-dir",
                  str(folder), "--db", str(db), "--json", *extra, "--", "-o", str(folder.parent / "seg-%j.out"),
                  str(EXAMPLE / "job.sbatch"), env=env, check=True)
    return json.loads(out.stdout)


def start_agent(env: dict[str, str], plan_id: int, db: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "wattwise"
    with log.open("ab") as handle:
        return subprocess.Popen([str(exe), "slurm", "agent", str(plan_id), "--interval", "0.5s", "--db", str(db)],
                                env=env, stdout=handle, stderr=handle)


def plan_row(plan_id: int, db: Path) -> dict:
    from wattwise.closedloop.plans import get_plan
    from wattwise.store import Store

    row = get_plan(Store(f"sqlite:///{db}"), plan_id)
    return {"status": row.status, "events": row.events, "jobs": row.jobs, "plan": row.plan}


@pytest.mark.slurm
@pytest.mark.slow
def test_a_forecast_change_replans_the_rest_and_a_restarted_agent_carries_on(
    run_cli, slurm_env, tmp_path, write_model, write_trace, states, wait_until
) -> None:
    now = int(time.time()) + 2
    first = [HIGH, LOW, LOW, LOW] + [HIGH] * 6 + [LOW] * 3 + [HIGH] * 3 + [LOW] * 3 + [HIGH] * 6
    trace = write_trace(now, first)
    db, folder = tmp_path / "agent.db", tmp_path / "ck"
    result = submit(run_cli, slurm_env, db, folder, write_model(), trace, now)
    plan_id = result["plan_id"]
    assert [round((s["begin_s"] - now) / SLOT_S) for s in result["plan"]["segments"]] == [1, 10, 16]
    log = tmp_path / "agent.log"
    agent = start_agent(slurm_env, plan_id, db, log)
    try:
        first_job = result["jobs"][0]["job_id"]
        wait_until(lambda: states([first_job])[0] != "PENDING", "the first segment to start")
        # the forecast now says the hours right after the first segment are clean: the rest can run at once
        write_trace(now, [HIGH, LOW, LOW, LOW] + [LOW] * 5 + [HIGH] * 17)
        wait_until(lambda: any(e["kind"] == "replan" for e in plan_row(plan_id, db)["events"]),
                   "the agent to re-plan")
        agent.send_signal(signal.SIGKILL)  # an agent that dies ...
        agent.wait(timeout=30)
        agent = start_agent(slurm_env, plan_id, db, log)  # ... and is started again carries on
        assert agent.wait(timeout=300) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
        row = plan_row(plan_id, db)
        subprocess.run(["scancel", *(str(j["job_id"]) for j in row["jobs"])], env=slurm_env, timeout=30)
    row = plan_row(plan_id, db)
    replan = next(e for e in row["events"] if e["kind"] == "replan")
    assert replan["index"] == 1 and replan["max_change"] > 0.1
    assert set(replan["cancelled"]) == {j["job_id"] for j in result["jobs"][1:]}
    # after the first segment (planned for slots 1-3) the rest runs in the newly clean slots, from slot 4 or from
    # the slot after the re-plan if Slurm started the first segment late: one resume instead of two
    earliest = max(4, -(-(replan["t_s"] - now) // SLOT_S))
    assert [round((s["begin_s"] - now) / SLOT_S) for s in row["plan"]["segments"]] == [1, earliest], row["events"]
    assert row["status"] == "done"
    assert (folder / "output.txt").read_text().splitlines() == [f"unit {i}" for i in range(6)]
    report = json.loads(run_cli("slurm", "report", str(plan_id), "--db", str(db), "--json", env=slurm_env,
                                check=True).stdout)
    assert report["replans"] == 1 and report["restarts_paid"] == 1


@pytest.mark.slurm
@pytest.mark.slow
def test_suspend_mode_suspends_and_resumes_one_job_at_the_planned_windows(
    run_cli, slurm_env, tmp_path, write_model, write_trace, states, wait_until
) -> None:
    now = int(time.time()) + 2
    # 7 slots of running (startup + 6 units) fit the 7 clean slots exactly: 1-3, 6-8, 10
    pattern = [HIGH, LOW, LOW, LOW, HIGH, HIGH, LOW, LOW, LOW, HIGH, LOW] + [HIGH] * 12
    db, folder = tmp_path / "suspend.db", tmp_path / "ck"
    result = submit(run_cli, slurm_env, db, folder, write_model(), write_trace(now, pattern), now,
                    "--mode", "suspend")
    plan_id = result["plan_id"]
    assert [round((s["begin_s"] - now) / SLOT_S) for s in result["plan"]["segments"]] == [1, 6, 10]
    assert len(result["jobs"]) == 1 and result["plan"]["restarts"] == 2
    assert all(s["restart_energy_j"] == 0 for s in result["plan"]["segments"])  # a resume repeats nothing
    agent = start_agent(slurm_env, plan_id, db, tmp_path / "agent.log")
    try:
        assert agent.wait(timeout=300) == 0, (tmp_path / "agent.log").read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
        subprocess.run(["scancel", str(result["jobs"][0]["job_id"])], env=slurm_env, timeout=30)
    row = plan_row(plan_id, db)
    kinds = [e["kind"] for e in row["events"]]
    assert kinds.count("suspend") == 2 and kinds.count("resume") == 2, kinds
    assert row["status"] == "done"
    assert (folder / "output.txt").read_text().splitlines() == [f"unit {i}" for i in range(6)]
    report = json.loads(run_cli("slurm", "report", str(plan_id), "--db", str(db), "--json", env=slurm_env,
                                check=True).stdout)
    assert report["mode"] == "suspend" and len(report["segments"]) == 3
    # the job was frozen between the windows: each suspend lies between a planned window's end and the next window's
    # start, each resume inside a later window (or after the last one began), in turn. (How long it ran in all is
    # not asserted: on a busy machine the job's running time stretches, and the agent acts a poll or more late.)
    windows = [(s["begin_s"], s["begin_s"] + s["work_s"]) for s in row["plan"]["segments"]]
    actions = [e for e in row["events"] if e["kind"] in ("suspend", "resume")]
    assert [e["kind"] for e in actions] == ["suspend", "resume"] * 2, actions
    for event in actions:
        if event["kind"] == "suspend":
            gaps = [(end, nxt) for (_, end), (nxt, _) in itertools.pairwise(windows)]
            assert any(end <= event["t_s"] < nxt for end, nxt in gaps), (event, windows)
        else:
            assert any(begin <= event["t_s"] < end for begin, end in windows) or event["t_s"] >= windows[-1][0]
    ran = sum(r["end_s"] - r["start_s"] for r in report["segments"])
    assert ran > 0


@pytest.mark.slurm
def test_a_plan_is_cancelled_midway(
    run_cli, slurm_env, tmp_path, write_model, write_trace, states, wait_until
) -> None:
    now = int(time.time()) + 2
    pattern = [HIGH, LOW, LOW, LOW] + [HIGH] * 6 + [LOW] * 3 + [HIGH] * 3 + [LOW] * 3 + [HIGH] * 6
    db, folder = tmp_path / "cancel.db", tmp_path / "ck"
    result = submit(run_cli, slurm_env, db, folder, write_model(), write_trace(now, pattern), now)
    ids = [j["job_id"] for j in result["jobs"]]
    wait_until(lambda: states(ids[:1])[0] == "RUNNING", "the first segment to run")
    out = run_cli("slurm", "cancel", str(result["plan_id"]), "--db", str(db), env=slurm_env, check=True)
    assert "cancelled job(s)" in out.stdout
    wait_until(lambda: all(s in FINISHED for s in states(ids)), "the cancelled jobs to end", timeout_s=60)
    assert states(ids) == ["CANCELLED"] * 3  # the running segment is stopped, the waiting ones never run
    status = json.loads(run_cli("slurm", "status", str(result["plan_id"]), "--db", str(db), "--json",
                                env=slurm_env, check=True).stdout)
    assert status["status"] == "cancelled"
    units = (folder / "output.txt").read_text().splitlines() if (folder / "output.txt").exists() else []
    assert units == [f"unit {i}" for i in range(len(units))] and len(units) < 6  # no unit twice, work not done
