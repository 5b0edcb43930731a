"""Unit-level pieces of the monitor: path classification, owners and projects, attribution, exposition,
the PromQL selector finder and guard, shipped assets, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.monitor.conftest import FIXTURES, check_metrics, parse_samples

from wattwise.errors import ConfigError
from wattwise.monitor.attribution import split_node_power, unit_shares
from wattwise.monitor.discovery import Unit, classify, rebase_mounts
from wattwise.monitor.exposition import Family, escape_label_value, format_value, label_text, render
from wattwise.monitor.metadata import OwnerResolver, ProjectMap, UserNames, parse_scontrol_job
from wattwise.monitor.promql import (
    AccessDenied,
    PromQLError,
    check_access,
    literal_alternatives,
    selectors,
)
from wattwise.monitor.server import parse_listen
from wattwise.providers.cgroup import CgroupMounts

ASSETS = Path(__file__).resolve().parents[2] / "src" / "wattwise" / "monitor" / "assets"
HEX = "3f4e8a1c2b7d9e0f11223344556677889900aabbccddeeff0011223344556677"


@pytest.mark.parametrize(("path", "expected"), [
    ("system.slice/slurmstepd.scope/job_42", ("slurm", "42", None)),
    ("system.slice/node07_slurmstepd.scope/job_42", ("slurm", "42", None)),
    ("slurm/uid_1001/job_7", ("slurm", "7", 1001)),
    ("slurm_node07/uid_0/job_8", ("slurm", "8", 0)),
    (f"system.slice/docker-{HEX}.scope", ("docker", HEX[:12], None)),
    (f"docker/{HEX}", ("docker", HEX[:12], None)),
    (f"machine.slice/libpod-{HEX}.scope", ("podman", HEX[:12], None)),
    (f"user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope", ("podman", HEX[:12], None)),
    (f"libpod_parent/libpod-{HEX}", ("podman", HEX[:12], None)),
    ("system.slice/nginx.service", ("systemd", "nginx.service", None)),
    (f"machine.slice/libpod-conmon-{HEX}.scope", None),
    ("system.slice/slurmstepd.scope/job_42/step_0", None),
    ("system.slice/slurmstepd.scope/system", None),
    ("user.slice/user-1000.slice/user@1000.service", None),
    ("user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", None),
    ("init.scope", None),
    ("job_42", None),
])
def test_classify(path: str, expected: tuple[str, str, int | None] | None) -> None:
    match = classify(path)
    assert (None if match is None else (match.manager, match.unit_id, match.path_uid)) == expected


def test_rebase_mounts() -> None:
    mounts = CgroupMounts.parse(
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "50 31 0:40 / /cgroup/memory rw - cgroup cgroup rw,memory\n")
    moved = rebase_mounts(mounts, "/fixture")
    assert moved.v1["cpuacct"].mount_point == Path("/fixture/cpu,cpuacct")
    assert moved.v1["memory"].mount_point == Path("/fixture/cgroup/memory")
    assert moved.v2 is not None and moved.v2.mount_point == Path("/fixture/unified")
    assert rebase_mounts(mounts, None) is mounts


def test_owner_from_scontrol_and_mapping(tmp_path: Path) -> None:
    job = parse_scontrol_job((FIXTURES / "scontrol_show_job_4242.txt").read_text())
    assert (job.user, job.uid, job.account) == ("alice", 1001, "astro-hpc")
    assert parse_scontrol_job("JobId=1 UserId=bob(1002) Account=(null)").account is None
    script = tmp_path / "scontrol"
    script.write_text(f"#!/bin/sh\n[ \"$1 $2 $3 $4\" = 'show job -o 4242' ] || exit 1\n"
                      f"cat {FIXTURES / 'scontrol_show_job_4242.txt'}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    resolver = OwnerResolver(tmp_path, ProjectMap(users={"bob": "bio"}, units={"slurm/9": "special"}),
                             UserNames(FIXTURES / "slurm-v1" / "before" / "passwd"), [str(script)])
    owner = resolver.resolve(Unit("slurm", "4242"), None)  # no process: everything from scontrol
    assert (owner.user, owner.project, owner.uid) == ("alice", "astro-hpc", 1001)
    assert resolver.resolve(Unit("slurm", "9", path_uid=1002), None).project == "special"
    assert resolver.resolve(Unit("slurm", "10", path_uid=1002), None) .project == "bio"  # scontrol fails: users:
    assert resolver.resolve(Unit("docker", "abc", path_uid=None), None).user == ""


def test_project_map_errors(tmp_path: Path) -> None:
    path = tmp_path / "projects.yml"
    path.write_text("user:\n  alice: astro\n")
    with pytest.raises(ConfigError, match="unknown key"):
        ProjectMap.load(path)
    path.write_text("users: [alice]\n")
    with pytest.raises(ConfigError, match="users must map"):
        ProjectMap.load(path)
    path.write_text("users: {alice: [a, b]}\n")
    with pytest.raises(ConfigError, match=r"users\.alice must be a project name"):
        ProjectMap.load(path)
    with pytest.raises(ConfigError, match="cannot read project mapping"):
        ProjectMap.load(tmp_path / "missing.yml")


def test_power_split_table() -> None:
    rapl_ipmi = split_node_power(rapl_package_w=100, rapl_dram_w=20, ipmi_w=300, gpu_w=50)
    assert rapl_ipmi is not None
    assert (rapl_ipmi.source, rapl_ipmi.cpu_w, rapl_ipmi.memory_w, rapl_ipmi.fixed_w) == ("rapl+ipmi", 100, 20, 130)
    rapl = split_node_power(rapl_package_w=100)
    assert rapl is not None and (rapl.memory_w, rapl.fixed_w, rapl.node_w) == (0, 0, 100)
    ipmi = split_node_power(ipmi_w=300, gpu_w=100, cpu_fraction=0.6, memory_fraction=0.2)
    assert ipmi is not None
    assert (ipmi.cpu_w, ipmi.memory_w, ipmi.fixed_w, ipmi.unattributed_w) == pytest.approx((120, 40, 40, 100))
    estimate = split_node_power(estimate_w=50)
    assert estimate is not None and estimate.attributable_w == pytest.approx(50)
    assert split_node_power() is None
    with pytest.raises(ConfigError):
        split_node_power(ipmi_w=1, cpu_fraction=0.95, memory_fraction=0.1)


def test_unit_shares_cap_and_fixed_part() -> None:
    split = split_node_power(ipmi_w=100)
    # the units' CPU time exceeds the node's busy time (accounting skew): shares still sum to 1
    shares = unit_shares([3.0, 1.0], [0, 0], 2.0, 10.0, split, pue=1.5)
    assert [s.cpu_share for s in shares] == [0.75, 0.25]
    assert shares[0].power_w == pytest.approx(1.5 * (0.75 * 70 + 20 / 2))
    idle = unit_shares([0.0], [5.0], 0.0, 10.0, split)
    assert idle[0].cpu_share == 0 and idle[0].memory_share == 0.5
    assert unit_shares([], [], 1, 1, split) == []


def test_exposition_escaping_and_values() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert [format_value(v) for v in (3, 2.0, 0.5, float("nan"), float("inf"), 1e20)] == [
        "3", "2", "0.5", "NaN", "+Inf", "1e+20"]
    family = Family("wattwise_test_total", "counter", "A test\nwith a newline.")
    family.add(label_text([("user", 'we"ird')]), 1)
    text = render([family, Family("wattwise_empty", "gauge", "nothing")])
    assert text == ('# HELP wattwise_test_total A test\\nwith a newline.\n# TYPE wattwise_test_total counter\n'
                    'wattwise_test_total{user="we\\"ird"} 1\n')
    check_metrics(text)


def test_parse_listen() -> None:
    assert parse_listen(":9010") == ("0.0.0.0", 9010)
    assert parse_listen("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_listen("[::1]:9010") == ("::1", 9010)
    for bad in ("localhost", ":http", ":70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


# --- PromQL guard ---------------------------------------------------------------------------------


def names(expression: str) -> list[str | None]:
    return [s.name for s in selectors(expression)]


def test_selectors_skip_functions_keywords_and_label_lists() -> None:
    assert names('sum by (user, unit) (rate(a{user="x"}[5m] offset 1h))') == ["a"]
    assert names("a / on(unit) group_left(project, user) b and bool c unless d or e") == list("abcde")
    assert names('topk(3, sum without (hostname) (a)) > bool 2 + Inf - NaN') == ["a"]
    assert names('histogram_quantile(0.9, sum(rate(h_bucket[5m])) by (le))') == ["h_bucket"]
    assert names('max_over_time(timestamp(a)[1h:15s]) @ end()') == ["a"]
    assert names('count_values("v", a) # a comment with b{user="y"}\n') == ["a"]
    assert names('label_replace(a, "dst", "$1", "src", "(.*)")') == ["a"]
    assert names('{__name__="a", user="x"} * on() group_right b') == [None, "b"]
    assert names("sum(a) by (user)") == ["a"]
    assert names('a{user="x",} offset -5m') == ["a"]
    found = selectors("a{b='c', d=~`e|f`, g!~\"h\\\"i\"}")[0].matchers
    assert [(m.label, m.op, m.value) for m in found] == [("b", "=", "c"), ("d", "=~", "e|f"), ("g", "!~", 'h"i')]


@pytest.mark.parametrize("bad", ['a{user="x"', 'a{user}', 'a{user="x" b="y"}', "a}", 'a{"x"="y"}', "a[5m", "a ~ b",
                                 'a{user="\\x41"}'])
def test_unreadable_queries_are_errors(bad: str) -> None:
    with pytest.raises(PromQLError):
        selectors(bad)


def test_check_access_policy() -> None:
    def units(keys: list[tuple[str, str, str]]) -> bool:
        return set(keys) <= {("n1", "slurm", "100"), ("n1", "slurm", "101")}

    ok = ['a{user="alice"}', 'a{project="astro"}', 'a{project=~"astro|bio"}',
          'a{hostname="n1", manager="slurm", unit="100"}', 'a{hostname="n1",manager="slurm",unit=~"100|101"}',
          'sum by (unit) (rate(a{user="alice"}[5m])) / on (unit) b{unit="101", hostname="n1", manager="slurm"}',
          '{user="alice"}', 'a{user=~"alice"}']
    for expression in ok:
        check_access(expression, "alice", {"astro", "bio"}, units)
    denied = ["a", 'a{user="bob"}', 'a{user!="alice"}', 'a{user=~"alice|bob"}', 'a{user=~"al.*"}',
              'a{project="chem"}', 'a{project=~"astro|chem"}', 'a{unit="200"}', 'a{unit=~"100|200"}',
              'a{unit="100"}', 'a{unit="100", hostname="n1"}', 'a{unit="100", hostname="n2", manager="slurm"}',
              'a{unit="100", hostname=~"n1|n2", manager="slurm"}',
              'a{user="alice"} + b', '{__name__=~".+"}', 'a{user=""}', 'a{user=~"alic."}', 'a{project=""}']
    for expression in denied:
        with pytest.raises(AccessDenied):
            check_access(expression, "alice", {"astro", "bio"}, units)
    assert literal_alternatives("a|b\\.c") == ["a", "b.c"]
    assert literal_alternatives("a.*") is None and literal_alternatives("") is None


# --- shipped assets -------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    names_found = set()
    for name in ("slurm-v1", "slurm-v2"):
        text = (FIXTURES / name / "expected.prom").read_text().replace("<volatile>", "0")
        for (metric, _), _ in parse_samples(text).items():
            names_found.add(metric)
    return names_found | {"wattwise_gpu_power_watts", "wattwise_gpu_energy_joules_total",
                          "wattwise_node_estimated_power_watts", "wattwise_ipmi_power_watts",
                          "wattwise_unit_gpu_power_watts", "wattwise_unit_gpu_energy_joules_total",
                          "wattwise_unit_info"}  # exported with GPUs, VMs or pods (other test files)


@pytest.mark.parametrize("rules", ["recording-rules.yml", "ceems-recording-rules.yml"])
def test_recording_rules_pass_promtool_and_use_exported_metrics(rules: str) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed")
    path = ASSETS / rules
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    groups = yaml.safe_load(path.read_text())["groups"]
    known = exported_metric_names() | {r["record"] for g in groups for r in g["rules"]}
    for group in groups:
        for rule in group["rules"]:
            for selector in selectors(rule["expr"]):
                assert selector.name in known, (rule["record"], selector.name)


@pytest.mark.parametrize("name", ["dashboard-user.json", "dashboard-operator.json"])
def test_dashboards_query_known_series(name: str) -> None:
    dashboard = json.loads((ASSETS / name).read_text())
    rules = yaml.safe_load((ASSETS / "recording-rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"]}
    known = exported_metric_names() | recorded
    assert dashboard["uid"].startswith("wattwise-") and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = target["expr"].replace("$__rate_interval", "1m").replace("$__range", "1d")
            expression = expression.replace("${__user.login}", "alice")
            for selector in selectors(expression):
                assert selector.name in known, (panel["title"], selector.name)
            if name == "dashboard-user.json":
                # every query of the user dashboard passes the PromQL guard for the logged-in user
                check_access(expression, "alice", set(), lambda ids: False)


# --- command line ---------------------------------------------------------------------------------


def test_cli_help_and_once_on_a_fixture(run_cli, tmp_path: Path) -> None:
    help_text = run_cli("--help", check=True).stdout
    for command in ("exporter", "monitor-api", "monitor-proxy"):
        assert command in help_text
    root = tmp_path / "tree"
    shutil.copytree(FIXTURES / "slurm-v1" / "before", root)
    done = run_cli("exporter", "--once", "--interval", "0", "--mountinfo", str(root / "mountinfo"),
                   "--cgroup-root", str(root / "cgroup"), "--proc-root", str(root / "proc"),
                   "--powercap-root", str(root / "powercap"), "--passwd", str(root / "passwd"),
                   "--projects", str(root / "projects.yml"), "--hostname", "node01", "--ipmi", "off",
                   "--no-gpu", "--grid", "static:SE", check=True)
    check_metrics(done.stdout)
    assert 'wattwise_unit_energy_joules_total{hostname="node01",manager="slurm",unit="4242",user="alice",' \
           'project="astro"} 0' in done.stdout
    assert 'source="static",zone="SE"' in done.stdout
    assert 'wattwise_rapl_energy_joules_total{hostname="node01",zone="package-0",domain="package"}' in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--cpu-fraction", "0.95"], "fractions"),
    (["--pue", "0.5"], "PUE"),
    (["--managers", "slurm,kubernetes"], "unknown unit manager"),
    (["--grid", "nowhere:1"], "unknown grid intensity source"),
    (["--mountinfo", "/nonexistent/mountinfo"], "cannot read /nonexistent/mountinfo"),
    (["--listen", "nowhere"], "--listen"),
])
def test_cli_errors_exit_2(run_cli, args: list[str], message: str) -> None:
    done = run_cli("exporter", "--once", "--ipmi", "off", "--no-gpu", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr


def test_monitor_api_once_pulls_nothing_from_an_empty_prometheus(run_cli, tmp_path: Path) -> None:
    done = run_cli("monitor-api", "--once", "--prometheus", "http://127.0.0.1:9", "--db", str(tmp_path / "m.db"))
    assert done.returncode == 2 and "cannot reach Prometheus" in done.stderr
    assert os.path.exists(tmp_path / "m.db")


def _serve(argv: list[str], url: str, tmp_path: Path):
    import time

    import httpx
    from tests.conftest import wattwise_bin

    env = {**os.environ, "WATTWISE_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen([*wattwise_bin(), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())  # type: ignore[union-attr]
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{argv[0]} did not start")


def test_monitor_api_and_proxy_commands_serve(tmp_path: Path) -> None:
    import httpx
    from tests.monitor.conftest import free_port

    access = tmp_path / "access.yml"
    access.write_text("admins: [ops]\ntrusted_header: X-Grafana-User\ntrusted_proxies: [127.0.0.1]\n"
                      "projects:\n  astro: [alice]\n")
    db = str(tmp_path / "monitor.db")
    api_port, proxy_port = free_port(), free_port()
    api = _serve(["monitor-api", "--listen", f"127.0.0.1:{api_port}", "--prometheus", "http://127.0.0.1:9",
                  "--interval", "0", "--access", str(access), "--db", db], f"http://127.0.0.1:{api_port}/healthz",
                 tmp_path)
    proxy = _serve(["monitor-proxy", "--listen", f"127.0.0.1:{proxy_port}", "--prometheus", "http://127.0.0.1:9",
                    "--access", str(access), "--db", db], f"http://127.0.0.1:{proxy_port}/api/v1/query", tmp_path)
    try:
        base = f"http://127.0.0.1:{api_port}"
        assert httpx.get(f"{base}/api/v1/me").status_code == 401
        me = httpx.get(f"{base}/api/v1/me", headers={"X-Grafana-User": "alice"}).json()
        assert me == {"user": "alice", "admin": False, "projects": ["astro"], "via": "header"}
        assert httpx.get(f"{base}/api/v1/units", headers={"X-Grafana-User": "alice"}).json() == {
            "total": 0, "units": []}
        guard = f"http://127.0.0.1:{proxy_port}/api/v1/query"
        assert httpx.get(guard, params={"query": "up"}, headers={"X-Grafana-User": "alice"}).status_code == 403
        down = httpx.get(guard, params={"query": "up"}, headers={"X-Grafana-User": "ops"})
        assert down.status_code == 502 and down.json()["errorType"] == "unavailable"
    finally:
        for process in (api, proxy):
            process.terminate()
            process.wait(timeout=20)
