"""The engine command lines: detection, and the argument lists given to a docker-compatible CLI.

Docker's daemon is not available here, so a recording stand-in named `docker` checks the argument lists
(podman itself is exercised by test_podman.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wattwise.errors import WattwiseError
from wattwise.measure.scenario.engine import ContainerEngine, ContainerSpec, EngineError

RECORDER = """#!/bin/sh
printf '%s\\n' "$@" > "{log}"
echo ---- >> "{log}"
[ "$1" = --log-level ] && shift 2
case "$1" in
  version) echo 28.0.0 ;;
  create) echo 0123456789abcdef ;;
  broken) echo "something failed" >&2; exit 3 ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "args.txt"
    binary = tmp_path / "bin" / "docker"
    binary.parent.mkdir()
    binary.write_text(RECORDER.format(log=log))
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WATTWISE_DOCKER_ARGS", "--log-level error")
    return log


def recorded(log: Path) -> list[str]:
    return log.read_text().split("\n----\n")[0].splitlines()


def test_detect_docker_with_its_global_args(fake_docker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTWISE_CONTAINER_ENGINE", "docker")
    engine = ContainerEngine.detect()
    assert engine.kind == "docker" and engine.global_args == ["--log-level", "error"]
    assert engine.version() == "28.0.0"
    assert recorded(fake_docker) == ["--log-level", "error", "version", "--format", "{{.Client.Version}}"]


def test_create_argument_list(fake_docker: Path) -> None:
    engine = ContainerEngine.detect("docker")
    spec = ContainerSpec(
        name="wattwise-abc-web",
        image="localhost/img:1",
        args=["-c", "echo $HOME; rm -rf /"],
        entrypoint="/bin/sh",
        environment={"A": "x y", "B": "$(whoami)"},
        labels={"io.wattwise.run": "abc"},
        network="wattwise-abc-default",
        aliases=["web", "www"],
        hostname="web",
        mounts=["/data:/data:ro"],
        memory="256m",
        cpus="0.5",
        init=True,
    )
    assert engine.create(spec) == "0123456789abcdef"
    assert recorded(fake_docker)[2:] == [
        "create",
        "--name",
        "wattwise-abc-web",
        "--label",
        "io.wattwise.run=abc",
        "--env",
        "A=x y",
        "--env",
        "B=$(whoami)",
        "--network",
        "wattwise-abc-default",
        "--network-alias",
        "web",
        "--network-alias",
        "www",
        "--hostname",
        "web",
        "--volume",
        "/data:/data:ro",
        "--memory",
        "256m",
        "--cpus",
        "0.5",
        "--init",
        "--interactive",
        "--tty",
        "--entrypoint",
        "/bin/sh",
        "localhost/img:1",
        "-c",
        "echo $HOME; rm -rf /",
    ]
    engine.remove_containers(["a", "b"])
    assert recorded(fake_docker)[2:] == ["rm", "-f", "a", "b"]  # docker's rm -f kills at once
    engine.network_connect("net", "c", ["x"])
    assert recorded(fake_docker)[2:] == ["network", "connect", "--alias", "x", "net", "c"]


def test_failures_carry_the_output(fake_docker: Path) -> None:
    engine = ContainerEngine.detect("docker")
    with pytest.raises(EngineError, match=r"docker broken failed \(exit 3\): something failed"):
        engine.run("broken")


def test_missing_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WattwiseError, match="container engine 'no-such-engine' not found"):
        ContainerEngine.detect("no-such-engine")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("WATTWISE_CONTAINER_ENGINE", raising=False)
    with pytest.raises(WattwiseError, match="no container engine found: install podman"):
        ContainerEngine.detect()
