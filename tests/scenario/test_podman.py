"""Real containers (podman with runc): phases, per-container CPU and network bytes, notes, logs, cleanup."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from wattwise.measure.scenario.runner import RunOptions, run_scenario
from wattwise.store import Store

from .conftest import EXAMPLES, IMAGE, leftovers

pytestmark = [pytest.mark.podman, pytest.mark.slow]
MIB = 1024 * 1024


def joined_logs(store: Store, run_id: int) -> dict[tuple[str, str], str]:
    """(source, stream) -> the texts of its log entries, in order (a step may run several commands)."""
    logs: dict[tuple[str, str], str] = {}
    for entry in store.logs(run_id):
        logs[(entry.source, entry.stream)] = logs.get((entry.source, entry.stream), "") + entry.text
    return logs


def phase(summary: dict, name: str) -> dict:
    return next(p for p in summary["phases"] if p["name"] == name)


def prefixes(store: Store, run_id: int) -> list[str]:
    """The prefix (wattwise-<token>) of everything the run created."""
    return [f"wattwise-{store.get_run(run_id).settings['run_token']}"]


def test_web_scenario_two_containers(store: Store, podman: str) -> None:
    requests = 8
    result = run_scenario(
        store,
        EXAMPLES / "web-busybox" / "usage_scenario.yml",
        RunOptions(variables={"__GMT_VAR_REQUESTS__": str(requests)}, baseline_s=0.3, idle_s=0.3, interval_s=0.05),
    )
    assert result.status == "finished", f"{result.error}\n{result.output}"
    summary = result.summary
    assert [p["name"] for p in summary["phases"]] == [
        "[BASELINE]",
        "[INSTALLATION]",
        "[BOOT]",
        "[IDLE]",
        "[RUNTIME]",
        "Warm-up",
        "Download",
        "Checksum",
        "[REMOVE]",
    ]
    assert phase(summary, "Warm-up")["hidden"] and phase(summary, "Warm-up")["parent"] == "[RUNTIME]"
    assert not phase(summary, "Download")["hidden"]
    runtime = phase(summary, "[RUNTIME]")["services"]
    # [RUNTIME] is made of its visible flow steps (the hidden warm-up is left out), per service too
    visible = [phase(summary, "Download")["services"], phase(summary, "Checksum")["services"]]
    assert runtime["load"]["network_rx_b"] == pytest.approx(sum(v["load"]["network_rx_b"] for v in visible))
    # the load generator received the file `requests` times, the web server sent it
    assert runtime["load"]["network_rx_b"] > 0.9 * requests * MIB
    assert runtime["web"]["network_tx_b"] > 0.9 * requests * MIB
    assert runtime["load"]["network_tx_b"] < 0.5 * MIB
    assert runtime["load"]["cpu_time_s"] > 0 and runtime["web"]["cpu_time_s"] > 0
    assert runtime["web"]["memory_peak_b"] > 0
    boot = phase(summary, "[BOOT]")["services"]
    assert boot["web"]["cpu_time_s"] > 0  # dd of the setup commands ran in the web container
    assert phase(summary, "[BASELINE]")["services"]["web"]["cpu_time_s"] is None
    assert summary["sci"]["R"] == requests and summary["sci"]["R_d"] == "download"

    run = store.get_run(result.run_id)
    assert run.settings["engine"].startswith("podman")
    assert sorted(run.settings["containers"]) == ["load", "web"]
    notes = [(n.source, n.text) for n in store.notes(result.run_id)]
    assert ("Download", "starting the downloads") in notes
    assert ("Download", "downloads done") in notes
    logs = joined_logs(store, result.run_id)
    assert "/www/file.bin" in logs[("Checksum", "stdout")]
    assert "1024+0 records out" in logs[("web setup-commands[1]", "stderr")]
    metrics = {(m.provider, m.name, m.detail) for m in store.metrics(result.run_id)}
    assert {("cgroup", "cgroup_cpu_time_s", "web"), ("network", "network_rx_b", "load")} <= metrics
    assert ("custom", "downloads", "Download") in metrics
    assert leftovers(podman, prefixes(store, result.run_id)) == {"containers": [], "networks": [], "volumes": []}


FEATURES = """\
name: Container features
author: wattwise tests
description: Networks with aliases, volumes, environment, entrypoint, detached and failing commands.
networks:
  front:
  back:
volumes:
  shared:
