"""The cluster-wide API views on real SQLite and PostgreSQL: clusters, global statistics and the ownership check,
with a second cluster whose node and unit ids collide with the first one's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from tests.monitor.test_api import ACCESS, TODAY, populate

from wattwise.monitor.access import AccessConfig
from wattwise.monitor.api import create_app
from wattwise.monitor.models import MonitorUnit, MonitorUnitDay
from wattwise.store import Store


@pytest.fixture
def api(db_url: str):
    store = Store(db_url)
    populate(store)  # cluster "" : alice 100, 101; bob 200, 201; carol abcdef123456
    with store.session() as session:
        # cluster "hpc2": the same node name and job id 100 as alice's, run by carol
        start = datetime(TODAY.year, TODAY.month, TODAY.day, 9, tzinfo=UTC)
        row = MonitorUnit(cluster="hpc2", hostname="n1", manager="slurm", unit_id="100", user="carol", project="bio",
                          start_at=start, end_at=start + timedelta(hours=1), energy_j=500.0, emissions_g=0.25,
                          cpu_s=5.0, memory_sum_b=0.0, memory_samples=0)
        session.add(row)
        session.flush()
        session.add(MonitorUnitDay(unit_pk=row.id, day=TODAY, energy_j=500.0, emissions_g=0.25, cpu_s=5.0))
    client = TestClient(create_app(store, AccessConfig.from_dict(ACCESS), today=lambda: TODAY))
    yield client
    store.close()


def ops() -> dict[str, str]:
    return {"X-Grafana-User": "ops"}


def test_clusters(api) -> None:
    body = api.get("/api/v1/admin/clusters", headers=ops()).json()
    by_name = {c["cluster"]: c for c in body["clusters"]}
    assert sorted(by_name) == ["", "hpc2"]
    assert (by_name[""]["units"], by_name[""]["users"], by_name[""]["hosts"]) == (5, 3, 3)
    assert by_name[""]["energy_j"] == 3600 + 7200 + 1000 + 5000 + 90000
    assert (by_name["hpc2"]["units"], by_name["hpc2"]["energy_j"]) == (1, 500.0)
    assert api.get("/api/v1/admin/clusters", headers={"X-Grafana-User": "alice"}).status_code == 403


def test_global_stats_over_a_window(api) -> None:
    today = api.get("/api/v1/admin/stats", headers=ops(), params={"start": TODAY.isoformat(),
                                                                  "end": TODAY.isoformat()}).json()
    # today: alice 100 (3600 J), bob 200 (1000), bob 201 (5000) and carol's hpc2 job 100 (500)
    assert today["energy_j"] == 3600 + 1000 + 5000 + 500
    assert (today["units"], today["users"]) == (4, 3)
    per = {c["cluster"]: c for c in today["clusters"]}
    assert per["hpc2"]["energy_j"] == 500 and per[""]["energy_j"] == 9600
    month = api.get("/api/v1/admin/stats", headers=ops()).json()
    assert month["energy_j"] == 3600 + 7200 + 1000 + 5000 + 90000 + 500


def test_verify_ownership(api) -> None:
    alice = {"X-Grafana-User": "alice"}
    assert api.get("/api/v1/units/verify", params={"unit": ["101"]}, headers=alice).json()["verified"] is True
    # 200 is bob's but in alice's project astro; 201 is bob's in project secret
    assert api.get("/api/v1/units/verify", params={"unit": ["101", "200"]}, headers=alice).status_code == 200
    refused = api.get("/api/v1/units/verify", params={"unit": ["101", "201"]}, headers=alice)
    assert refused.status_code == 403 and refused.json()["units"] == {"101": True, "201": False}
    # job 100 exists in both clusters: alice owns only one of them, so the id alone does not verify ...
    assert api.get("/api/v1/units/verify", params={"unit": ["100"]}, headers=alice).status_code == 403
    # ... but it does within her cluster
    assert api.get("/api/v1/units/verify", params={"unit": ["100"], "cluster": ""}, headers=alice).status_code == 200
    assert api.get("/api/v1/units/verify", params={"unit": ["100"], "cluster": "hpc2"},
                   headers={"X-Grafana-User": "carol"}).status_code == 200
    # an unknown id is not owned
    assert api.get("/api/v1/units/verify", params={"unit": ["999"]}, headers=alice).status_code == 403
    assert api.get("/api/v1/units/verify", params={"unit": ["999"]}, headers=ops()).status_code == 403
    assert api.get("/api/v1/units/verify", params={"unit": ["201"]}, headers=ops()).status_code == 200
    assert api.get("/api/v1/units/verify", headers=alice).status_code == 422
    assert api.get("/api/v1/units/verify", params={"unit": ["101"]}).status_code == 401
    # the unit list shows the cluster
    units = api.get("/api/v1/units", headers={"X-Grafana-User": "carol"}).json()["units"]
    assert sorted((u["cluster"], u["unit"]) for u in units) == [("", "abcdef123456"), ("hpc2", "100")]


def test_prometheus_sources_name_clusters() -> None:
    from wattwise.errors import ConfigError
    from wattwise.monitor.aggregate import parse_sources

    assert parse_sources(["http://a:9090"]) == [("", "http://a:9090")]
    assert parse_sources(["hpc1=http://a:9090", "hpc2=http://b:9090"]) == [("hpc1", "http://a:9090"),
                                                                          ("hpc2", "http://b:9090")]
    assert parse_sources(["http://a:9090/?x=1"]) == [("", "http://a:9090/?x=1")]  # an = inside the URL
    with pytest.raises(ConfigError, match="expected URL or CLUSTER=URL"):
        parse_sources(["hpc1=a:9090"])
    with pytest.raises(ConfigError, match="cluster 'a' is given twice"):
        parse_sources(["a=http://x:1", "a=http://y:1"])
