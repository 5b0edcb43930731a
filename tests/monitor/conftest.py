"""Helpers of the monitor tests: fixture trees, an exporter on them with a fake clock, promtool."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from wattwise.carbon.live import CachedIntensity, StaticSource
from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
from wattwise.monitor.metadata import OwnerResolver, ProjectMap, UserNames
from wattwise.monitor.node import IpmiPoller, NodeReader
from wattwise.providers.estimate import PowerCurve
from wattwise.providers.ipmi import IpmiDcmiProvider

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "monitor"
IPMI_FIXTURE = ROOT / "tests" / "fixtures" / "providers" / "ipmi" / "ipmitool_power_reading.txt"
T0 = 1_700_000_000.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FixtureRun:
    exporter: MonitorExporter
    root: Path
    name: str
    clock: list[float]

    def advance(self, seconds: float = 10.0) -> None:
        """Move the clock on and make the tree look like its `after/` state."""
        shutil.copytree(FIXTURES / self.name / "after", self.root, dirs_exist_ok=True)
        self.clock[0] += seconds

    def scrape(self) -> str:
        return self.exporter.scrape()


def open_fixture(name: str, tmp_path: Path, *, ipmi: bool = False, pue: float = 1.2,
                 country: str = "FR") -> FixtureRun:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name / "before", root)
    clock = [T0]
    config = ExporterConfig(mountinfo=root / "mountinfo", cgroup_root=root / "cgroup",
                            powercap_root=root / "powercap", proc_root=root / "proc", hostname="node01",
                            pue=pue)
    node = NodeReader(config.proc_root, config.powercap_root)
    if ipmi:
        poller = IpmiPoller(IpmiDcmiProvider(command=["cat", str(IPMI_FIXTURE)]), interval_s=3600)
        poller.poll_once()
        node.ipmi = poller
    owners = OwnerResolver(config.proc_root, ProjectMap.load(root / "projects.yml"), UserNames(root / "passwd"))
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country(country)), node=node,
                               owners=owners, power_curve=PowerCurve.from_tdp(200.0, "test"),
                               clock=lambda: clock[0])
    exporter.open()
    return FixtureRun(exporter, root, name, clock)


@pytest.fixture
def fixture_run(tmp_path: Path) -> Callable[..., FixtureRun]:
    def make(name: str, **kwargs: object) -> FixtureRun:
        return open_fixture(name, tmp_path, **kwargs)  # type: ignore[arg-type]

    return make


def promtool() -> str | None:
    return shutil.which("promtool")


def check_metrics(text: str) -> None:
    """`promtool check metrics` must accept the exposition (lint included)."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool check metrics failed:\n{done.stdout}\n{done.stderr}"


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(metric name, labels): value} from exposition text, with a small parser independent of ours."""
    import re

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def unit_values(text: str, metric: str) -> dict[str, float]:
    """{'manager/unit': value} of one unit metric."""
    result = {}
    for (name, labels), value in parse_samples(text).items():
        if name == metric:
            d = dict(labels)
            result[f"{d['manager']}/{d['unit']}"] = value
    return result


def unit_labels(text: str) -> dict[str, dict[str, str]]:
    result = {}
    for (name, labels), _ in parse_samples(text).items():
        if name == "wattwise_unit_energy_joules_total":
            d = dict(labels)
            result[f"{d['manager']}/{d['unit']}"] = d
    return result


def start_prometheus(base: Path, config_text: str, *, extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """Start the Debian prometheus on a free loopback port with `config_text` and storage under `base`;
    returns (process, base URL) once it is ready. Skips the test when prometheus is not installed."""
    import time

    import httpx

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the Debian prometheus package is not installed (scripts/test-packages.txt)")
    port = free_port()
    config = base / "prometheus.yml"
    config.write_text(config_text)
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}: "
                                 f"{process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("prometheus was not ready within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
