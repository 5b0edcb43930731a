from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.providers.base import ProviderError
from wattwise.providers.network import NetworkProvider, read_net_dev
from wattwise.providers.procstat import USER_HZ, CpuUtilizationProvider, read_cpu_times, utilization_between

STAT = """cpu  {user} 0 {system} {idle} 0 0 0 0 0 0
cpu0 1 0 1 1 0 0 0 0 0 0
cpu1 1 0 1 1 0 0 0 0 0 0
intr 1
"""


def write_stat(root: Path, user: int, system: int, idle: int) -> None:
    (root / "stat").write_text(STAT.format(user=user, system=system, idle=idle))


def test_cpu_times_and_utilization(tmp_path: Path) -> None:
    write_stat(tmp_path, 100, 50, 850)
    before = read_cpu_times(tmp_path)
    assert before.cpu_count == 2
    assert before.busy_s == pytest.approx(150 / USER_HZ)
    write_stat(tmp_path, 160, 90, 900)  # +100 busy, +50 idle
    after = read_cpu_times(tmp_path)
    assert utilization_between(before, after) == pytest.approx(100 / 150)


def test_cpu_provider_counts_busy_seconds_from_open(tmp_path: Path) -> None:
    write_stat(tmp_path, 100, 0, 100)
    provider = CpuUtilizationProvider(proc_root=tmp_path)
    assert provider.availability().available
    provider.open()
    write_stat(tmp_path, 100 + USER_HZ, 0, 100 + USER_HZ)
    utilization, busy_s = provider.read()
    assert utilization == pytest.approx(0.5)
    assert busy_s == pytest.approx(1.0)


def test_cpu_provider_unavailable_says_why(tmp_path: Path) -> None:
    availability = CpuUtilizationProvider(proc_root=tmp_path).availability()
    assert not availability.available
    assert "stat" in availability.reason


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   1000     10    0    0    0     0          0         0    1000     10    0    0    0     0       0          0
  eth0: {rx}     20    0    0    0     0          0         0    {tx}      30    0    0    0     0       0          0
  eth1: 5     1    0    0    0     0          0         0    7      1    0    0    0     0       0          0
"""


def test_net_dev_sums_interfaces_without_loopback(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    path.write_text(NET_DEV.format(rx=2000, tx=3000))
    assert read_net_dev(path) == (2005, 3007)
    assert read_net_dev(path, include_loopback=True) == (3005, 4007)


def test_net_dev_garbage_names_line(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    path.write_text("header\nheader\n  eth0: 1 2 3\n")
    with pytest.raises(ProviderError, match=r"dev:3"):
        read_net_dev(path)


def test_network_provider_counts_from_open(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    dev = tmp_path / "net" / "dev"
    dev.write_text(NET_DEV.format(rx=2000, tx=3000))
    provider = NetworkProvider(proc_root=tmp_path)
    provider.open()
    dev.write_text(NET_DEV.format(rx=2500, tx=3100))
    assert list(provider.read()) == [500.0, 100.0]


def test_network_of_real_namespace() -> None:
    provider = NetworkProvider(pid=1, label="init")
    assert provider.availability().available
    provider.open()
    rx, tx = provider.read()
    assert rx is not None and rx >= 0 and tx is not None and tx >= 0
