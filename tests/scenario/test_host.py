"""The host backend: services as host processes, each in its own cgroup, measured phase by phase."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from wattwise.measure.scenario.runner import RunOptions, run_scenario
from wattwise.providers.cgroup import CgroupMounts
from wattwise.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "host-training" / "usage_scenario.yml"
pytestmark = [pytest.mark.cgroups, pytest.mark.usefixtures("needs_cgroups")]


def joined_logs(store: Store, run_id: int) -> dict[tuple[str, str], str]:
    """(source, stream) -> the texts of its log entries, in order (a step may run several commands)."""
    logs: dict[tuple[str, str], str] = {}
    for entry in store.logs(run_id):
        logs[(entry.source, entry.stream)] = logs.get((entry.source, entry.stream), "") + entry.text
    return logs


def phase(summary: dict, name: str) -> dict:
    return next(p for p in summary["phases"] if p["name"] == name)


def scenario_dirs(token_part: str) -> list[Path]:
    mounts = CgroupMounts.from_mountinfo()
    roots = [m.mount_point / "wattwise" for m in mounts.v1.values()]
    if mounts.v2:
        roots.append(mounts.v2.mount_point / "wattwise")
    return [d for root in roots if root.is_dir() for d in root.iterdir() if token_part in d.name]


def test_host_training_example(store: Store) -> None:
    result = run_scenario(store, EXAMPLE, RunOptions(backend="host", dev_no_sleeps=True, interval_s=0.05))
    assert result.status == "finished", result.error
    summary = result.summary
    names = [p["name"] for p in summary["phases"]]
    assert names == ["[INSTALLATION]", "[BOOT]", "[RUNTIME]", "Train", "Report", "[REMOVE]"]
    train = phase(summary, "Train")
    assert train["parent"] == "[RUNTIME]" and not train["hidden"]
    assert train["services"]["trainer"]["cpu_time_s"] > 0.05
    assert train["services"]["trainer"]["network_rx_b"] is None  # host processes share the machine's
    assert train["unit_cpu_time_s"] >= train["services"]["trainer"]["cpu_time_s"]
    assert summary["backend"] == "host"
    assert summary["sci"]["R"] == 60000 and summary["sci"]["R_d"] == "sample"

    run = store.get_run(result.run_id)
    assert run.kind == "scenario" and "Tiny training job" in run.scenario
    assert run.settings["sci"]["R"] == 60000
    notes = [(n.source, n.text) for n in store.notes(result.run_id)]
    assert ("Train", "training starts") in notes
    assert any(text.startswith("epoch 3 loss") for source, text in notes if source == "Train")
    assert any(text.startswith("heartbeat") for source, text in notes if source == "heartbeat")
    logs = joined_logs(store, result.run_id)
    assert "w=3.0" in logs[("Train", "stdout")]
    assert "python 3." in logs[("Report", "stdout")]
    assert "heartbeat 1" in logs[("heartbeat", "stdout")]
    assert "python ok" in logs[("trainer setup-commands[0]", "stdout")]
    custom = [m for m in store.metrics(result.run_id) if m.provider == "custom"]
    assert [(m.name, m.unit, m.detail) for m in custom] == [("samples", "sample", "Train")]
    t_us, values = store.samples(custom[0].id)
    assert list(values) == [20000.0, 20000.0, 20000.0]
    assert train["start_us"] <= t_us[0] <= t_us[-1] <= train["end_us"]
    assert store.get_run(result.run_id).results["phases"][0]["name"] == "[INSTALLATION]"


FAILING = """\
name: Failing on the host
author: wattwise tests
description: The second step fails; the third never runs.
x-wattwise:
  backend: host
services:
  worker:
    environment:
      GREETING: hello from the environment
  sleeper:
    command: ["sleep", "301.25"]
flow:
  - name: Greet
    container: worker
    commands:
      - type: console
        command: sh -c 'echo "$GREETING"'
      - type: console
        command: sh -c 'exit 9'
        ignore-errors: true
      - type: console
        command: sleep 302.5
        detach: true
  - name: Break
    container: worker
    commands:
      - type: console
        shell: sh
        command: echo about to fail; echo failure details >&2; exit 4
  - name: Never
    container: worker
    commands:
      - type: console
        command: echo never
