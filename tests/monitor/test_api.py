"""The monitoring REST API on real SQLite and PostgreSQL: a user reads only their own and their projects' data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from wattwise.errors import ConfigError
from wattwise.monitor.access import AccessConfig, token_hash
from wattwise.monitor.api import create_app, period_start
from wattwise.monitor.models import MonitorProjectDay, MonitorUnit, MonitorUnitDay, MonitorUserDay
from wattwise.store import Store

TODAY = date(2024, 5, 15)
ACCESS = {
    "admins": ["ops"],
    "trusted_header": "X-Grafana-User",
    "tokens": {"alice": token_hash("alice-secret"), "carol": token_hash("carol-secret"),
               "ops": token_hash("ops-secret")},
    "projects": {"astro": ["alice", "bob"], "bio": ["carol"]},
}
# (hostname, manager, unit, user, project, energy_j, emissions_g, cpu_s, day offset from TODAY)
UNITS = [
    ("n1", "slurm", "100", "alice", "astro", 3600.0, 1.0, 100.0, 0),
    ("n1", "slurm", "101", "alice", "", 7200.0, 2.0, 50.0, -1),
    ("n2", "slurm", "200", "bob", "astro", 1000.0, 0.5, 10.0, 0),
    ("n2", "slurm", "201", "bob", "secret", 5000.0, 3.0, 40.0, 0),
    ("n3", "docker", "abcdef123456", "carol", "bio", 90000.0, 20.0, 900.0, -2),
]


def populate(store: Store) -> dict[str, int]:
    ids = {}
    with store.session() as session:
        for hostname, manager, unit_id, user, project, energy, emissions, cpu, offset in UNITS:
            day = TODAY + timedelta(days=offset)
            start = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
            row = MonitorUnit(hostname=hostname, manager=manager, unit_id=unit_id, user=user, project=project,
                              start_at=start, end_at=start + timedelta(hours=2), energy_j=energy,
                              emissions_g=emissions, cpu_s=cpu, memory_sum_b=4e9, memory_samples=2)
            session.add(row)
            session.flush()
            ids[unit_id] = row.id
            session.add(MonitorUnitDay(unit_pk=row.id, day=day, energy_j=energy, emissions_g=emissions, cpu_s=cpu))
            user_day = session.get(MonitorUserDay, (day, user))
            if user_day is None:
                user_day = MonitorUserDay(day=day, user=user, energy_j=0.0, emissions_g=0.0, cpu_s=0.0, units=0)
                session.add(user_day)
            user_day.energy_j += energy
            user_day.emissions_g += emissions
            user_day.cpu_s += cpu
            user_day.units += 1
            if project:
                project_day = session.get(MonitorProjectDay, (day, project))
                if project_day is None:
                    project_day = MonitorProjectDay(day=day, project=project, energy_j=0.0, emissions_g=0.0,
                                                    cpu_s=0.0, units=0)
                    session.add(project_day)
                project_day.energy_j += energy
                project_day.emissions_g += emissions
                project_day.cpu_s += cpu
                project_day.units += 1
            session.flush()
    return ids


@pytest.fixture
def api(db_url: str):
    store = Store(db_url)
    ids = populate(store)
    client = TestClient(create_app(store, AccessConfig.from_dict(ACCESS), today=lambda: TODAY))
    yield client, ids
    store.close()


def as_user(name: str) -> dict[str, str]:
    return {"X-Grafana-User": name}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_identity_is_required(api) -> None:
    client, _ = api
    assert client.get("/api/v1/units").status_code == 401
    assert client.get("/api/v1/me", headers=bearer("wrong")).status_code == 401
    # a wrong token does not fall back to the header
    assert client.get("/api/v1/me", headers={**bearer("wrong"), **as_user("alice")}).status_code == 401
    assert client.get("/api/v1/me", headers=bearer("alice-secret")).json() == {
        "user": "alice", "admin": False, "projects": ["astro"], "via": "token"}
    assert client.get("/api/v1/me", headers=as_user("bob")).json()["via"] == "header"
    assert client.get("/healthz").status_code == 200


def test_user_sees_own_and_project_units_only(api) -> None:
    client, ids = api
    units = client.get("/api/v1/units", headers=as_user("alice")).json()
    assert {u["unit"] for u in units["units"]} == {"100", "101", "200"}  # bob's astro job, not his other one
    assert units["total"] == 3
    assert client.get("/api/v1/units", headers=as_user("alice"), params={"user": "carol"}).json()["units"] == []
    assert client.get("/api/v1/units", headers=as_user("alice"), params={"project": "secret"}).json()["total"] == 0
    assert client.get(f"/api/v1/units/{ids['abcdef123456']}", headers=as_user("alice")).status_code == 404
    assert client.get(f"/api/v1/units/{ids['201']}", headers=as_user("alice")).status_code == 404
    assert client.get(f"/api/v1/units/{ids['200']}", headers=as_user("alice")).status_code == 200
    unit = client.get(f"/api/v1/units/{ids['100']}", headers=bearer("alice-secret")).json()
    assert unit["duration_s"] == 7200 and unit["mean_cpus"] == pytest.approx(100 / 7200)
    assert unit["mean_memory_b"] == 2e9 and unit["start"].endswith("Z")
    carol = client.get("/api/v1/units", headers=bearer("carol-secret")).json()
    assert [u["unit"] for u in carol["units"]] == ["abcdef123456"]
    # a user outside every project sees only their own units
    assert {u["unit"] for u in client.get("/api/v1/units", headers=as_user("bob")).json()["units"]} == {
        "100", "200", "201"}
    assert client.get("/api/v1/units", headers=as_user("mallory")).json()["units"] == []
    recent = client.get("/api/v1/units", headers=as_user("alice"), params={"since": "2024-05-15T00:00:00Z"})
    assert {u["unit"] for u in recent.json()["units"]} == {"100", "200"}
    page = client.get("/api/v1/units", headers=as_user("alice"), params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and len(page["units"]) == 1


def test_usage_is_per_user(api) -> None:
    client, _ = api
    history = client.get("/api/v1/usage/history", headers=as_user("alice")).json()
    assert history["user"] == "alice"
    assert [d["day"] for d in history["days"]] == ["2024-05-14", "2024-05-15"]
    assert history["energy_j"] == 10800.0
    current = client.get("/api/v1/usage/current", headers=as_user("alice"), params={"period": "day"}).json()
    assert current["energy_j"] == 3600.0 and current["start"] == "2024-05-15"
    month = client.get("/api/v1/usage/current", headers=as_user("carol")).json()
    assert month["energy_j"] == 90000.0 and month["start"] == "2024-05-01"
    assert client.get("/api/v1/usage/history", headers=as_user("alice"),
                      params={"start": "2024-05-16", "end": "2024-05-01"}).status_code == 422


def test_project_usage_needs_membership(api) -> None:
    client, _ = api
    astro = client.get("/api/v1/projects/astro/usage", headers=as_user("alice"))
    assert astro.status_code == 200 and astro.json()["energy_j"] == 4600.0
    assert client.get("/api/v1/projects/bio/usage", headers=as_user("alice")).status_code == 403
    assert client.get("/api/v1/projects/secret/usage", headers=as_user("alice")).status_code == 403
    assert client.get("/api/v1/projects/bio/usage", headers=as_user("ops")).json()["energy_j"] == 90000.0
    mine = client.get("/api/v1/projects", headers=as_user("alice")).json()["projects"]
    assert [p["project"] for p in mine] == ["astro"]


def test_admin_views(api) -> None:
    client, _ = api
    for path in ("/api/v1/admin/usage", "/api/v1/admin/top"):
        assert client.get(path, headers=as_user("alice")).status_code == 403
    top = client.get("/api/v1/admin/top", headers=bearer("ops-secret")).json()["top"]
    assert [t["user"] for t in top] == ["carol", "alice", "bob"]
    by_cpu = client.get("/api/v1/admin/top", headers=as_user("ops"), params={"by": "cpu", "limit": 2}).json()
    assert [t["user"] for t in by_cpu["top"]] == ["carol", "alice"]
    usage = client.get("/api/v1/admin/usage", headers=as_user("ops"), params={"by": "project"}).json()
    assert {r["project"]: r["energy_j"] for r in usage["rows"]} == {"astro": 4600.0, "bio": 90000.0,
                                                                    "secret": 5000.0}
    everyone = client.get("/api/v1/units", headers=as_user("ops")).json()
    assert everyone["total"] == 5


def test_trusted_proxies_and_members_from_units(db_url: str) -> None:
    store = Store(db_url)
    populate(store)
    config = AccessConfig.from_dict({**ACCESS, "trusted_proxies": ["10.0.0.1"]})
    client = TestClient(create_app(store, config, today=lambda: TODAY))  # TestClient's peer is "testclient"
    assert client.get("/api/v1/me", headers=as_user("alice")).status_code == 401
    assert client.get("/api/v1/me", headers=bearer("alice-secret")).status_code == 200
    derived = AccessConfig.from_dict({"members_from_units": True, "projects": {}, "trusted_header": "X-Grafana-User"})
    client = TestClient(create_app(store, derived, today=lambda: TODAY))
    assert client.get("/api/v1/me", headers=as_user("bob")).json()["projects"] == ["astro", "secret"]
    no_header = AccessConfig.from_dict({"trusted_header": None})
    client = TestClient(create_app(store, no_header, today=lambda: TODAY))
    assert client.get("/api/v1/me", headers=as_user("alice")).status_code == 401
    # an access file that does not name a trusted header trusts none: nobody becomes "ops" by saying so
    tokens_only = AccessConfig.from_dict({"admins": ["ops"], "tokens": ACCESS["tokens"]})
    client = TestClient(create_app(store, tokens_only, today=lambda: TODAY))
    assert client.get("/api/v1/me", headers=as_user("ops")).status_code == 401
    assert client.get("/api/v1/admin/usage", headers=as_user("ops")).status_code == 401
    store.close()


def test_access_file_errors(tmp_path) -> None:
    bad = tmp_path / "access.yml"
    bad.write_text("admins: [ops]\ntokens:\n  alice: not-a-hash\n")
    with pytest.raises(ConfigError, match=r"tokens\.alice must be the SHA-256"):
        AccessConfig.load(bad)
    bad.write_text("admin: [ops]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        AccessConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read access file"):
        AccessConfig.load(tmp_path / "missing.yml")


def test_period_start() -> None:
    assert period_start("week", date(2024, 5, 15)) == date(2024, 5, 13)
    assert period_start("month", date(2024, 5, 15)) == date(2024, 5, 1)