services:
  store:
    image: {image}
    container_name: keeper
    entrypoint: ["sh", "-c"]
    command: ["echo started; exec sleep 300"]
    environment:
      COLOUR: green
    volumes:
      - shared:/shared
      - ./data:/data:ro
    networks:
      back:
        aliases: [vault]
    setup-commands:
      - command: sh -c 'echo "$COLOUR" > /shared/colour'
      - command: sh -c 'while true; do sleep 1; done'
        detach: true
  api:
    image: {image}
    command: ["httpd", "-f", "-p", "8000", "-h", "/shared"]
    init: true
    volumes:
      - shared:/shared
    networks: [front, back]
    depends_on: [store]
  client:
    image: {image}
    command: sleep 300
    init: true
    networks: [front]
    log-stdout: true
flow:
  - name: Read
    container: keeper
    commands:
      - type: console
        command: cat /data/message.txt /shared/colour
      - type: console
        shell: sh
        shell-options: [-e]
        command: echo "$COLOUR"; false; echo not reached
        ignore-errors: true
  - name: Network
    container: client
    commands:
      - type: console
        command: wget -q -O - http://api:8000/colour
        note: fetching through the front network
      - type: console
        command: "yes"
        detach: true
        log-stdout: false
      - type: console
        shell: sh
        command: sleep 0.3; wget -q -T 1 -O - http://vault:8000/ || echo vault unreachable from front
  - name: Aliases
    container: keeper
    commands:
      - type: console
        command: nslookup vault
      - type: console
        command: wget -q -O - http://api:8000/colour
"""


def test_container_features(store: Store, podman: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "message.txt").write_text("hello from the scenario folder\n")
    path = tmp_path / "usage_scenario.yml"
    path.write_text(FEATURES.replace("{image}", IMAGE))
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True, interval_s=0.05))
    assert result.status == "finished", f"{result.error}\n{result.output}"
    logs = joined_logs(store, result.run_id)
    assert logs[("Read", "stdout")].splitlines() == ["hello from the scenario folder", "green", "green"]
    assert logs[("Network", "stdout")].splitlines()[0] == "green"
    assert "vault unreachable from front" in logs[("Network", "stdout")]
    # the alias on the back network, and api (connected to its second network) seen from there
    assert "Name:\tvault" in logs[("Aliases", "stdout")] and logs[("Aliases", "stdout")].endswith("green\n")
    assert logs[("store", "stdout")] == "started\n"
    run = store.get_run(result.run_id)
    assert any("exited with code 1 (ignore-errors)" in w for w in run.warnings)
    assert ("Network", "fetching through the front network") in [(n.source, n.text) for n in store.notes(result.run_id)]
    network = phase(result.summary, "Network")["services"]
    assert network["client"]["cpu_time_s"] > 0.05  # `yes` ran detached in the client until the flow ended
    assert leftovers(podman, prefixes(store, result.run_id)) == {"containers": [], "networks": [], "volumes": []}


FAILING = """\
name: Failing containers
author: wattwise tests
description: The second step fails.
services:
  a:
    image: {image}
    command: sleep 300
    init: true
  b:
    image: {image}
    command: sleep 300
    init: true
flow:
  - name: Fine
    container: a
    commands:
      - type: console
        command: echo fine
  - name: Broken
    container: b
    commands:
      - type: console
        shell: sh
        command: echo partial output; echo the reason >&2; exit 7
  - name: Never
    container: a
    commands:
      - type: console
        command: echo never
"""


def test_failure_keeps_samples_and_removes_containers(store: Store, podman: str, tmp_path: Path) -> None:
    path = tmp_path / "usage_scenario.yml"
    path.write_text(FAILING.replace("{image}", IMAGE))
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True, interval_s=0.05))
    assert result.status == "failed"
    assert result.exit_code == 7
    assert (
        result.error
        == "flow step 'Broken', command 1 ('echo partial output; echo the reason >&2; exit 7') exited with code 7 in b"
    )
    assert "partial output" in (result.output or "") and "the reason" in (result.output or "")
    assert [p["name"] for p in result.summary["phases"]] == [
        "[INSTALLATION]",
        "[BOOT]",
        "[RUNTIME]",
        "Fine",
        "Broken",
        "[REMOVE]",
    ]
    assert store.sample_count(result.run_id) > 0
    logs = joined_logs(store, result.run_id)
    assert logs[("Broken", "stderr")] == "the reason\n"
    assert leftovers(podman, prefixes(store, result.run_id)) == {"containers": [], "networks": [], "volumes": []}


def test_boot_failures_clean_up(store: Store, podman: str, tmp_path: Path) -> None:
    path = tmp_path / "usage_scenario.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: Unhealthy
            author: wattwise tests
            description: A database that never becomes healthy.
            services:
              db:
                image: {IMAGE}
                command: sleep 300
                init: true
                healthcheck:
                  test: ["CMD-SHELL", "echo still starting; exit 1"]
                  interval: 100ms
                  retries: 2
              app:
                image: {IMAGE}
                depends_on:
                  db:
                    condition: service_healthy
            flow:
              - name: Never
                container: app
                commands:
                  - type: console
                    command: "true"
            """
        )
    )
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True))
    assert result.status == "failed"
    assert result.error == "service db is unhealthy: its healthcheck failed 2 times in a row (2 checks)"
    assert "still starting" in (result.output or "")
    assert [p["name"] for p in result.summary["phases"]] == ["[INSTALLATION]", "[BOOT]", "[REMOVE]"]
    names = subprocess.run([podman, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    assert "-db" not in " ".join(n for n in names.split() if n.startswith("wattwise-"))

    path.write_text(
        path.read_text()
        .replace(IMAGE, "localhost/wattwise-no-such-image:latest", 1)
        .replace("condition: service_healthy", "condition: service_started")
    )
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True))
    assert result.status == "failed"
    assert (result.error or "").startswith(
        "service db: image localhost/wattwise-no-such-image:latest is not on this machine and pulling it failed"
    )
    assert [p["name"] for p in result.summary["phases"]] == ["[INSTALLATION]", "[REMOVE]"]


