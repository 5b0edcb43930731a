"""Fixtures of the scenario tests: a fresh SQLite store per test, podman with the local busybox image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from wattwise.store import Store

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "scenarios"
EXAMPLES = REPO / "examples"
IMAGE = "localhost/wattwise-busybox:latest"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'wattwise.db'}")
    yield store
    store.close()


@pytest.fixture(scope="session")
def podman() -> str:
    """The podman binary, with the local test image in place (built by scripts/services.d/podman.sh)."""
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman is not installed (scripts/test-services.sh installs it from scripts/test-packages.txt)")
    exists = subprocess.run([binary, "image", "exists", IMAGE], check=False)
    if exists.returncode != 0:
        subprocess.run(["bash", str(REPO / "scripts" / "services.d" / "podman.sh")], check=True)
    return binary


@pytest.fixture
def needs_cgroups() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")


def leftovers(podman: str, token_names: list[str]) -> dict[str, list[str]]:
    """Containers, networks and volumes whose names contain any of the given run prefixes."""
    found: dict[str, list[str]] = {}
    for what, args in (
        ("containers", ["ps", "-a", "--format", "{{.Names}}"]),
        ("networks", ["network", "ls", "--format", "{{.Name}}"]),
        ("volumes", ["volume", "ls", "--format", "{{.Name}}"]),
    ):
        out = subprocess.run([podman, *args], capture_output=True, text=True, check=True).stdout.split()
        found[what] = [name for name in out if any(token in name for token in token_names)]
    return found
