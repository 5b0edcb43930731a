"""The JSON API on real databases, through FastAPI's test client (and one real uvicorn server)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from wattwise.analysis.synthetic import T0, add_series, scenario_run, simple_run
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store
from wattwise.web.app import create_app
from wattwise.web.deps import create_token
from wattwise.web.models import ResultCache, SeriesCache
from wattwise.web.tokens import list_tokens, revoke_token


@pytest.fixture
def store(db_url: str) -> Store:
    return Store(db_url)


@pytest.fixture
def client(store: Store) -> TestClient:
    return TestClient(create_app(store=store))


def test_runs_list_filters_and_pagination(store: Store, client: TestClient) -> None:
    ids = [simple_run(store, 100 + i, name=f"job-{i % 2}") for i in range(5)]
    store.update_run(ids[0], status="failed")
    page = client.get("/api/runs", params={"limit": 2}).json()
    assert page["total"] == 5 and [r["id"] for r in page["items"]] == ids[::-1][:2]
    page = client.get("/api/runs", params={"limit": 2, "offset": 4}).json()
    assert [r["id"] for r in page["items"]] == [ids[0]]
    assert client.get("/api/runs", params={"status": "failed"}).json()["total"] == 1
    assert client.get("/api/runs", params={"name": "job-1"}).json()["total"] == 2
    assert client.get("/api/runs", params={"name": "%"}).json()["total"] == 0  # no LIKE injection
    assert client.get("/api/runs", params={"status": "nope"}).status_code == 422
    assert client.get("/api/runs", params={"limit": 0}).status_code == 422


def test_run_detail_phases_and_figures(store: Store, client: TestClient) -> None:
    run_id = scenario_run(store)
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["runtime_energy_j"] == pytest.approx(1800)
    assert {p["name"] for p in detail["phases"]} >= {"[BASELINE]", "[RUNTIME]", "load", "query", "setup"}
    assert detail["summary"]["phases"][1]["rebuilt_from"] == ["load", "query"]
    # the list now shows the figures from the cached summary
    item = client.get("/api/runs").json()["items"][0]
    assert item["runtime_energy_j"] == pytest.approx(1800)
    stats = client.get(f"/api/runs/{run_id}/phases").json()
    runtime = next(p for p in stats["phases"] if p["name"] == "[RUNTIME]")
    power = next(m for m in runtime["metrics"] if m["name"] == "ipmi_power_w")
    assert (power["mean"], power["max"], power["min"]) == (100, 100, 100)
    assert client.get("/api/runs/999").status_code == 404
    assert client.get("/api/runs/0").status_code == 422


def test_containers_sci_compare_badge(store: Store, client: TestClient) -> None:
    run_id = scenario_run(store, sci={"TE": 1000000, "EL": 4, "RS": 1, "R_d": "request"})
    phases = client.get(f"/api/runs/{run_id}/containers").json()["phases"]
    runtime = next(p for p in phases if p["phase"] == "[RUNTIME]")
    assert [c["name"] for c in runtime["containers"]] == ["web", "db"]
    assert runtime["containers"][0]["above_baseline_energy_j"] == pytest.approx(3 / 4.5 * 900)
    assert runtime["containers"][0]["energy_surplus_j"] == runtime["containers"][0]["above_baseline_energy_j"]
    sci = client.get(f"/api/runs/{run_id}/sci").json()
    assert sci["r"] == 40 and sci["r_d"] == "request" and sci["sci_g_per_unit"] > 0
    assert client.get(f"/api/runs/{run_id}/sci", params={"r": 2}).json()["r"] == 2
    assert client.get(f"/api/runs/{run_id}/sci", params={"phase": "nope"}).status_code == 400
    a = [simple_run(store, e) for e in (100, 101, 99)]
    b = [simple_run(store, e) for e in (150, 151, 149)]
    result = client.get("/api/compare", params={"runs": a, "vs": b, "metric": "energy_j"}).json()
    (row,) = result["rows"]
    assert row["test"]["significant"] is True and row["a"]["n"] == 3
    assert client.get("/api/compare", params={"runs": [12345]}).status_code == 404
    svg = client.get(f"/api/runs/{run_id}/badge.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "energy" in svg.text and "1.8 kJ" in svg.text and svg.text.startswith("<svg")
    carbon = client.get(f"/api/runs/{run_id}/badge.svg", params={"figure": "carbon", "label": "<x>"}).text
    assert "&lt;x&gt;" in carbon and "<x>" not in carbon


def test_measurements_are_downsampled_with_bounds(store: Store, client: TestClient) -> None:
    run_id = store.create_run("many", settings={"interval_s": 0.001})
    t = np.arange(50_000) * 0.001
    values = np.sin(t) * 10 + 20
    gauge = add_series(store, run_id, MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine"), t, values)
    counter = add_series(store, run_id, MetricSpec("rapl_energy_j", "J", Kind.COUNTER, "package-0"), t, t * 5.0)
    store.add_phase(run_id, "[RUNTIME]", T0, T0 + 50_000_000)
    store.finish_run(run_id, "finished")
    data = client.get(f"/api/runs/{run_id}/measurements", params={"points": 200}).json()
    by_id = {s["metric_id"]: s for s in data["series"]}
    g = by_id[gauge]
    assert g["downsampled"] and g["points"] <= 200 and g["samples"] == 50_000
    assert min(g["min"]) == pytest.approx(values.min()) and max(g["max"]) == pytest.approx(values.max())
    assert all(lo <= m <= hi for lo, m, hi in zip(g["min"], g["mean"], g["max"], strict=True))
    c = by_id[counter]
    assert c["unit"] == "W" and np.allclose(c["mean"], 5.0)  # a counter is shown as its rate (J/s = W)
    # zoomed into one second: the raw samples of that window, not cached buckets
    zoom = client.get(f"/api/runs/{run_id}/measurements",
                      params={"metric_id": gauge, "start_us": T0 + 10_000_000, "end_us": T0 + 11_000_000,
                              "points": 5000}).json()["series"][0]
    assert not zoom["downsampled"] and zoom["points"] == 1001
    assert client.get(f"/api/runs/{run_id}/measurements", params={"metric_id": 99999}).status_code == 404
    bad = client.get(f"/api/runs/{run_id}/measurements", params={"start_us": 10, "end_us": 5})
    assert bad.status_code == 400
    with store.session() as session:
        assert session.get(SeriesCache, gauge) is not None  # finished run: cached
        assert session.query(ResultCache).count() == 0  # measurements alone compute no analysis


def test_running_runs_are_not_cached_and_see_new_samples(store: Store, client: TestClient) -> None:
    run_id = store.create_run("live")
    spec = MetricSpec("ipmi_power_w", "W", Kind.GAUGE, "machine")
    metric_id = add_series(store, run_id, spec, np.arange(10.0), np.full(10, 5.0))
    first = client.get(f"/api/runs/{run_id}/measurements").json()["series"][0]
    store.add_samples([(metric_id, T0 + 10_000_000 + i, 7.0) for i in range(3)])
    second = client.get(f"/api/runs/{run_id}/measurements").json()["series"][0]
    assert (first["samples"], second["samples"]) == (10, 13)
    with store.session() as session:
        assert session.get(SeriesCache, metric_id) is None


def test_result_cache_follows_phase_changes(store: Store, client: TestClient) -> None:
    run_id = simple_run(store, 100.0)
    before = client.get(f"/api/runs/{run_id}").json()["summary"]["phases"]
    store.add_phase(run_id, "half", T0, T0 + 5_000_000)
    after = client.get(f"/api/runs/{run_id}").json()["summary"]["phases"]
    assert len(before) == 1 and len(after) == 2 and after[1]["energy_j"] == pytest.approx(50)


def test_write_routes_need_a_write_token(store: Store, client: TestClient) -> None:
    run_id = simple_run(store, 100.0)
    url = f"/api/runs/{run_id}/notes"
    assert client.post(url, json={"text": "hello"}).status_code == 401
    assert client.post(url, json={"text": "x"}, headers={"Authorization": "Bearer ww_nope"}).status_code == 401
    reader = create_token(store, "reader", "read")
    assert client.post(url, json={"text": "x"}, headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    writer = create_token(store, "writer")
    auth = {"Authorization": f"Bearer {writer}"}
    created = client.post(url, json={"text": "deploy v2", "t_us": T0 + 1}, headers=auth)
    assert created.status_code == 201 and created.json()["text"] == "deploy v2"
    assert [n["text"] for n in client.get(url).json()] == ["deploy v2"]
    # only the hash is stored; the token's use is recorded
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_hash FROM api_tokens").scalars().all()
    assert writer not in stored and all(len(h) == 64 for h in stored)
    assert next(t for t in list_tokens(store) if t.name == "writer").last_used_at is not None
    revoke_token(store, "writer")
    assert client.post(url, json={"text": "x"}, headers=auth).status_code == 401
    writer2 = create_token(store, "writer")  # a revoked name can be reused
    assert client.delete(f"/api/runs/{run_id}", headers={"Authorization": f"Bearer {writer2}"}).status_code == 204
    assert client.get(f"/api/runs/{run_id}").status_code == 404


def test_read_only_and_private_modes(store: Store) -> None:
    run_id = simple_run(store, 100.0)
    token = create_token(store, "w")
    auth = {"Authorization": f"Bearer {token}"}
    read_only = TestClient(create_app(store=store, read_only=True))
    assert read_only.post(f"/api/runs/{run_id}/notes", json={"text": "x"}, headers=auth).status_code == 403
    private = TestClient(create_app(store=store, read_requires_token=True))
    assert private.get("/api/runs").status_code == 401
    assert private.get("/").status_code == 401
    assert private.get("/api/runs", headers=auth).status_code == 200


def test_cluster_router_is_mounted(sqlite_url: str) -> None:
    app = create_app(sqlite_url)
    index = TestClient(app).get("/api").json()
    assert any(c["path"].startswith("/api/cluster/") for c in index["cluster"])


def test_tokens_cli(run_cli, tmp_path) -> None:
    db = str(tmp_path / "t.db")
    out = run_cli("tokens", "create", "ci", "--db", db, check=True).stdout
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("ww_")
    listed = run_cli("tokens", "list", "--json", "--db", db, check=True).stdout
    assert '"name": "ci"' in listed and secret not in listed
    again = run_cli("tokens", "create", "ci", "--db", db)
    assert again.returncode == 2 and "exists already" in again.stderr
    run_cli("tokens", "revoke", "ci", "--db", db, check=True)
    assert run_cli("tokens", "create", "x", "--scope", "admin", "--db", db).returncode == 2


def test_warmer_fills_the_caches_of_finished_runs(sqlite_url: str) -> None:
    from wattwise.web.warm import Warmer

    store = Store(sqlite_url)
    done = simple_run(store, 100.0)
    running = store.create_run("live")
    warmer = Warmer(store)
    assert warmer.step() == 1 and warmer.step() == 0
    with store.session() as session:
        keys = {(r.run_id, r.key) for r in session.query(ResultCache)}
        assert {(done, "summary"), (done, "stats")} <= keys and all(k[0] != running for k in keys)
        assert session.query(SeriesCache).count() == 1
    with TestClient(create_app(store=store, warm_caches=True)) as client:  # starts and stops the thread
        assert client.get("/api/health").json() == {"status": "ok"}
