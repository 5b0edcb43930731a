"""A real Prometheus (Debian `prometheus`) scrapes a real `wattwise exporter` on loopback; the aggregation
API pulls from it into a real database, and the PromQL guard fronts it.

The exporter reads the Slurm v2 fixture tree (units of four users) with the BMC reading from the ipmitool
output fixture, so that attributed power is steady and energy grows with every scrape.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.monitor.conftest import FIXTURES, IPMI_FIXTURE, check_metrics, free_port, unit_values

from wattwise.monitor.access import AccessConfig, token_hash
from wattwise.monitor.aggregate import Aggregator, PromClient
from wattwise.monitor.api import create_app
from wattwise.monitor.models import MonitorUnit, MonitorUserDay
from wattwise.monitor.proxy import create_proxy
from wattwise.store import Store

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

ASSETS = Path(__file__).resolve().parents[2] / "src" / "wattwise" / "monitor" / "assets"
ACCESS = {
    "admins": ["ops"],
    "trusted_header": "X-Grafana-User",
    "tokens": {"dave": token_hash("dave-token"), "ops": token_hash("ops-token")},
    "projects": {"physics": ["dave"], "web": ["frank"]},
}


def _wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not answer at {url} within {timeout_s} s")


@dataclass
class Stack:
    exporter_url: str
    prometheus_url: str
    root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Debian prometheus package is not installed (scripts/test-packages.txt)")
    base = tmp_path_factory.mktemp("stack")
    root = base / "tree"
    shutil.copytree(FIXTURES / "slurm-v2" / "before", root)
    # one GPU, used by job 77's task (pid 7001), read through a stand-in nvidia-smi printing the tool's CSV
    (root / "proc" / "7001" / "cgroup").write_text("0::/system.slice/slurmstepd.scope/job_77/step_0/user/task_0\n")
    nvidia_smi = base / "nvidia-smi"
    nvidia_smi.write_text(
        "#!/bin/sh\ncase \"$1\" in\n"
        "  --query-gpu=*) printf 'index, uuid, power.draw [W]\\n0, GPU-5f7c2e3a-91d4-4c1b-8a9e-0123456789ab, 61.5 W\\n';;\n"
        "  --query-compute-apps=*) printf 'pid, gpu_uuid\\n7001, GPU-5f7c2e3a-91d4-4c1b-8a9e-0123456789ab\\n';;\n"
        "  *) exit 2;;\nesac\n")
    nvidia_smi.chmod(0o755)
    exporter_port, prometheus_port = free_port(), free_port()
    exe = Path(sys.executable).parent / "wattwise"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "wattwise"]
    exporter = subprocess.Popen(
        [*command, "exporter", "--listen", f"127.0.0.1:{exporter_port}", "--mountinfo", str(root / "mountinfo"),
         "--cgroup-root", str(root / "cgroup"), "--proc-root", str(root / "proc"), "--powercap-root",
         str(root / "powercap"), "--hostname", "node01", "--passwd", str(root / "passwd"), "--projects",
         str(root / "projects.yml"), "--ipmi", f"cat {IPMI_FIXTURE}", "--grid", "static:FR", "--pue", "1.2",
         "--gpu-source", f"nvidia-smi:{nvidia_smi}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    config = base / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ASSETS / 'recording-rules.yml'}\n  - {ASSETS / 'ceems-recording-rules.yml'}\n"
        "scrape_configs:\n  - job_name: wattwise\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n")
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_http(f"http://127.0.0.1:{exporter_port}/metrics", 30, exporter, "wattwise exporter")
        _wait_http(f"http://127.0.0.1:{prometheus_port}/-/ready", 60, prometheus, "prometheus")
        url = f"http://127.0.0.1:{prometheus_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for a few scrapes and a recording rule evaluation
            body = httpx.get(f"{url}/api/v1/query", params={
                "query": "count_over_time(wattwise_unit_energy_joules_total{unit=\"77\"}[1m])"}).json()
            rules = httpx.get(f"{url}/api/v1/query", params={"query": "user:wattwise_unit_power_watts:sum"}).json()
            if body["data"]["result"] and float(body["data"]["result"][0]["value"][1]) >= 4 \
                    and rules["data"]["result"]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus did not collect 4 scrapes of the exporter within 60 s")
        yield Stack(f"http://127.0.0.1:{exporter_port}", url, root)
    finally:
        for process in (prometheus, exporter):
            process.terminate()
        for process in (prometheus, exporter):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_scraped_exposition_passes_promtool(stack: Stack) -> None:
    text = httpx.get(f"{stack.exporter_url}/metrics").text
    check_metrics(text)
    up = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": "up{job=\"wattwise\"}"}).json()
    assert up["data"]["result"][0]["value"][1] == "1"


def test_aggregation_from_prometheus_and_api(stack: Stack, db_url: str) -> None:
    store = Store(db_url)
    aggregator = Aggregator(store, PromClient(stack.prometheus_url), step_s=1.0, lookback_s=300.0)
    first = aggregator.run_once()
    assert first["units"] == 4 and first["energy_j"] > 0
    with store.session() as session:
        units = {f"{u.manager}/{u.unit_id}": u for u in session.query(MonitorUnit).all()}
        first_energy = {k: u.energy_j for k, u in units.items()}
    assert sorted(units) == ["docker/3f4e8a1c2b7d", "podman/a1b2c3d4e5f6", "slurm/77", "systemd/nginx.service"]
    job = units["slurm/77"]
    assert (job.user, job.project, job.hostname) == ("dave", "physics", "node01")
    assert job.start_at is not None and job.end_at is not None and job.end_at >= job.start_at
    assert job.memory_samples >= 3 and job.memory_sum_b / job.memory_samples == 8 * 2**30

    time.sleep(2.5)
    now = float(int(time.time()))
    aggregator.run_once(now)
    exporter_now = unit_values(httpx.get(f"{stack.exporter_url}/metrics").text, "wattwise_unit_energy_joules_total")
    promql = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={
        "query": "last_over_time(wattwise_unit_energy_joules_total[1m])", "time": now}).json()["data"]["result"]
    last_scraped = {f"{r['metric']['manager']}/{r['metric']['unit']}": float(r["value"][1]) for r in promql}
    with store.session() as session:
        units = {f"{u.manager}/{u.unit_id}": u for u in session.query(MonitorUnit).all()}
        days = {d.user: d for d in session.query(MonitorUserDay).all()}
        for key, unit in units.items():
            # the increments of both pulls add up to the counter as Prometheus last scraped it
            assert unit.energy_j > first_energy[key]
            assert unit.energy_j <= exporter_now[key] + 1e-6
            assert unit.energy_j == pytest.approx(last_scraped[key], rel=1e-9)
        assert days["dave"].energy_j == pytest.approx(units["slurm/77"].energy_j)
        assert days["dave"].units == 1
        assert set(days) == {"dave", "erin", "root", "www-data"}

    client = TestClient(create_app(store, AccessConfig.from_dict(ACCESS)))
    mine = client.get("/api/v1/units", headers={"Authorization": "Bearer dave-token"}).json()
    assert [u["unit"] for u in mine["units"]] == ["77"]
    assert mine["units"][0]["mean_cpus"] is not None
    top = client.get("/api/v1/admin/top", headers={"Authorization": "Bearer ops-token"}).json()["top"]
    assert [t["user"] for t in top][:1] == ["dave"]  # the biggest job
    assert client.get("/api/v1/admin/top", headers={"Authorization": "Bearer dave-token"}).status_code == 403
    store.close()


def test_promql_guard_in_front_of_prometheus(stack: Stack, sqlite_url: str) -> None:
    store = Store(sqlite_url)
    Aggregator(store, PromClient(stack.prometheus_url), step_s=1.0, lookback_s=300.0).run_once()
    with TestClient(create_proxy(stack.prometheus_url, AccessConfig.from_dict(ACCESS), store)) as guard:
        _check_guard(guard, stack)
    store.close()


def _check_guard(guard: TestClient, stack: Stack) -> None:
    dave = {"X-Grafana-User": "dave"}

    def query(expression: str, headers: dict[str, str], method: str = "GET") -> httpx.Response:
        if method == "POST":
            return guard.post("/api/v1/query", data={"query": expression}, headers=headers)
        return guard.get("/api/v1/query", params={"query": expression}, headers=headers)

    own = query('sum by (unit) (wattwise_unit_power_watts{user="dave"})', dave)
    assert own.status_code == 200, own.text
    assert [r["metric"]["unit"] for r in own.json()["data"]["result"]] == ["77"]
    assert query('wattwise_unit_energy_joules_total{project="physics"}', dave, "POST").status_code == 200
    assert query('rate(wattwise_unit_cpu_seconds_total{hostname="node01", manager="slurm", unit="77"}[1m])',
                 dave).status_code == 200
    assert query('rate(wattwise_unit_cpu_seconds_total{unit="77"}[1m])', dave).status_code == 403  # id alone
    recorded = query('user:wattwise_unit_power_watts:sum{user="dave"}', dave)
    assert recorded.status_code == 200 and recorded.json()["data"]["result"]
    for forbidden in ('wattwise_unit_power_watts{user="erin"}', "wattwise_unit_power_watts",
                      'wattwise_unit_power_watts{user!="dave"}', 'wattwise_unit_power_watts{user=~"dave|erin"}',
                      'wattwise_unit_power_watts{user="dave"} or wattwise_unit_power_watts{project="web"}',
                      'wattwise_unit_power_watts{unit="3f4e8a1c2b7d"}', 'wattwise_unit_power_watts{user=~".*"}',
                      'wattwise_node_power_watts', 'up'):
        response = query(forbidden, dave)
        assert response.status_code == 403, forbidden
        assert response.json()["errorType"] == "forbidden"
    # the body Prometheus would read is the body the guard checks, whatever the Content-Type's spelling
    own_url = "/api/v1/query?query=" + quote('wattwise_unit_power_watts{user="dave"}')
    sneaky = guard.post(own_url, content=b"query=up", headers={**dave, "Content-Type": "Application/X-WWW-Form-Urlencoded"})
    assert sneaky.status_code == 403, sneaky.text
    odd = guard.post(own_url, content=b"query=up", headers={**dave, "Content-Type": "text/plain"})
    assert odd.status_code == 400, odd.text
    ranged = guard.get("/api/v1/query_range", headers=dave, params={
        "query": 'wattwise_unit_power_watts{user="erin"}', "start": time.time() - 60, "end": time.time(), "step": 5})
    assert ranged.status_code == 403
    assert guard.get("/api/v1/query", params={"query": "up"}).status_code == 401
    assert query("up", {"X-Grafana-User": "ops"}).status_code == 200  # admin
    assert guard.get("/api/v1/series", params={"match[]": '{user="dave"}'}, headers=dave).status_code == 200
    assert guard.get("/api/v1/series", params={"match[]": '{user="erin"}'}, headers=dave).status_code == 403
    assert guard.get("/api/v1/label/user/values", headers=dave).status_code == 403
    values = guard.get("/api/v1/label/user/values", params={"match[]": '{project="physics"}'}, headers=dave)
    assert values.status_code == 200 and values.json()["data"] == ["dave"]
    assert guard.get("/api/v1/status/buildinfo", headers=dave).status_code == 200
    assert guard.get("/api/v1/targets", headers=dave).status_code == 403
    assert guard.get("/api/v1/targets", headers={"X-Grafana-User": "ops"}).status_code == 200
    bad = query('wattwise_unit_power_watts{user="dave"', dave)
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"


GRAFANA_VARIABLES = {"${__user.login}": "dave", "$__range": "1m", "$__rate_interval": "1m", "$__interval": "1s"}


def _panel_queries(name: str) -> list[tuple[str, str]]:
    import json

    dashboard = json.loads((ASSETS / name).read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{name} panel {panel['title']!r}: unknown variable in {expr!r}"
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_panel_has_data(stack: Stack, sqlite_url: str) -> None:
    """Each panel's PromQL, with Grafana's variables filled in, returns series from the real Prometheus: the
    user dashboard through the guard as the logged-in user (so it also passes the guard), the operator one
    as an admin."""
    store = Store(sqlite_url)
    Aggregator(store, PromClient(stack.prometheus_url), step_s=1.0, lookback_s=300.0).run_once()
    user_panels, operator_panels = _panel_queries("dashboard-user.json"), _panel_queries("dashboard-operator.json")
    assert len(user_panels) >= 10 and len(operator_panels) >= 14
    with TestClient(create_proxy(stack.prometheus_url, AccessConfig.from_dict(ACCESS), store)) as guard:
        for panels, user in ((user_panels, "dave"), (operator_panels, "ops")):
            for title, expr in panels:
                response = guard.get("/api/v1/query", params={"query": expr}, headers={"X-Grafana-User": user})
                assert response.status_code == 200, (title, expr, response.text)
                result = response.json()["data"]["result"]
                assert result, f"panel {title!r} has no data: {expr}"
    store.close()


def test_gpu_power_reaches_prometheus(stack: Stack) -> None:
    result = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={
        "query": "wattwise_unit_gpu_power_watts"}).json()["data"]["result"]
    assert [(r["metric"]["unit"], r["metric"]["gpu"], r["metric"]["split"], r["metric"]["user"]) for r in result] == [
        ("77", "gpu0:5f7c2e3a", "exclusive", "dave")]
    assert float(result[0]["value"][1]) == pytest.approx(1.2 * 61.5)  # PUE 1.2


def test_recording_rules_pass_promtool_unit_tests() -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    tests = ASSETS.parents[3] / "tests" / "fixtures" / "monitor" / "rules"
    for name in sorted(p.name for p in tests.glob("*_test.yml")):
        done = subprocess.run([tool, "test", "rules", name], cwd=tests, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool test rules {name}:\n{done.stdout}\n{done.stderr}"


def test_ceems_named_series_are_recorded(stack: Stack) -> None:
    """The CEEMS names (assets/ceems-recording-rules.yml) exist in the real Prometheus for job 77, host power
    and GPU power adding up to wattwise's unit power."""
    def query(expression: str) -> dict[str, float]:
        deadline = time.monotonic() + 30  # hang guard: rules are evaluated every second
        while True:
            result = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": expression}).json()
            if result["data"]["result"] or time.monotonic() > deadline:
                return {r["metric"].get("uuid", ""): float(r["value"][1]) for r in result["data"]["result"]}
            time.sleep(0.5)

    host = query('uuid:ceems_host_power_watts:pue{uuid="77"}')
    gpu = query('uuid:ceems_gpu_power_watts:pue{uuid="77"}')
    total = query('label_replace(wattwise_unit_power_watts{unit="77"}, "uuid", "$1", "unit", "(.*)")')
    assert gpu["77"] == pytest.approx(1.2 * 61.5)
    assert host["77"] + gpu["77"] == pytest.approx(total["77"])
    assert query('uuid:ceems_host_emissions_g_s:pue{uuid="77"}')["77"] > 0
    assert set(query("ceems_compute_unit_cpu_user_seconds_total")) == {"77", "3f4e8a1c2b7d", "a1b2c3d4e5f6",
                                                                      "nginx.service"}
