"""RaplProvider and read_rapl_zones on powercap sysfs trees built like the kernel lays them out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wattwise.errors import ConfigError
from wattwise.providers.base import Kind, ProviderError, Scope
from wattwise.providers.rapl import RaplProvider, machine_energy_zones, read_rapl_zones

MAX_RANGE_UJ = 262143328850  # the usual value on Intel server and client CPUs


def make_powercap(base: Path, zones: dict[str, tuple[str, int]], max_range_uj: int = MAX_RANGE_UJ) -> Path:
    """Build <base>/devices/virtual/powercap/<type>/<zone>[/<subzone>] directories and the flat
    <base>/class/powercap/<zone> symlinks. `zones` maps zone id -> (name, energy_uj)."""
    devices = base / "devices" / "virtual" / "powercap"
    root = base / "class" / "powercap"
    root.mkdir(parents=True)
    for zone_id in sorted(zones, key=lambda z: z.count(":")):
        name, energy = zones[zone_id]
        control_type, *indices = zone_id.split(":")
        parent = devices / control_type
        if not parent.exists():
            parent.mkdir(parents=True)
            (parent / "enabled").write_text("1\n")
            (root / control_type).symlink_to(parent)
        if len(indices) == 2:
            parent = parent / f"{control_type}:{indices[0]}"
        directory = parent / zone_id
        directory.mkdir()
        (directory / "name").write_text(name + "\n")
        (directory / "energy_uj").write_text(f"{energy}\n")
        (directory / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (directory / "enabled").write_text("1\n")
        (directory / "constraint_0_name").write_text("long_term\n")
        (directory / "constraint_0_power_limit_uw").write_text("165000000\n")
        (root / zone_id).symlink_to(directory)
    return root


TWO_SOCKETS = {
    "intel-rapl:0": ("package-0", 1_000_000),
    "intel-rapl:0:0": ("core", 600_000),
    "intel-rapl:0:1": ("dram", 200_000),
    "intel-rapl:1": ("package-1", 5_000_000),
    "intel-rapl:1:0": ("core", 3_000_000),
    "intel-rapl:1:1": ("dram", 700_000),
}


def set_energy(root: Path, zone_id: str, energy_uj: int) -> None:
    (root / zone_id / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def two_sockets(tmp_path: Path) -> Path:
    return make_powercap(tmp_path, TWO_SOCKETS)


def test_class_attributes_and_no_argument_constructor() -> None:
    provider = RaplProvider()
    assert provider.name == "rapl"
    assert provider.scope is Scope.MACHINE
    assert provider.metric_units == {"rapl_energy_j": "J"}
    assert provider.root == Path("/sys/class/powercap")
    availability = provider.availability()  # real path: must answer, not raise
    if not availability.available:
        assert availability.reason


def test_package_zones_by_default(two_sockets: Path) -> None:
    provider = RaplProvider(root=two_sockets)
    availability = provider.availability()
    assert availability.available, availability.reason
    provider.open()
    specs = provider.specs()
    assert [s.detail for s in specs] == ["package-0", "package-1"]
    assert all(s.name == "rapl_energy_j" and s.unit == "J" and s.kind is Kind.COUNTER for s in specs)
    assert provider.read() == [0.0, 0.0]
    set_energy(two_sockets, "intel-rapl:0", 3_500_000)
    set_energy(two_sockets, "intel-rapl:1", 5_250_000)
    assert provider.read() == [2.5, 0.25]
    set_energy(two_sockets, "intel-rapl:0", 4_000_000)
    assert provider.read() == [3.0, 0.25]
    provider.close()


def test_sub_zones_and_machine_total_without_double_counting(two_sockets: Path) -> None:
    provider = RaplProvider(root=two_sockets, zones=("package", "dram", "core"))
    provider.open()
    details = [s.detail for s in provider.specs()]
    assert details == ["package-0", "package-0/core", "package-0/dram",
                       "package-1", "package-1/core", "package-1/dram"]
    core_spec = provider.specs()[1]
    assert "INCLUDED in the package" in core_spec.description
    total_specs = machine_energy_zones(provider.specs())
    assert [s.detail for s in total_specs] == ["package-0", "package-0/dram", "package-1", "package-1/dram"]

    for zone_id, (_, energy) in TWO_SOCKETS.items():
        set_energy(two_sockets, zone_id, energy + 1_000_000)  # +1 J everywhere
    set_energy(two_sockets, "intel-rapl:0", 1_000_000 + 10_000_000)  # package-0: +10 J
    values = dict(zip(details, provider.read(), strict=True))
    assert values == {"package-0": 10.0, "package-0/core": 1.0, "package-0/dram": 1.0,
                      "package-1": 1.0, "package-1/core": 1.0, "package-1/dram": 1.0}
    machine_j = sum(values[s.detail] for s in total_specs)
    assert machine_j == 13.0  # 10 + 1 (dram) + 1 + 1 (dram); the cores are inside their packages


def test_wrap_around_between_two_reads(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", MAX_RANGE_UJ - 171_150)})
    provider = RaplProvider(root=root)
    provider.open()
    assert provider.read() == [0.0]
    set_energy(root, "intel-rapl:0", MAX_RANGE_UJ - 1_150)  # +170 000 µJ
    assert provider.read() == [0.17]
    set_energy(root, "intel-rapl:0", 500_000)  # wrapped: +1 150 to the top, then +500 000
    assert provider.read() == [0.67115]
    assert provider.wraps() == {"package-0": 1}
    set_energy(root, "intel-rapl:0", 2_500_000)
    assert provider.read() == [2.67115]
    assert provider.wraps() == {"package-0": 1}


def test_wrap_around_uses_each_zones_own_range(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 65_000_000),
                                    "intel-rapl:0:0": ("dram", 65_000_000)}, max_range_uj=65_532_610)
    provider = RaplProvider(root=root, zones=("package", "dram"))
    provider.open()
    set_energy(root, "intel-rapl:0", 467_390)
    set_energy(root, "intel-rapl:0:0", 65_500_000)
    assert provider.read() == [1.0, 0.5]


def test_read_rapl_zones_is_one_stateless_read(two_sockets: Path) -> None:
    zones = read_rapl_zones(two_sockets)
    assert [(z.zone_id, z.detail, z.domain, z.energy_uj) for z in zones] == [
        ("intel-rapl:0", "package-0", "package", 1_000_000),
        ("intel-rapl:0:0", "package-0/core", "core", 600_000),
        ("intel-rapl:0:1", "package-0/dram", "dram", 200_000),
        ("intel-rapl:1", "package-1", "package", 5_000_000),
        ("intel-rapl:1:0", "package-1/core", "core", 3_000_000),
        ("intel-rapl:1:1", "package-1/dram", "dram", 700_000),
    ]
    assert zones[0].energy_j == 1.0
    assert zones[0].max_energy_range_uj == MAX_RANGE_UJ
    assert zones[0].parent_id is None and zones[1].parent_id == "intel-rapl:0"
    assert [z.in_machine_total for z in zones] == [True, False, True, True, False, True]
    assert all(z.error is None for z in zones)
    set_energy(two_sockets, "intel-rapl:0", 7)
    assert read_rapl_zones(two_sockets)[0].energy_uj == 7  # raw counter, no origin kept


def test_laptop_with_psys_and_mmio_duplicate(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {
        "intel-rapl:0": ("package-0", 10_000_000),
        "intel-rapl:0:0": ("core", 4_000_000),
        "intel-rapl:0:1": ("uncore", 1_000_000),
        "intel-rapl:0:2": ("dram", 2_000_000),
        "intel-rapl:1": ("psys", 30_000_000),
        "intel-rapl-mmio:0": ("package-0", 10_000_123),
    })
    zones = read_rapl_zones(root)
    assert [z.detail for z in zones] == ["package-0", "package-0/core", "package-0/uncore",
                                         "package-0/dram", "psys"]
    assert zones[0].zone_id == "intel-rapl:0"  # the MSR interface wins over the MMIO duplicate
    with_duplicates = read_rapl_zones(root, include_duplicates=True)
    assert [z.zone_id for z in with_duplicates][-1] == "intel-rapl-mmio:0"

    provider = RaplProvider(root=root, zones=("all",))
    provider.open()
    assert [s.detail for s in provider.specs()] == [z.detail for z in zones]
    assert [s.detail for s in machine_energy_zones(provider.specs())] == ["package-0", "package-0/dram"]

    psys_only = RaplProvider(root=root, zones=["psys"])
    psys_only.open()
    assert [s.detail for s in psys_only.specs()] == ["psys"]


def test_other_rapl_control_types_are_read(tmp_path: Path) -> None:
    # AMD Zen CPUs appear through the intel-rapl control type with package and core zones; any other
    # "*rapl*" control type is read the same way
    root = make_powercap(tmp_path, {"amd-rapl:0": ("package-0", 42_000_000),
                                    "amd-rapl:0:0": ("core", 40_000_000)})
    zones = read_rapl_zones(root)
    assert [(z.control_type, z.detail) for z in zones] == [("amd-rapl", "package-0"),
                                                          ("amd-rapl", "package-0/core")]


def test_unknown_zone_kind_is_a_user_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown RAPL zone kind.*gpu.*allowed are package, core"):
        RaplProvider(root="/nonexistent", zones=("package", "gpu"))


def test_missing_root_and_empty_root(tmp_path: Path) -> None:
    missing = RaplProvider(root=tmp_path / "powercap").availability()
    assert not missing.available
    assert missing.reason == (f"{tmp_path / 'powercap'} does not exist (no RAPL driver, or not an "
                              f"Intel/AMD CPU)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no RAPL zones" in RaplProvider(root=empty).availability().reason
    with pytest.raises(ProviderError, match="no RAPL zone of kind package"):
        RaplProvider(root=empty).open()


def test_requested_kind_absent(tmp_path: Path) -> None:
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 1)})
    availability = RaplProvider(root=root, zones=("dram",)).availability()
    assert not availability.available
    assert availability.reason == f"no RAPL zone of kind dram under {root} (found: package-0)"


def test_vanished_zone_during_read(two_sockets: Path) -> None:
    provider = RaplProvider(root=two_sockets)
    provider.open()
    (two_sockets / "intel-rapl:1" / "energy_uj").unlink()
    with pytest.raises(ProviderError, match="intel-rapl:1/energy_uj"):
        provider.read()


def test_read_before_open_is_an_error(two_sockets: Path) -> None:
    with pytest.raises(ProviderError, match="before open"):
        RaplProvider(root=two_sockets).read()


_CHILD = """
import os, sys
from wattwise.providers.rapl import RaplProvider, read_rapl_zones
provider = RaplProvider(root=sys.argv[1])
os.setgid(65534)
os.setuid(65534)
availability = provider.availability()
zone = read_rapl_zones(sys.argv[1])[0]
print(availability.available)
print(availability.reason)
print(zone.energy_uj)
print(zone.error)
"""


def test_unreadable_energy_uj_since_linux_5_10() -> None:
    """energy_uj is mode 0400 root:root on Linux >= 5.10: an ordinary user cannot read it."""
    base = Path(tempfile.mkdtemp(prefix="wattwise-rapl-"))
    try:
        os.chmod(base, 0o755)
        root = make_powercap(base, {"intel-rapl:0": ("package-0", 1_000_000),
                                    "intel-rapl:1": ("package-1", 2_000_000)})
        for path in base.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o755)
        energy = root / "intel-rapl:0" / "energy_uj"
        os.chmod(energy, 0o400)
        if os.geteuid() == 0:  # root reads anything: check as user nobody in a child process
            done = subprocess.run([sys.executable, "-c", _CHILD, str(root)], capture_output=True, text=True,
                                  check=True, timeout=60)
            available, reason, energy_uj, error = done.stdout.splitlines()
        else:
            provider = RaplProvider(root=root)
            result = provider.availability()
            zone = read_rapl_zones(root)[0]
            available, reason, energy_uj, error = str(result.available), result.reason, str(zone.energy_uj), \
                str(zone.error)
            with pytest.raises(ProviderError, match="permission denied"):
                provider.open()
        assert available == "False"
        assert reason.startswith(f"{energy}: permission denied (since Linux 5.10 RAPL energy_uj is readable "
                                 f"by root only")
        assert energy_uj == "None"
        assert error == reason
    finally:
        shutil.rmtree(base)
