"""Hostile scenario files (issue 16): each ends in a clear ScenarioError naming the file and line, quickly and
without large memory; a bounded fuzz test of the loader finds no traceback."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattwise.errors import WattwiseError
from wattwise.measure.scenario.problems import ScenarioError
from wattwise.measure.scenario.schema import load_scenario
from wattwise.measure.scenario.source import LoadLimits

HEAD = "name: n\nauthor: a\ndescription: d\n"
FLOW = "flow:\n  - name: s\n    container: app\n    commands:\n      - type: console\n        command: 'true'\n"
APP = "services:\n  app:\n    image: localhost/wattwise-busybox:latest\n"


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return HEAD + APP + FLOW + "x-bomb:\n" + "".join(f"  {line}\n" for line in lines)


def merge_bomb(levels: int = 40) -> str:
    lines = ["m0: &m0 {k0: v}"]
    for level in range(1, levels + 1):
        lines.append(f"m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: v}}")
    return HEAD + APP + FLOW + "x-merge:\n" + "".join(f"  {line}\n" for line in lines)


def under_1gb(path: Path) -> subprocess.CompletedProcess[str]:
    """`wattwise validate` in a process whose address space is capped at 1 GiB."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = dict(os.environ, WATTWISE_DATA_DIR=str(path.parent))
    env.pop("WATTWISE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "wattwise", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        timeout=300,
    )


def test_alias_bomb_is_refused_under_1gb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 1000
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.lines == [
        "bomb.yml:9: the scenario expands to more than 200,000 values (aliases and includes counted as often as "
        "they are used): refused as too large or an alias bomb"
    ] or "alias" in caught.value.lines[0]
    done = under_1gb(path)
    assert done.returncode == 2, done.stderr
    assert "refused as too large or an alias bomb" in done.stderr and "Traceback" not in done.stderr


def test_too_many_aliases_and_merge_bombs(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yml"
    path.write_text(HEAD + APP + FLOW + "x-a: &x 1\nx-list: [" + ", ".join(["*x"] * 1001) + "]\n")
    with pytest.raises(ScenarioError, match=r"aliases.yml:\d+: more than 1000 aliases"):
        load_scenario(path)
    path = tmp_path / "merge.yml"
    path.write_text(merge_bomb())
    scenario = load_scenario(path)  # 2^40 merge paths without the memo; resolved once each with it
    assert scenario.name == "n"


def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text(HEAD + "x-deep: " + "[" * 100_000 + "]" * 100_000 + "\n" + APP + FLOW)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.lines == ["deep.yml:4: values are nested more than 64 levels deep"]
    path.write_text(HEAD + "x-deep:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 2000)) + APP + FLOW)
    with pytest.raises(ScenarioError, match="nested more than 64 levels deep"):
        load_scenario(path)


def big_flow(steps: int) -> str:
    step = (
        "  - name: Step {i}\n    container: app\n    commands:\n      - type: console\n"
        "        command: echo a fairly long command line for step {i} of the scenario\n"
        "        note: step {i} of many, with a note to make the file as large as a real one\n"
    )
    return HEAD + APP + "flow:\n" + "".join(step.format(i=i) for i in range(steps))


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    path.write_text(big_flow(200_000))
    size = path.stat().st_size
    assert size > 18_000_000
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.lines == [
        f"huge.yml:1: the file has {size:,} bytes, more than the limit of 10 MB ($WATTWISE_SCENARIO_MAX_BYTES sets it)"
    ]
    with pytest.raises(ScenarioError, match="more than the limit of 1 MB"):
        load_scenario(path, limits=LoadLimits(max_file_bytes=1_000_000))


def test_many_steps_under_the_size_limit_are_refused_by_the_prescan(tmp_path: Path) -> None:
    path = tmp_path / "many.yml"
    path.write_text(big_flow(40_000))  # ≈ 9.5 MB: under the size limit, far over the event limit
    assert path.stat().st_size < 10_000_000
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.lines == [
        "many.yml:10590: the file has more than 30,000 YAML values and structures: refused as too large"
    ]


# --- fuzz ------------------------------------------------------------------------------------------------
FRAGMENTS = [
    "name: n\n", "author: a\n", "description: d\n", "services:\n", "  app:\n", "    image: x\n",
    "    build: ../\n", "    volumes: ['/etc:/e', {type: bind, source: ., target: '/a:b'}]\n",
    "    depends_on: {app: {condition: service_healthy}}\n", "    environment: [A=1, B]\n",
    "    deploy: null\n", "    cpus: -1\n", "    mem_limit: 1e99\n", "    healthcheck: {test: [CMD]}\n",
    "flow:\n", "  - name: '[x]'\n", "    container: app\n", "    commands:\n", "      - type: console\n",
    "        command: 'echo \"'\n", "        shell-options: [-o, errexit]\n", "x-a: &a [1, 2]\n", "x-b: *a\n",
    "<<: *a\n", "!include ../x\n", "key: !include [a.yml, b]\n", "compose-file: !include-gmt-helper x.yml\n",
    "flow-prepend: 3\n", "__GMT_VAR_X__\n", "\t\n", "- [\n", "}\n", ": :\n", "? complex\n", "&anchor\n",
    "custom_metrics: {m: {unit: u, regex: '('}}\n", "networks: [host]\n", "name: n\nname: m\n",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)),
        max_size=25,
    )
)
def test_fuzzed_files_are_valid_or_a_clear_error(tmp_path: Path, parts: list[str]) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_bytes("".join(parts).encode("utf-8", "replace"))
    try:
        load_scenario(path, limits=LoadLimits(max_nodes=20_000))
    except ScenarioError as exc:
        assert exc.lines, "an error lists its problems"
    except WattwiseError:
        pass
