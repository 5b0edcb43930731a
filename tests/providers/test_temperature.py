"""hwmon and `sensors -j` temperature providers on sysfs trees and recorded lm-sensors outputs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from wattwise.providers.base import Kind, ProviderError, Scope
from wattwise.providers.ipmi import CommandResult
from wattwise.providers.temperature import (
    HwmonTemperatureProvider,
    SensorsTemperatureProvider,
    TemperatureReading,
    parse_sensors_json,
    read_hwmon_temperatures,
    read_sensors_temperatures,
    read_temperature_c,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "sensors"

Chip = tuple[int, str, str, dict[int, tuple[str | None, str]]]  # hwmon index, device path, name, inputs


def make_hwmon(base: Path, chips: list[Chip]) -> Path:
    """Build <base>/devices/<device>/hwmon/hwmonN with name, tempK_input (millidegrees) and
    tempK_label files, a `device` symlink back to the device, and the <base>/class/hwmon/hwmonN link."""
    root = base / "class" / "hwmon"
    root.mkdir(parents=True)
    for index, device_path, name, inputs in chips:
        device = base / "devices" / device_path
        directory = device / "hwmon" / f"hwmon{index}"
        directory.mkdir(parents=True)
        (directory / "name").write_text(name + "\n")
        (directory / "device").symlink_to(device)
        for k, (label, value) in inputs.items():
            (directory / f"temp{k}_input").write_text(value + "\n")
            (directory / f"temp{k}_max").write_text("100000\n")
            if label is not None:
                (directory / f"temp{k}_label").write_text(label + "\n")
        (root / f"hwmon{index}").symlink_to(directory)
    return root


SERVER: list[Chip] = [
    (0, "virtual/thermal/thermal_zone0", "acpitz", {1: (None, "27800")}),
    (1, "pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0", "nvme",
     {1: ("Composite", "38850"), 2: ("Sensor 1", "38850"), 3: ("Sensor 2", "44850")}),
    (2, "platform/coretemp.0", "coretemp",
     {1: ("Package id 0", "54000"), 2: ("Core 0", "51000"), 3: ("Core 1", "53000")}),
    (3, "platform/coretemp.1", "coretemp",
     {1: ("Package id 1", "61000"), 2: ("Core 0", "58000"), 3: ("Core 1", "60000")}),
]


@pytest.fixture
def server(tmp_path: Path) -> Path:
    return make_hwmon(tmp_path, SERVER)


def test_class_attributes_and_no_argument_constructors() -> None:
    for cls, name in ((HwmonTemperatureProvider, "hwmon"), (SensorsTemperatureProvider, "sensors")):
        provider = cls()
        assert provider.name == name
        assert provider.scope is Scope.MACHINE
        assert provider.default_interval_s == 1.0
        assert provider.metric_units == {"temperature_c": "degC"}
        availability = provider.availability()  # real paths: must answer, not raise
        if not availability.available:
            assert availability.reason


# --- hwmon ---------------------------------------------------------------------------------------


def test_hwmon_all_sensors(server: Path) -> None:
    provider = HwmonTemperatureProvider(root=server)
    assert provider.availability().available
    provider.open()
    specs = provider.specs()
    assert all((s.name, s.unit, s.kind) == ("temperature_c", "degC", Kind.GAUGE) for s in specs)
    assert [s.detail for s in specs] == [
        "acpitz/temp1",
        "nvme/Composite", "nvme/Sensor 1", "nvme/Sensor 2",
        "coretemp@coretemp.0/Package id 0", "coretemp@coretemp.0/Core 0", "coretemp@coretemp.0/Core 1",
        "coretemp@coretemp.1/Package id 1", "coretemp@coretemp.1/Core 0", "coretemp@coretemp.1/Core 1",
    ]
    assert provider.read() == [27.8, 38.85, 38.85, 44.85, 54.0, 51.0, 53.0, 61.0, 58.0, 60.0]
    (server / "hwmon2" / "temp1_input").write_text("71500\n")
    assert provider.read()[4] == 71.5
    provider.close()


def test_hwmon_filters(server: Path) -> None:
    provider = HwmonTemperatureProvider(root=server, chips="coretemp", features=["Package id *"])
    provider.open()
    assert [s.detail for s in provider.specs()] == ["coretemp@coretemp.0/Package id 0",
                                                     "coretemp@coretemp.1/Package id 1"]
    assert provider.read() == [54.0, 61.0]
    one_socket = HwmonTemperatureProvider(root=server, chips="coretemp@coretemp.1", features="Core*")
    one_socket.open()
    assert one_socket.read() == [58.0, 60.0]
    by_file_name = HwmonTemperatureProvider(root=server, chips="acpitz", features="temp1")
    by_file_name.open()
    assert by_file_name.read() == [27.8]


def test_hwmon_unreadable_sensor_gives_none(server: Path) -> None:
    provider = HwmonTemperatureProvider(root=server, chips="nvme")
    provider.open()
    (server / "hwmon1" / "temp2_input").unlink()  # e.g. the drive was removed
    (server / "hwmon1" / "temp3_input").write_text("garbage\n")
    assert provider.read() == [38.85, None, None]


def test_hwmon_old_layout_and_duplicate_labels(tmp_path: Path) -> None:
    root = tmp_path / "hwmon"
    old = root / "hwmon0" / "device"  # kernels before 3.x: attributes under device/
    old.mkdir(parents=True)
    (old / "name").write_text("k8temp\n")
    (old / "temp1_input").write_text("45000\n")
    (old / "temp1_label").write_text("Core0 Temp\n")
    (old / "temp2_input").write_text("47000\n")
    (old / "temp2_label").write_text("Core0 Temp\n")
    readings = read_hwmon_temperatures(root)
    assert readings == [
        TemperatureReading("k8temp", "Core0 Temp (temp1)", 45.0, str(old / "temp1_input")),
        TemperatureReading("k8temp", "Core0 Temp (temp2)", 47.0, str(old / "temp2_input")),
    ]


def test_hwmon_unavailable(tmp_path: Path, server: Path) -> None:
    missing = HwmonTemperatureProvider(root=tmp_path / "nothing").availability()
    assert missing.reason == f"{tmp_path / 'nothing'} does not exist (no hwmon drivers, or /sys not mounted)"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert HwmonTemperatureProvider(root=empty).availability().reason.startswith(
        f"no temperature sensor under {empty}")
    no_match = HwmonTemperatureProvider(root=server, chips="k10temp", features="Tctl")
    assert no_match.availability().reason == ("no hwmon temperature sensor matches chips=k10temp "
                                              "features=Tctl")
    with pytest.raises(ProviderError, match="no hwmon temperature sensor under"):
        no_match.open()


# --- sensors -j ----------------------------------------------------------------------------------


def recorded(name: str, returncode: int = 0):
    text = (FIXTURES / name).read_text()
    if returncode == 0:
        return lambda command: CommandResult(0, text, "")
    return lambda command: CommandResult(returncode, "", text)


def test_parse_sensors_json_reads_only_temperature_inputs() -> None:
    readings = parse_sensors_json((FIXTURES / "sensors_j_intel.json").read_text())
    assert [(r.detail, r.value_c) for r in readings] == [
        ("iwlwifi_1-virtual-0/temp1", 41.0),
        ("coretemp-isa-0000/Package id 0", 54.0),
        ("coretemp-isa-0000/Core 0", 51.0),
        ("coretemp-isa-0000/Core 1", 53.0),
        ("coretemp-isa-0000/Core 2", 50.0),
        ("coretemp-isa-0000/Core 3", 52.0),
        ("acpitz-acpi-0/temp1", 27.8),
        ("nvme-pci-0100/Composite", 38.85),
        ("nvme-pci-0100/Sensor 1", 38.85),
        ("nvme-pci-0100/Sensor 2", 44.85),
        ("thinkpad-isa-0000/CPU", 54.0),
        ("thinkpad-isa-0000/temp3", 0.0),
    ]


def test_sensors_provider_amd_with_filters() -> None:
    provider = SensorsTemperatureProvider(chips=["k10temp", "amdgpu-pci-0300"],
                                          runner=recorded("sensors_j_amd.json"))
    assert provider.availability().reason == "6 temperature sensors"
    provider.open()
    assert [s.detail for s in provider.specs()] == [
        "k10temp-pci-00c3/Tctl", "k10temp-pci-00c3/Tccd1", "k10temp-pci-00c3/Tccd2",
        "amdgpu-pci-0300/edge", "amdgpu-pci-0300/junction", "amdgpu-pci-0300/mem"]
    assert provider.read() == [62.625, 58.25, 55.5, 47.0, 49.0, 50.0]
    amd = recorded("sensors_j_amd.json")
    tctl = SensorsTemperatureProvider(chips="k10temp-*", features="Tctl", runner=amd)
    tctl.open()
    assert tctl.read() == [62.625]


def test_sensors_provider_runs_the_command() -> None:
    path = FIXTURES / "sensors_j_intel.json"
    provider = SensorsTemperatureProvider(command=["cat", str(path)], chips="coretemp", features="Package*")
    provider.open()
    assert [s.detail for s in provider.specs()] == ["coretemp-isa-0000/Package id 0"]
    assert provider.read() == [54.0]


def test_sensors_chip_disappearing_gives_none() -> None:
    outputs = [(FIXTURES / "sensors_j_intel.json").read_text()]
    provider = SensorsTemperatureProvider(chips=["nvme", "acpitz"],
                                          runner=lambda command: CommandResult(0, outputs[0]))
    provider.open()
    assert provider.read() == [27.8, 38.85, 38.85, 44.85]
    outputs[0] = '{"acpitz-acpi-0": {"Adapter": "ACPI interface", "temp1": {"temp1_input": 30.000}}}'
    assert provider.read() == [30.0, None, None, None]


def test_sensors_no_sensors_found_and_broken_output() -> None:
    no_chips = FIXTURES / "sensors_no_sensors.stderr"
    script = f"cat {shlex.quote(str(no_chips))} >&2; exit 1"
    provider = SensorsTemperatureProvider(command=["sh", "-c", script])
    assert provider.availability().reason == f"sh -c {script} failed: No sensors found!"
    broken = SensorsTemperatureProvider(runner=recorded("sensors_j_truncated.json"))
    reason = broken.availability().reason
    assert reason.startswith("sensors -j output is not JSON (")
    assert '"coretemp-isa-0000"' in reason
    with pytest.raises(ProviderError, match="not a JSON object"):
        parse_sensors_json("[1, 2]")
    missing = SensorsTemperatureProvider(command=["/nonexistent/sensors", "-j"]).availability()
    assert missing.reason == "/nonexistent/sensors: command not found (install the lm-sensors package)"


# --- one-off reads -----------------------------------------------------------------------------


def test_read_temperature_c_from_either_source(server: Path, tmp_path: Path) -> None:
    amd = recorded("sensors_j_amd.json")
    assert read_temperature_c("coretemp", "Package id *", source="hwmon", hwmon_root=server) == 61.0
    assert read_temperature_c("nvme", hwmon_root=server) == 44.85  # auto: hwmon has it
    assert read_temperature_c("k10temp", "Tctl", source="sensors", runner=amd) == 62.625
    # auto: nothing under the hwmon root, so sensors -j answers
    assert read_temperature_c("k10temp", "Tccd*", hwmon_root=tmp_path / "none", runner=amd) == 58.25
    with pytest.raises(ProviderError, match="no readable temperature for chips=k10temp"):
        read_temperature_c("k10temp", source="hwmon", hwmon_root=server)
    with pytest.raises(ProviderError, match="unknown temperature source 'ipmi'"):
        read_temperature_c("coretemp", source="ipmi")
    assert [r.value_c for r in read_sensors_temperatures(chips="nvme-pci-0100", runner=amd)] == [41.85]
