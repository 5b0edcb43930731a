"""GMT-style files, judged as GMT judges them: a repository-shaped root with scenarios in a subfolder.

`tests/fixtures/scenarios/gmt/verdicts.txt` holds GMT's verdict for every file (from GMT's documented
behaviour); wattwise must agree with each, and rejected files fail with exactly their `.expected` lines.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from wattwise.measure.scenario.checks import CheckOptions
from wattwise.measure.scenario.problems import ScenarioError
from wattwise.measure.scenario.schema import load_scenario
from wattwise.measure.scenario.source import parse_variables

GMT = Path(__file__).resolve().parents[1] / "fixtures" / "scenarios" / "gmt"


def verdicts() -> dict[str, str]:
    out = {}
    for line in (GMT / "verdicts.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, verdict, *_ = line.split()
            out[name] = verdict
    return out


def judge(path: Path):
    args_file = path.with_suffix(".args")
    args = shlex.split(args_file.read_text()) if args_file.exists() else []
    variables = [args[i + 1] for i, arg in enumerate(args) if arg == "--variable"]
    return load_scenario(
        path,
        parse_variables(variables),
        allow_unsafe="--allow-unsafe" in args,
        skip_unsafe="--skip-unsafe" in args,
        root=GMT,
    )


@pytest.fixture(autouse=True)
def helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTWISE_GMT_HELPERS", str(GMT / "helpers"))


def test_every_file_has_a_verdict() -> None:
    files = sorted(p.name for p in (GMT / "scenarios").glob("*.yml"))
    assert files == sorted(verdicts())
    for name, verdict in verdicts().items():
        assert verdict in ("accept", "reject"), name
        assert (GMT / "scenarios" / name).with_suffix(".expected").exists() == (verdict == "reject"), name


@pytest.mark.parametrize("name", sorted(verdicts()))
def test_wattwise_agrees_with_gmt(name: str) -> None:
    path = GMT / "scenarios" / name
    if verdicts()[name] == "accept":
        scenario = judge(path)
        assert scenario.flow and all(step.service in scenario.services for step in scenario.flow)
        return
    with pytest.raises(ScenarioError) as caught:
        judge(path)
    machine = CheckOptions()  # the expected lines may name this machine's size
    expected = path.with_suffix(".expected").read_text().format(
        host_cpus=machine.host_cpus, host_memory_b=machine.host_memory_b
    )
    assert caught.value.lines == expected.splitlines()
    for line in caught.value.lines:
        file, number, _ = line.split(":", 2)
        assert file.endswith(".yml") and number.isdigit(), line


def test_accepted_files_are_read_as_gmt_reads_them() -> None:
    monolith = judge(GMT / "scenarios" / "root-compose.yml")
    assert sorted(monolith.services) == ["api", "db"]
    api, db = monolith.services["api"], monolith.services["db"]
    assert api.build is not None and api.build.context == GMT / "stress-application"
    assert api.mem_limit == "536870912" and api.depends_on == {"db": "service_healthy"}
    assert api.healthcheck is None and db.healthcheck is None  # decided at run time from the image
    assert [s.command for s in api.setup_commands] == ["echo ready"]  # the scenario's keys merged on top
    assert db.expose == ["5432", "8000-8010"] and db.shm_size == "256m" and db.environment == {"POSTGRES_DB": "shop"}
    assert monolith.root == GMT and "compose.yml" in monolith.files and "scenarios/root-compose.yml" in monolith.files

    keys = judge(GMT / "scenarios" / "all-service-keys.yml")
    store = keys.services["store"]
    assert store.setup_commands[1].argv() == ["sh", "-o", "errexit", "-c", "echo ok > /tmp/x/ok"]
    assert store.build is not None and store.build.args == {"VERSION": "1.0"}
    assert store.engine_args == ["--label", "team=green"] and store.folder_destination == "/tmp/app"
    assert (store.cpus, store.mem_limit) == ("1", "536870912") and store.entrypoint == []
    assert keys.flow[0].name == "Run (1) - fast.path"
    assert any("relations" in note for note in keys.notes)
    assert any("restart" in note and "ignored" in note for note in keys.notes)

    duplicate = judge(GMT / "scenarios" / "duplicate-keys.yml")
    assert duplicate.services["app"].image == "localhost/wattwise-busybox:latest"
    assert duplicate.warnings == [
        "scenarios/duplicate-keys.yml:7: services.app.image: duplicate key (first given on line 6); "
        "the value of line 7 is used, as GMT does"
    ]
    with pytest.raises(ScenarioError, match="duplicate key"):
        load_scenario(GMT / "scenarios" / "duplicate-keys.yml", root=GMT, strict_duplicates=True)

    includes = judge(GMT / "scenarios" / "include-forms.yml")
    assert [s.name for s in includes.flow] == ["Start browser", "Prepare (warm-up)"]  # the helper's flow-prepend
    assert includes.flow[0].commands[0].detach and includes.services["web"].labels == {"team": "green"}
    assert sorted(includes.services) == ["gmt-playwright-nodejs", "web"]

    metric = judge(GMT / "scenarios" / "custom-metric-default.yml").custom_metrics["pages"]
    match = metric.regex.match("1700000000 pages=3")
    assert match is not None and match.group("value") == "3" and metric.regex.match("1700000000 other=3") is None

    skipped = judge(GMT / "scenarios" / "skip-unsafe.yml")
    app = skipped.services["app"]
    assert app.ports == [] and app.volumes == [] and app.environment == {"GOOD": "1"}
    assert len(skipped.warnings) == 3 and all("left out (--skip-unsafe)" in w for w in skipped.warnings)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "sub" / "data").symlink_to(outside)
    (root / "sub" / "usage_scenario.yml").write_text(
        "name: n\nauthor: a\ndescription: d\nservices:\n  app:\n    image: localhost/wattwise-busybox:latest\n"
        "    volumes:\n      - ./data:/data:ro\nflow:\n  - name: s\n    container: app\n    commands:\n"
        "      - type: console\n        command: 'true'\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(root / "sub" / "usage_scenario.yml", root=root)
    assert caught.value.lines == [
        f"sub/usage_scenario.yml:8: services.app.volumes[0]: the host path './data' is outside the root (--uri) "
        f"(through a symlink, to {outside}); only --allow-unsafe permits host paths outside it"
    ]
