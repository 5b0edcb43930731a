"""`wattwise validate` and `wattwise run` as a person runs them (the real CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CORPUS, EXAMPLES


def wattwise(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WATTWISE_DATA_DIR=str(data_dir), COLUMNS="80")
    env.pop("WATTWISE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "wattwise", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_validate_valid_and_invalid(tmp_path: Path) -> None:
    done = wattwise("validate", str(CORPUS / "valid" / "minimal.yml"), data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout and "'Minimal'" in done.stdout

    invalid = CORPUS / "invalid" / "unsafe.yml"
    done = wattwise("validate", str(invalid), data_dir=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {invalid} is not a valid usage scenario (7 problems):"
    assert [line.strip() for line in lines[1:]] == invalid.with_suffix(".expected").read_text().splitlines()

    done = wattwise("validate", "--allow-unsafe", "--json", str(invalid), data_dir=tmp_path)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["services"] == ["app"]

    done = wattwise("validate", "--json", str(CORPUS / "invalid" / "empty.yml"), data_dir=tmp_path)
    assert done.returncode == 2
    assert json.loads(done.stdout)["problems"] == ["empty.yml:1: the file is empty"]

    done = wattwise("validate", str(CORPUS / "valid" / "variables.yml"), "--variable", "NAME=x", data_dir=tmp_path)
    assert done.returncode == 2
    assert "variable __GMT_VAR_TAG__ has no value: give it with --variable TAG=VALUE" in done.stderr


@pytest.mark.cgroups
def test_run_json_has_the_measure_shape(tmp_path: Path, needs_cgroups: None) -> None:
    done = wattwise(
        "run",
        str(EXAMPLES / "host-training" / "usage_scenario.yml"),
        "--dev-no-sleeps",
        "--backend",
        "host",
        "--json",
        "--name",
        "cli test",
        data_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    for key in (
        "run_id",
        "name",
        "status",
        "estimated",
        "intensity_g_per_kwh",
        "intensity_source",
        "pue",
        "phases",
        "warnings",
        "exit_code",
    ):
        assert key in summary, key
    assert summary["name"] == "cli test" and summary["status"] == "finished" and summary["exit_code"] == 0
    for phase in summary["phases"]:
        for key in ("name", "duration_s", "energy_j", "mean_power_w", "carbon_g", "parent", "hidden", "services"):
            assert key in phase, key
    assert [p["name"] for p in summary["phases"] if p["parent"] == "[RUNTIME]"] == ["Train", "Report"]
    assert summary["sci"]["R"] == 60000

    example = str(EXAMPLES / "host-training" / "usage_scenario.yml")
    done = wattwise("run", example, "--dev-no-sleeps", "--backend", "host", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Per service" in done.stdout and "trainer" in done.stdout


@pytest.mark.cgroups
def test_run_failure_shows_the_output(tmp_path: Path, needs_cgroups: None) -> None:
    scenario = tmp_path / "usage_scenario.yml"
    scenario.write_text(
        "name: fails\nauthor: t\ndescription: d\nx-wattwise: {backend: host}\nservices:\n  app: {}\n"
        "flow:\n  - name: Boom\n    container: app\n    commands:\n      - type: console\n"
        "        shell: sh\n        command: echo '[RUNTIME] looks like markup'; exit 3\n"
    )
    done = wattwise("run", str(scenario), "--dev-no-sleeps", data_dir=tmp_path)
    assert done.returncode == 2  # a file cannot choose the host backend by itself
    assert "x-wattwise.backend: the file asks for the host backend" in done.stderr
    done = wattwise("run", str(scenario), "--dev-no-sleeps", "--backend", "host", data_dir=tmp_path)
    assert done.returncode == 1
    assert "[RUNTIME] looks like markup" in done.stderr
    assert "error: flow step 'Boom', command 1" in done.stderr and "exited with code 3" in done.stderr
    assert "stored as failed" in done.stderr

    done = wattwise("run", str(CORPUS / "invalid" / "depends.yml"), "--dev-no-sleeps", data_dir=tmp_path)
    assert done.returncode == 2
    assert "depends.yml:9: services.a.depends_on[1]: no service named 'ghost'" in done.stderr


def test_paths_and_lines_are_printed_as_they_are(tmp_path: Path) -> None:
    """`compose.yml:100:` once became `compose.yml💯` (Rich emoji codes): messages print without emoji or markup."""
    lines = ["name: e", "author: a", "description: d", "services:", "  app:", "    image: busybox"]
    lines += ["# padding"] * (99 - len(lines)) + ["    bogus: 1"]
    lines += ["flow:", "  - name: s", "    container: app", "    commands:", "      - {type: console, command: 'true'}"]
    compose = tmp_path / "compose.yml"
    compose.write_text("\n".join(lines) + "\n")
    done = wattwise("validate", str(compose), data_dir=tmp_path)
    assert done.returncode == 2
    assert "compose.yml:100: services.app.bogus: unknown or unsupported service key" in done.stderr
    assert "💯" not in done.stderr


def test_validate_with_uri_and_filename(tmp_path: Path) -> None:
    root = CORPUS / "gmt"
    done = wattwise(
        "validate", "--uri", str(root), "--filename", "scenarios/root-compose.yml", "--verbose", data_dir=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "valid: scenarios/root-compose.yml" in done.stdout
    assert "note: compose.yml:6: services.db.restart: ignored" in done.stderr
    assert "note: compose.yml:11: services.db.deploy: deploy: null is accepted and ignored" in done.stderr
    done = wattwise("validate", str(root / "scenarios" / "root-compose.yml"), data_dir=tmp_path)
    assert done.returncode == 2  # alone, its folder is the root: the compose file above it is out of reach
    assert "only files inside the scenario's folder can be included" in done.stderr
    done = wattwise(
        "validate", "--uri", str(root), "--filename", "scenarios/flow-names.yml", "--json", data_dir=tmp_path
    )
    assert done.returncode == 2
    assert json.loads(done.stdout)["problems"][0].startswith("scenarios/flow-names.yml:9: flow[0].name:")


@pytest.mark.cgroups
def test_run_json_carries_the_error(tmp_path: Path, needs_cgroups: None) -> None:
    scenario = tmp_path / "usage_scenario.yml"
    scenario.write_text(
        "name: fails\nauthor: t\ndescription: d\nservices:\n  app: {}\n"
        "flow:\n  - name: Boom\n    container: app\n    commands:\n      - type: console\n"
        "        shell: sh\n        command: echo out; exit 3\n"
    )
    done = wattwise("run", str(scenario), "--backend", "host", "--dev-no-sleeps", "--json", data_dir=tmp_path)
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 3
    assert summary["error"].startswith("flow step 'Boom', command 1") and "exited with code 3" in summary["error"]
    assert summary["output"].strip().endswith("\nout")  # the failing command's last lines


@pytest.mark.cgroups
def test_iterations_commit_hash_and_phase_stats(tmp_path: Path, needs_cgroups: None) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    scenario = repo / "sub" / "usage_scenario.yml"
    scenario.write_text(
        "name: counted\nauthor: t\ndescription: d\nservices:\n  app: {}\n"
        "flow:\n  - name: Work\n    container: app\n    commands:\n      - type: console\n"
        # long enough for the sampler to read inside [RUNTIME] on a fast, idle machine (a run of a few ms has
        # no energy of its own, and the iterations table then has no mean ± sd)
        "        command: sh -c 'sleep 0.3; echo __GMT_VAR_WORD__'\n"
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    first = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    scenario.write_text(scenario.read_text().replace("name: counted", "name: changed"))
    subprocess.run([*git, "commit", "-q", "-am", "two"], check=True)
    args = ["run", "--uri", str(repo), "--filename", "sub/usage_scenario.yml", "--backend", "host"]
    args += ["--dev-no-sleeps", "--variables", "WORD=hello", "--skip-system-checks"]
    done = wattwise(*args, "--commit-hash", first, "--iterations", "2", "--json", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert [r["iteration"] for r in runs] == [1, 2] and len({r["run_id"] for r in runs}) == 2
    assert all(r["summary"]["name"] == "counted" for r in runs)  # the first commit, not the branch head
    done = wattwise(*args, "--iterations", "2", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 iterations" in done.stdout and "mean ± sd" in done.stdout
    done = wattwise(*args, "--json", "--print-phase-stats", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "changed"
    assert "[RUNTIME]:" in done.stderr and "  Work:" in done.stderr  # one line per phase, on stderr
