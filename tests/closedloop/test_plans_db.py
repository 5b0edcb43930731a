"""Plans stored in both real databases (SQLite by default, PostgreSQL for teams): save, merge Slurm records into
the jobs as the row holds them now, events, re-plans and final statuses."""

from __future__ import annotations

from wattwise.closedloop.plans import add_event, get_plan, merge_records, replace_tail, save_plan, set_status
from wattwise.store import Store


def test_a_plan_round_trips_and_concurrent_changes_are_not_lost(db_url: str) -> None:
    store = Store(db_url)
    jobs = [{"index": i, "job_id": 100 + i, "argv": ["sbatch"]} for i in range(3)]
    plan_id = save_plan(store, name="train", mode="chain", status="submitted", checkpoint_dir="/ck",
                        model={"startup": [], "work": [{"name": "w", "duration_s": 1, "power_w": 1}]},
                        plan={"policy": "suspend-resume"}, jobs=jobs, sbatch_args=["job.sbatch"], events=[])
    stale = [dict(j) for j in get_plan(store, plan_id).jobs]  # a status command read the jobs ...
    # ... meanwhile the agent re-planned: segments 1 and 2 are new jobs
    replace_tail(store, plan_id, {"policy": "suspend-resume", "replanned": True}, 1,
                 [{"index": 1, "job_id": 201, "argv": []}, {"index": 2, "job_id": 202, "argv": []}])
    stale[0]["record"] = {"job_id": 100, "state": "COMPLETED", "start_s": 1.0, "end_s": 2.0, "exit_code": "0:0",
                          "energy_j": None}
    merged = merge_records(store, plan_id, stale)  # ... and writes back only what it learnt
    assert [j["job_id"] for j in merged] == [100, 201, 202]  # the re-plan is kept
    assert merged[0]["record"]["state"] == "COMPLETED"
    add_event(store, plan_id, "replan", 5.0, index=1)
    add_event(store, plan_id, "checked", 6.0, index=1)
    row = get_plan(store, plan_id)
    assert [e["kind"] for e in row.events] == ["replan", "checked"] and row.plan["replanned"] is True
    assert set_status(store, plan_id, "cancelled") == "cancelled"
    assert set_status(store, plan_id, "done") == "cancelled"  # a final status is never set back
