"""The compatibility corpus: valid files validate, invalid files fail with exactly the expected lines."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from wattwise.measure.scenario.problems import ScenarioError
from wattwise.measure.scenario.schema import load_scenario
from wattwise.measure.scenario.source import parse_variables

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "scenarios"


def _files(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).glob("*.yml") if not p.name.startswith("_"))


def _load(path: Path):
    args_file = path.with_suffix(".args")
    args = shlex.split(args_file.read_text()) if args_file.exists() else []
    variables = [args[i + 1] for i, arg in enumerate(args) if arg == "--variable"]
    backend = next((args[i + 1] for i, arg in enumerate(args) if arg == "--backend"), "auto")
    uri = next((args[i + 1] for i, arg in enumerate(args) if arg == "--uri"), None)  # relative to the file's folder
    return load_scenario(
        path,
        parse_variables(variables),
        allow_unsafe="--allow-unsafe" in args,
        skip_unsafe="--skip-unsafe" in args,
        backend=backend,
        root=(path.parent / uri) if uri else None,
    )


@pytest.mark.parametrize("path", _files("valid"), ids=lambda p: p.name)
def test_valid_files_validate(path: Path) -> None:
    scenario = _load(path)
    assert scenario.flow, "a valid scenario has a flow"
    for step in scenario.flow:
        assert step.service in scenario.services


@pytest.mark.parametrize("path", _files("invalid"), ids=lambda p: p.name)
def test_invalid_files_give_the_expected_messages(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text().splitlines()
    with pytest.raises(ScenarioError) as caught:
        _load(path)
    assert caught.value.lines == expected


def test_corpus_is_complete() -> None:
    assert len(_files("valid")) >= 10
    invalid = _files("invalid")
    assert len(invalid) >= 15
    for path in invalid:
        assert path.with_suffix(".expected").exists(), f"{path.name} has no .expected file"


def test_every_message_names_file_line_and_key() -> None:
    for path in _files("invalid"):
        for line in path.with_suffix(".expected").read_text().splitlines():
            if line.startswith("variable ") and "is given" in line:
                continue  # about the command line, not about a place in a file
            file, number, _ = line.split(":", 2)
            assert file.endswith(".yml") and number.isdigit(), line


def test_corpus_details() -> None:
    all_keys = _load(CORPUS / "valid" / "all-keys.yml")
    db, web, client = all_keys.services["db"], all_keys.services["web"], all_keys.services["client"]
    assert db.container_name == "database" and db.environment == {
        "DB_NAME": "shop",
        "DB_PORT": "5432",
        "DEBUG": "false",
    }
    assert db.networks == {"back": ["postgres"]} and db.healthcheck is not None
    assert db.healthcheck.argv == ["/bin/sh", "-c", "test -d /var/lib/data"]
    assert (db.healthcheck.interval_s, db.healthcheck.timeout_s, db.healthcheck.retries) == (1.0, 0.5, 5)
    assert [m.kind for m in db.volumes] == ["volume", "bind", "bind"] and db.volumes[1].read_only
    assert (db.mem_limit, db.cpus, db.init, db.log_stderr) == ("256m", "0.5", True, False)
    assert web.build is not None and web.build.args == {"VERSION": "1.2.3"} and web.build.target == "runtime"
    assert web.entrypoint == ["/bin/sh", "-c"] and web.command == ["exec httpd -f -p 8080 -h /www"]
    assert web.environment == {"MODE": "production", "EMPTY": ""}
    assert (web.cpus, web.mem_limit) == ("1.5", "1g")
    assert web.depends_on == {"db": "service_healthy"}
    assert web.setup_commands[1].argv() == ["sh", "-e", "-u", "-c", "echo ready > /www/index.html"]
    assert web.setup_commands[2].detach
    assert client.depends_on == {"web": "service_started"} and client.command == ["sleep", "3600"]
    warm, load, check = all_keys.flow
    assert warm.hidden and not load.hidden
    assert check.service == "db" and check.container == "database"
    first = load.commands[0]
    assert first.argv()[:3] == ["sh", "-e", "-c"] and first.note == "three requests"
    assert load.commands[1].detach and not load.commands[1].log_stdout
    assert all_keys.networks["back"]["internal"] is True

    compose = _load(CORPUS / "valid" / "compose-include.yml")
    assert sorted(compose.services) == ["web", "worker"]
    assert compose.services["web"].environment == {"MODE": "scenario", "KEEP": "yes"}
    assert compose.services["web"].command == ["httpd", "-f", "-p", "8080"]
    assert "shop" in compose.networks

    variables = _load(CORPUS / "valid" / "variables.yml")
    assert variables.name == "Variables demo"
    assert variables.services["app"].environment == {"PORT": "8080"}
    assert variables.flow[0].commands[0].argv() == ["echo", "hello", "world"]
    assert "__GMT_VAR_" not in variables.text

    legacy = _load(CORPUS / "valid" / "legacy-sci.yml")
    assert legacy.sci == {"R_d": "API request"} and "legacy-net" in legacy.networks
    assert [c.argv() for c in legacy.services["api"].setup_commands] == [
        ["mkdir", "-p", "/data"],
        ["touch", "/data/ready"],
    ]

    metrics = _load(CORPUS / "valid" / "custom-metrics.yml").custom_metrics
    assert metrics["requests"].sci and metrics["requests"].timestamp_group == "timestamp"
    assert not metrics["latency"].sci and metrics["latency"].value_group == 2

    ignored = _load(CORPUS / "valid" / "ignore-unsupported.yml")
    assert len(ignored.warnings) == 3 and "stop_grace_period" in ignored.warnings[0]

    host = _load(CORPUS / "valid" / "host-backend.yml")
    assert host.backend == "host" and host.start_order() == ["job", "side"]
