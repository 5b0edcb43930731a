"""Reading scenario files: locations, includes, compose merge, variables; helpers of the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.measure.scenario.model import ShellCommand
from wattwise.measure.scenario.outputs import Collected, LineOptions, parse_timestamp_us
from wattwise.measure.scenario.problems import Location, ScenarioError, format_path
from wattwise.measure.scenario.schema import load_scenario, parse_compose_duration
from wattwise.measure.scenario.source import deep_merge, load_document, parse_variables, variable_name


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


SCENARIO = """\
name: n
author: a
description: d
services:
  app:
    image: busybox
flow:
  - name: s
    container: app
    commands:
      - type: console
        command: "true"
"""


def test_locations_of_keys_and_items(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "s.yml", SCENARIO))
    assert doc.locations[("services", "app", "image")] == Location("s.yml", 6)
    assert doc.locations[("flow", 0)] == Location("s.yml", 8)
    assert doc.location(("flow", 0, "commands", 0, "command")) == Location("s.yml", 12)
    assert doc.location(("flow", 0, "nothing", "here")) == Location("s.yml", 8)


def test_include_from_a_subfolder_keeps_its_own_lines(tmp_path: Path) -> None:
    write(tmp_path, "parts/services.yml", "# services\nweb:\n  image: busybox\n  bogus: 1\n")
    path = write(
        tmp_path,
        "s.yml",
        SCENARIO.replace("services:\n  app:\n    image: busybox\n", "services: !include parts/services.yml\n").replace(
            "container: app", "container: web"
        ),
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.lines == [
        "parts/services.yml:4: services.web.bogus: unknown or unsupported service key; "
        "set ignore-unsupported-compose: true to ignore such keys"
    ]


def test_include_through_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/x.yml", "a: 1\n")
    folder = tmp_path / "scenario"
    folder.mkdir()
    (folder / "link.yml").symlink_to(outside)
    path = write(folder, "s.yml", SCENARIO + "networks: !include link.yml\n")
    with pytest.raises(ScenarioError, match="only files inside the scenario's folder"):
        load_document(path)


def test_compose_merge_scenario_wins_and_null_removes(tmp_path: Path) -> None:
    write(
        tmp_path,
        "compose.yml",
        "services:\n  app:\n    image: busybox\n    environment: {A: '1', B: '2'}\n  gone:\n    image: x\n",
    )
    text = SCENARIO.replace("    image: busybox\n", "    environment: {B: '3'}\n  gone: null\n")
    doc = load_document(write(tmp_path, "s.yml", "compose-file: !include compose.yml\n" + text))
    services = doc.value["services"]
    assert services == {"app": {"image": "busybox", "environment": {"A": "1", "B": "3"}}}
    assert doc.locations[("services", "app", "image")] == Location("compose.yml", 3)
    assert doc.locations[("services", "app", "environment")] == Location("s.yml", 7)
    assert "compose-file" not in doc.value


def test_compose_file_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_document(write(tmp_path, "s.yml", "compose-file: compose.yml\n" + SCENARIO))
    assert caught.value.lines == [
        "s.yml:1: compose-file: must be a mapping, got 'compose.yml': write compose-file: !include compose.yml"
    ]


def test_variables_are_text_before_parsing(tmp_path: Path) -> None:
    path = write(
        tmp_path, "s.yml", SCENARIO.replace('"true"', "__GMT_VAR_CMD__").replace("name: n", "__GMT_VAR_K__: n")
    )
    scenario = load_scenario(path, parse_variables(["K=name", "__GMT_VAR_CMD__=echo 'a b'"]))
    assert scenario.name == "n"
    assert scenario.flow[0].commands[0].argv() == ["echo", "a b"]


def test_variable_names() -> None:
    assert variable_name("PORT") == "__GMT_VAR_PORT__"
    assert variable_name("__GMT_VAR_PORT__") == "__GMT_VAR_PORT__"
    assert parse_variables(["A=x=y"]) == {"__GMT_VAR_A__": "x=y"}
    with pytest.raises(ScenarioError, match="has no value"):
        parse_variables(["A"])
    with pytest.raises(ScenarioError, match="not valid"):
        parse_variables(["a b=1"])


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_document("/nonexistent/usage_scenario.yml")


def test_helpers() -> None:
    assert format_path(("flow", 0, "commands", 2, "note")) == "flow[0].commands[2].note"
    assert parse_compose_duration("1m30s") == 90.0
    assert parse_compose_duration("250ms") == 0.25
    assert parse_compose_duration("1h2m") == 3720.0
    assert parse_compose_duration("soon") is None and parse_compose_duration("10x") is None
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"c": 3}, "l": [2]}) == {
        "a": {"b": 1, "c": 3},
        "l": [2],
    }
    assert ShellCommand("echo 'a b' c").argv() == ["echo", "a b", "c"]
    assert ShellCommand("echo $X", shell="bash", shell_options=["-e"]).argv() == ["bash", "-e", "-c", "echo $X"]


def test_timestamps() -> None:
    assert parse_timestamp_us("1700000000") == 1_700_000_000_000_000
    assert parse_timestamp_us("1700000000.25") == 1_700_000_000_250_000
    assert parse_timestamp_us("1700000000123") == 1_700_000_000_123_000
    assert parse_timestamp_us("1700000000123456") == 1_700_000_000_123_456
    assert parse_timestamp_us("1700000000123456789") == 1_700_000_000_123_456
    assert parse_timestamp_us("12") is None and parse_timestamp_us("abc") is None


def test_collected_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yml",
        SCENARIO + "custom_metrics:\n  req:\n    unit: request\n    regex: '^(\\d+) req=(\\d+)$'\n    sci: true\n",
    )
    scenario = load_scenario(path)
    collected = Collected(custom_metrics=scenario.custom_metrics)
    options = LineOptions("step", notes=True, sci=True)
    for line in ["1700000000 req=5", "1700000001000000 a note", "GMT_SCI_R=7", "1700000002 req=x", "noise"]:
        collected.read_line(line, options)
    assert collected.metric_samples == {"req": [(1_700_000_000_000_000, 5.0, "step")]}
    assert collected.sci_r == 7.0
    assert (1_700_000_001_000_000, "step", "a note") in collected.notes
    assert collected.warnings == []  # 'x' does not match the regex's \d+, so the line is not the metric


def test_merge_keys_can_be_overridden_but_explicit_duplicates_cannot(tmp_path: Path) -> None:
    text = """\
x-common: &common
  image: busybox
  environment: {A: "1"}
x-more: &more
  image: other
  labels: {team: green}
name: merge
services:
  app:
    <<: *common
    image: localhost/wattwise-busybox
  multi:
    <<: [*common, *more]
"""
    doc = load_document(write(tmp_path, "s.yml", text))
    assert doc.value["services"]["app"] == {"image": "localhost/wattwise-busybox", "environment": {"A": "1"}}
    # with a list of sources the first one wins, as in YAML's merge-key rules
    assert doc.value["services"]["multi"]["image"] == "busybox"
    assert doc.value["services"]["multi"]["labels"] == {"team": "green"}
    with pytest.raises(ScenarioError, match="duplicate key"):
        load_document(write(tmp_path, "d.yml", "name: a\nname: b\n"))


def test_a_mapping_that_merges_itself_is_a_clear_error(tmp_path: Path) -> None:
    text = "name: x\nx-a: &a\n  image: busybox\n  <<: *a\nservices:\n  s:\n    <<: *a\n"
    with pytest.raises(ScenarioError, match="merges itself"):
        load_document(write(tmp_path, "self.yml", text))