def test_build_from_the_scenario_folder(store: Store, podman: str, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Containerfile").write_text(
        f'FROM {IMAGE}\nARG GREETING=none\nRUN echo "$GREETING" > /greeting\n'
    )
    path = tmp_path / "usage_scenario.yml"
    path.write_text(
        textwrap.dedent(
            """\
            name: Build
            author: wattwise tests
            description: An image built in [INSTALLATION] and removed in [REMOVE].
            services:
              app:
                build:
                  context: ./app
                  dockerfile: Containerfile
                  args:
                    GREETING: built by wattwise
                command: sleep 300
                init: true
            flow:
              - name: Greet
                container: app
                commands:
                  - type: console
                    command: cat /greeting
            """
        )
    )
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True))
    assert result.status == "finished", f"{result.error}\n{result.output}"
    logs = joined_logs(store, result.run_id)
    assert logs[("Greet", "stdout")] == "built by wattwise\n"
    assert ("app build", "stdout") in logs
    prefix = prefixes(store, result.run_id)[0]
    images = subprocess.run(
        [podman, "images", "--format", "{{.Repository}}"], capture_output=True, text=True, check=True
    ).stdout
    assert prefix not in images


@pytest.mark.parametrize(
    ("name", "sci"),
    [
        ("all-keys.yml", None),
        ("gmt-style.yml", None),
        ("legacy-sci.yml", {"R_d": "API request", "R": 42.0, "R_source": "GMT_SCI_R lines (1)"}),
        ("custom-metrics.yml", {"R": 10.0, "R_d": "request", "R_source": "custom metric requests"}),
        ("depends-healthy.yml", None),
    ],
)
def test_corpus_files_run(store: Store, podman: str, name: str, sci: dict | None) -> None:
    """Valid corpus files run as written (build, internal network, limits, legacy forms, shell images)."""
    from .conftest import CORPUS

    result = run_scenario(store, CORPUS / "valid" / name, RunOptions(dev_no_sleeps=True))
    assert result.status == "finished", f"{result.error}\n{result.output}"
    assert result.summary["sci"] == sci
    assert leftovers(podman, prefixes(store, result.run_id)) == {"containers": [], "networks": [], "volumes": []}


def test_unsafe_options_with_allow_unsafe(store: Store, podman: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("from outside the scenario folder\n")
    folder = tmp_path / "scenario"
    folder.mkdir()
    path = folder / "usage_scenario.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: Unsafe options
            author: wattwise tests
            description: docker-run-args and a host path outside the folder, allowed by --allow-unsafe.
            services:
              app:
                image: {IMAGE}
                command: sleep 300
                init: true
                docker-run-args: ["--cap-add=NET_RAW"]
                volumes:
                  - {outside}:/outside.txt:ro
            flow:
              - name: Use
                container: app
                commands:
                  - type: console
                    command: ping -c 1 127.0.0.1
                  - type: console
                    command: cat /outside.txt
            """
        )
    )
    with pytest.raises(Exception, match="only --allow-unsafe permits"):
        run_scenario(store, path, RunOptions(dev_no_sleeps=True))
    result = run_scenario(store, path, RunOptions(dev_no_sleeps=True, allow_unsafe=True))
    assert result.status == "finished", f"{result.error}\n{result.output}"
    logs = joined_logs(store, result.run_id)
    assert "1 packets received" in logs[("Use", "stdout")]
    assert logs[("Use", "stdout")].endswith("from outside the scenario folder\n")
