"""`wattwise cluster …` commands and the /api/cluster routes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wattwise.cluster.queue import ClusterQueue
from wattwise.errors import WattwiseError
from wattwise.store import Store

from .conftest import invoke


def test_cluster_commands_in_a_real_process(run_cli: Callable[..., Any], sqlite_url: str, tmp_path: Path) -> None:
    db = ["--db", sqlite_url]
    run_cli("cluster", "machines", "--add", "bench-1", "--description", "NUC i5", "--base-temperature", "38",
            *db, check=True)
    result = run_cli("cluster", "submit", "--machine", "bench-1", "--name", "sleepy", "--var", "SPEED=fast",
                     *db, "--", "sleep", "1", check=True)
    assert "queued job 1 'sleepy' for bench-1 (state WAITING)" in result.stdout
    result = run_cli("cluster", "submit", "--machine", "nope", *db, "--", "true")
    assert result.returncode == 2
    assert "no machine 'nope' in the cluster (known: bench-1)" in result.stderr and "Traceback" not in result.stderr
    jobs = json.loads(run_cli("cluster", "jobs", "--json", *db, check=True).stdout)
    assert [(j["id"], j["name"], j["command"], j["variables"], j["state"]) for j in jobs] == [
        (1, "sleepy", ["sleep", "1"], {"SPEED": "fast"}, "WAITING")
    ]


def test_submit_jobs_cancel_machines_status(sqlite_url: str, tmp_path: Path) -> None:
    db = ["--db", sqlite_url]
    assert invoke("cluster", "machines", "--add", "bench-1", "--mac", "3c:ec:ef:01:02:03", *db).exit_code == 0
    scenario = tmp_path / "app"
    scenario.mkdir()
    (scenario / "usage_scenario.yml").write_text("name: app\n")
    result = invoke("cluster", "submit", "--folder", str(scenario), "--machine", "bench-1", "--json", *db)
    folder_job = json.loads(result.stdout)
    assert (folder_job["source_type"], folder_job["source"], folder_job["filename"]) == (
        "folder", str(scenario), "usage_scenario.yml")
    result = invoke("cluster", "submit", "--folder", str(scenario), "-f", "other.yml", *db)
    assert "no scenario file other.yml in" in str(result.exception)
    result = invoke("cluster", "submit", "--folder", "/srv/not-here", "--name", "remote", *db)
    assert "does not exist here; it must exist on the machine" in result.stdout
    result = invoke("cluster", "submit", "--git", "https://example.org/app.git", "--branch", "v2", "--email",
                    "me@example.org", *db)
    assert "queued job 3 'https://example.org/app.git' for any machine" in result.stdout
    result = invoke("cluster", "submit", "--var", "NOVALUE", *db, "--", "true")
    assert "--var 'NOVALUE': use NAME=VALUE" in str(result.exception)
    result = invoke("cluster", "jobs", "--state", "waiting", *db)
    assert result.exit_code == 0 and "https://example.org/app.git" in result.stdout
    assert "unknown job state 'DONE'" in str(invoke("cluster", "jobs", "--state", "DONE", *db).exception)
    assert "job 1: CANCELLED" in invoke("cluster", "cancel", "1", *db).stdout
    assert "job 1 is already CANCELLED" in str(invoke("cluster", "cancel", "1", *db).exception)
    result = invoke("cluster", "machines", "--pause", "bench-1", "--reason", "BIOS update", *db)
    assert "machine bench-1 takes no jobs now (BIOS update)" in result.stdout
    machines = json.loads(invoke("cluster", "machines", "--json", *db).stdout)
    assert machines[0]["accepts_jobs"] is False and machines[0]["paused_reason"] == "BIOS update"
    assert machines[0]["mac_address"] == "3c:ec:ef:01:02:03" and machines[0]["online"] is False
    assert "takes jobs again" in invoke("cluster", "machines", "--resume", "bench-1", *db).stdout
    status = json.loads(invoke("cluster", "status", "--json", *db).stdout)
    assert status["jobs"] == {"WAITING": 2, "RUNNING": 0, "FINISHED": 0, "FAILED": 0, "CANCELLED": 1}
    assert status["waiting"] == {"any": 2}
    assert [h["status"] for h in status["history"]] == ["resumed", "paused"]
    table = invoke("cluster", "status", *db).stdout
    assert "bench-1" in table and "2 job(s) wait for any machine" in table and "BIOS update" in table


@pytest.fixture
def api(sqlite_url: str) -> Any:
    from fastapi.testclient import TestClient

    from wattwise.web.app import create_app
    from wattwise.web.deps import create_token

    store = Store(sqlite_url)
    app = create_app(store=store)
    token = create_token(store, "ci", "write")
    reader = create_token(store, "reader", "read")
    client = TestClient(app)
    client.write = {"Authorization": f"Bearer {token}"}  # type: ignore[attr-defined]
    client.read = {"Authorization": f"Bearer {reader}"}  # type: ignore[attr-defined]
    client.queue = ClusterQueue(store)  # type: ignore[attr-defined]
    return client


def test_api_routes(api: Any) -> None:
    queue: ClusterQueue = api.queue
    queue.machines.register("bench-1", mac_address="aa:bb:cc:dd:ee:01")
    queue.machines.register("bench-2")
    body = {"name": "app", "git": "https://example.org/app.git", "machine": "bench-1", "variables": {"N": "3"}}
    assert api.post("/api/cluster/jobs", json=body).status_code == 401
    assert api.post("/api/cluster/jobs", json=body, headers=api.read).status_code == 403
    response = api.post("/api/cluster/jobs", json=body, headers=api.write)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["state"], job["machine_id"], job["variables"]) == ("WAITING", "bench-1", {"N": "3"})
    response = api.post("/api/cluster/jobs", json={"command": ["true"], "machine": "bench-9"}, headers=api.write)
    assert response.status_code == 422 and "no machine 'bench-9'" in response.json()["detail"]
    api.post("/api/cluster/jobs", json={"command": ["true"]}, headers=api.write)
    assert [j["id"] for j in api.get("/api/cluster/jobs").json()] == [2, 1]
    assert api.get("/api/cluster/jobs", params={"state": "NOPE"}).status_code == 422
    assert api.get(f"/api/cluster/jobs/{job['id']}").json()["name"] == "app"
    assert api.get("/api/cluster/jobs/99").status_code == 404
    waiting = api.get("/api/cluster/waiting").json()
    assert waiting["any_machine"] == 1
    assert {m["id"]: (m["waiting"], m["mac_address"]) for m in waiting["machines"]} == {
        "bench-1": (1, "aa:bb:cc:dd:ee:01"), "bench-2": (0, None)}
    mine = api.get("/api/cluster/machines/bench-1/waiting").json()
    assert mine["waiting"] == 2 and [j["id"] for j in mine["jobs"]] == [1, 2]  # its own and any-machine jobs
    assert api.get("/api/cluster/machines/bench-7/waiting").status_code == 404
    assert api.post("/api/cluster/jobs/1/cancel").status_code == 401
    response = api.post("/api/cluster/jobs/1/cancel", headers=api.write)
    assert response.json()["result"] == "CANCELLED"
    assert api.post("/api/cluster/jobs/1/cancel", headers=api.write).status_code == 409
    machines = api.get("/api/cluster/machines").json()
    assert [m["id"] for m in machines] == ["bench-1", "bench-2"] and machines[0]["waiting_jobs"] == 0
    assert api.get("/api/cluster/machines/bench-2").json()["accepts_jobs"] is True
    status = api.get("/api/cluster/status").json()
    assert status["jobs"]["CANCELLED"] == 1 and status["waiting"] == {"any": 1}


def test_user_errors_are_wattwise_errors(sqlite_url: str) -> None:
    result = invoke("cluster", "machines", "--add", "a", "--pause", "a", "--db", sqlite_url)
    assert isinstance(result.exception, WattwiseError)
    result = invoke("cluster", "wake", "zz:zz", "--db", sqlite_url)
    assert "neither a MAC address nor a machine id" in str(result.exception)
    result = invoke("cluster", "wake", "aa:bb:cc:dd:ee:ff", "--port", "70000")
    assert "--port must be 1 to 65535" in str(result.exception)