"""


def test_failing_step_fails_the_run_and_cleans_up(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "usage_scenario.yml"
    path.write_text(FAILING)
    result = run_scenario(store, path, RunOptions(backend="host", baseline_s=0.2, idle_s=0.2))
    assert result.status == "failed"
    assert result.exit_code == 4
    assert "flow step 'Break'" in (result.error or "") and "exited with code 4" in (result.error or "")
    assert "about to fail" in (result.output or "") and "failure details" in (result.output or "")
    names = [p["name"] for p in result.summary["phases"]]
    assert names == ["[BASELINE]", "[INSTALLATION]", "[BOOT]", "[IDLE]", "[RUNTIME]", "Greet", "Break", "[REMOVE]"]
    run = store.get_run(result.run_id)
    assert run.status == "failed" and run.exit_code == 4
    assert any("exited with code 9 (ignore-errors)" in w for w in run.warnings)
    logs = joined_logs(store, result.run_id)
    assert logs[("Greet", "stdout")] == "hello from the environment\n"
    assert "failure details" in logs[("Break", "stderr")]
    # every process and cgroup of the run is gone
    assert scenario_dirs(store.get_run(result.run_id).settings["run_token"]) == []
    for line in os.popen("ps -eo args").read().splitlines():
        assert line.strip() not in ("sleep 301.25", "sleep 302.5")


def test_timeout_and_unhealthy_service(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "usage_scenario.yml"
    path.write_text(
        textwrap.dedent(
            """\
            name: Slow
            author: wattwise tests
            description: A command that takes too long.
            x-wattwise: {backend: host}
            services:
              app: {}
            flow:
              - name: Slow
                container: app
                commands:
                  - type: console
                    shell: sh
                    command: echo waiting; exec sleep 30
            """
        )
    )
    result = run_scenario(store, path, RunOptions(backend="host", dev_no_sleeps=True, command_timeout_s=0.5))
    assert result.status == "failed"
    assert "did not finish within 0.5 s" in (result.error or "")
    assert joined_logs(store, result.run_id)[("Slow", "stdout")] == "waiting\n"  # kept though it was stopped

    path.write_text(
        textwrap.dedent(
            """\
            name: Unhealthy
            author: wattwise tests
            description: A dependency that never becomes healthy.
            x-wattwise: {backend: host}
            services:
              db:
                command: ["sleep", "30"]
                healthcheck:
                  test: ["CMD", "sh", "-c", "echo not yet; exit 1"]
                  interval: 50ms
                  retries: 3
              app:
                depends_on:
                  db: {condition: service_healthy}
            flow:
              - name: Never
                container: app
                commands:
                  - type: console
                    command: "true"
            """
        )
    )
    result = run_scenario(store, path, RunOptions(backend="host", dev_no_sleeps=True))
    assert result.status == "failed"
    assert result.error == "service db is unhealthy: its healthcheck failed 3 times in a row (3 checks)"
    assert "not yet" in (result.output or "")
    assert [p["name"] for p in result.summary["phases"]] == ["[INSTALLATION]", "[BOOT]", "[REMOVE]"]
    assert scenario_dirs(store.get_run(result.run_id).settings["run_token"]) == []


def test_healthy_dependency_and_legacy_sci(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "usage_scenario.yml"
    (tmp_path / "ready").write_text("")
    path.write_text(
        textwrap.dedent(
            """\
            name: Healthy
            author: wattwise tests
            description: Waits for a healthcheck, counts GMT_SCI_R lines.
            x-wattwise: {backend: host}
            sci:
              R_d: request
            services:
              db:
                command: ["sleep", "30"]
                healthcheck:
                  test: test -e ready
                  interval: 50ms
              app:
                depends_on:
                  db: {condition: service_healthy}
            flow:
              - name: Requests
                container: app
                commands:
                  - type: console
                    shell: sh
                    command: echo GMT_SCI_R=3; echo GMT_SCI_R=4
            """
        )
    )
    result = run_scenario(store, path, RunOptions(backend="host", dev_no_sleeps=True))
    assert result.status == "finished", result.error
    assert result.summary["sci"] == {"R_d": "request", "R": 7.0, "R_source": "GMT_SCI_R lines (2)"}


CANCELLABLE = """\
name: Cancelled on the host
author: wattwise tests
description: A long step that the caller cancels (as a cluster client does when its lease is lost).
x-wattwise:
  backend: host
services:
  worker: {}
flow:
  - name: Long
    container: worker
    commands:
      - type: console
        command: sleep 303.75
"""


@pytest.mark.parametrize("when_s", [0.3, 2.0], ids=["during-baseline", "during-a-step"])
def test_cancel_stops_the_run_and_cleans_up(store: Store, tmp_path: Path, when_s: float) -> None:
    import threading

    path = tmp_path / "usage_scenario.yml"
    path.write_text(CANCELLABLE)
    cancel = threading.Event()
    timer = threading.Timer(when_s, cancel.set)
    timer.start()
    result = run_scenario(store, path, RunOptions(backend="host", baseline_s=1.0, idle_s=0.2, cancel=cancel))
    timer.cancel()
    assert result.status == "failed" and "cancelled" in (result.error or "")
    names = [p["name"] for p in result.summary["phases"]]
    assert names[-1] == "[REMOVE]"
    assert ("Long" in names) == (when_s > 1.5)
    assert scenario_dirs(store.get_run(result.run_id).settings["run_token"]) == []
    for line in os.popen("ps -eo args").read().splitlines():
        assert line.strip() != "sleep 303.75"
