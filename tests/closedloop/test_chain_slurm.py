"""The closed loop on the real one-node Slurm (scripts/services.d/slurm.sh), on a compressed clock: a carbon trace
of 4-second slots, a job of 6 work units of 4 s after a 4 s startup, planned with suspend-resume into 3 segments."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm-checkpoint"
SLOT_S = 4
LOW, HIGH = 10.0, 1000.0
#: per slot: three low-carbon windows of 3 slots (a startup + 2 units each), one high-carbon slot between them
PATTERN = [HIGH, LOW, LOW, LOW, HIGH, LOW, LOW, LOW, HIGH, LOW, LOW, LOW] + [HIGH] * 12
#: the slots where the planned segments begin
EXPECTED_STARTS = [1, 5, 9]
#: how late a segment may start after its planned begin: the controller's scheduling passes
GRANULARITY_S = 10
FINISHED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "GONE")


@pytest.mark.slurm
@pytest.mark.slow
def test_suspend_resume_plan_runs_in_its_windows_and_does_the_work_once(
    run_cli, slurm_env, tmp_path, write_model, write_trace, states, wait_until
) -> None:
    now = int(time.time()) + 2
    db = tmp_path / "loop.db"
    folder = tmp_path / "checkpoints"
    submitted = run_cli(
        "slurm", "submit", "--model", str(write_model()), "--policy", "suspend-resume", "--slot", f"{SLOT_S}s",
        "--carbon", str(write_trace(now, PATTERN)), "--wait-hours", str(60 / 3600), "--now", str(now),
        "--checkpoint-dir", str(folder), "--db", str(db), "--measure", "--json", "--",
        "-o", str(tmp_path / "segment-%j.out"), str(EXAMPLE / "job.sbatch"), env=slurm_env, check=True)
    submitted_at = time.time()  # under load the submission itself can take longer than the first wait
    result = json.loads(submitted.stdout)
    plan, jobs = result["plan"], result["jobs"]
    try:
        assert [round((s["begin_s"] - now) / SLOT_S) for s in plan["segments"]] == EXPECTED_STARTS
        assert plan["restarts"] == 2 and len(jobs) == 3
        assert plan["carbon_g"] < plan["agnostic_carbon_g"]
        ids = [j["job_id"] for j in jobs]
        wait_until(lambda: all(s in FINISHED for s in states(ids)), "the chain to end")
        assert states(ids) == ["COMPLETED"] * 3
    finally:
        subprocess.run(["scancel", *(str(j["job_id"]) for j in jobs)], env=slurm_env, timeout=30)

    # the work was done exactly once, resumed from the checkpoints
    assert (folder / "output.txt").read_text().splitlines() == [f"unit {i}" for i in range(6)]
    assert (folder / "done").exists()

    report = json.loads(run_cli("slurm", "report", str(result["plan_id"]), "--db", str(db), "--json",
                                env=slurm_env, check=True).stdout)
    assert len(report["segments"]) == len(plan["segments"])
    ready = submitted_at
    for row in report["segments"]:
        # each segment started in its planned window, give or take the controller's scheduling passes: not before
        # its planned start, and at most GRANULARITY_S after it (or after the submission, or after the previous
        # segment really ended, when those came later)
        assert row["start_s"] >= row["planned_start_s"] - 1, row
        assert row["start_s"] <= max(row["planned_start_s"], ready) + GRANULARITY_S, row
        # no energy plugin on this cluster: each segment's energy is what `wattwise measure` recorded for it (≈ here,
        # no power sensor), beside the job model's prediction for the time it ran
        assert row["energy_source"] == f"run {row['measured_run_id']}" and row["estimated"] is True
        assert row["energy_j"] > 0 and row["model_energy_j"] > 0
        ready = row["end_s"]
    # the restart cost (the startup, 60 W × 4 s in the model) was planned and paid at each resume; paid, it is the
    # startup's share of what was measured for the segment
    assert [row["planned_restart_energy_j"] for row in report["segments"]] == pytest.approx([0.0, 240.0, 240.0])
    for row in report["segments"][1:]:
        assert row["restart_energy_j"] == pytest.approx(240.0 * row["energy_j"] / row["model_energy_j"], rel=1e-9)
    assert report["restarts_paid"] == 2
    assert report["actual"]["carbon_g"] is not None and report["actual"]["segments_finished"] == 3

    status = json.loads(run_cli("slurm", "status", str(result["plan_id"]), "--db", str(db), "--json",
                                env=slurm_env, check=True).stdout)
    assert status["status"] == "done"

    # close the loop: the segments' measurements refit the model the plan was made with
    refit = json.loads(run_cli("model", "fit", "--plan", str(result["plan_id"]), "--model", str(write_model()),
                               "--db", str(db), "--json", env=slurm_env, check=True).stdout)
    phases = {p["name"]: p for p in refit["report"]["phases"]}
    assert phases["startup"]["seen"] == 3  # the startup was paid in every segment
    assert all(phases[f"unit {i}"]["seen"] == 1 for i in range(6))  # each unit ran once
    for phase in phases.values():  # the job's phases last 4 s of running time each
        assert phase["duration_s"] == pytest.approx(SLOT_S, abs=1.0), phase
        assert phase["power_w"] > 0


@pytest.mark.slurm
def test_bad_input_is_refused_before_anything_is_submitted(
    run_cli, slurm_env, tmp_path, write_model, write_trace
) -> None:
    now = int(time.time())
    trace = write_trace(now, PATTERN)
    db = tmp_path / "bad.db"
    common = ["--slot", f"{SLOT_S}s", "--carbon", str(trace), "--now", str(now), "--db", str(db)]
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=slurm_env,
                            timeout=30).stdout.split()

    no_checkpoints = run_cli("slurm", "submit", "--model", str(write_model(checkpoints=False)),
                             "--policy", "suspend-resume", "--checkpoint-only", "--wait-hours", "0.01", *common,
                             "--", str(EXAMPLE / "job.sbatch"), env=slurm_env)
    assert no_checkpoints.returncode == 2 and "no checkpoint phase" in no_checkpoints.stderr

    too_long = run_cli("slurm", "submit", "--model", str(write_model()), "--policy", "suspend-resume",
                       "--wait-hours", "1", *common, "--", str(EXAMPLE / "job.sbatch"), env=slurm_env)
    assert too_long.returncode == 2 and "use a forecast that covers the window" in too_long.stderr

    script = tmp_path / "sets-time.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH -t 10\nexec true\n")
    sets_time = run_cli("slurm", "submit", "--model", str(write_model()), "--policy", "oracle",
                        "--wait-hours", "0.01", *common, "--", str(script), env=slurm_env)
    assert sets_time.returncode == 2 and "sets-time.sbatch:3: the script sets --time" in sets_time.stderr

    begin = run_cli("slurm", "submit", "--model", str(write_model()), "--policy", "oracle",
                    "--wait-hours", "0.01", *common, "--", "--begin=now", str(EXAMPLE / "job.sbatch"), env=slurm_env)
    assert begin.returncode == 2 and "do not pass --begin" in begin.stderr

    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=slurm_env,
                           timeout=30).stdout.split()
    assert set(after) <= set(before)  # nothing was submitted
