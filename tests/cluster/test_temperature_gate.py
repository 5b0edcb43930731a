"""The temperature gate on hwmon fixture trees and a recorded `sensors -j` output (this machine has no sensors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.cluster.config import TemperatureSettings
from wattwise.cluster.temperature import TemperatureGate, busy_warmup

SENSORS_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "sensors" / "sensors_j_intel.json"


def hwmon_tree(base: Path, package_mdeg: int) -> tuple[Path, Path]:
    """<base>/class/hwmon/hwmon0 → a coretemp chip with 'Package id 0' and 'Core 0' (millidegrees)."""
    device = base / "devices" / "platform" / "coretemp.0" / "hwmon" / "hwmon0"
    device.mkdir(parents=True)
    (device / "name").write_text("coretemp\n")
    (device / "temp1_label").write_text("Package id 0\n")
    (device / "temp1_input").write_text(f"{package_mdeg}\n")
    (device / "temp2_label").write_text("Core 0\n")
    (device / "temp2_input").write_text("20000\n")
    root = base / "class" / "hwmon"
    root.mkdir(parents=True)
    (root / "hwmon0").symlink_to(device)
    return root, device / "temp1_input"


def settings(root: Path, **kw: object) -> TemperatureSettings:
    values: dict[str, object] = {
        "chip": ["coretemp"], "feature": ["Package id *"], "source": "hwmon", "hwmon_root": str(root),
        "warmup_margin_c": 10.0, "cooldown_wait_s": 30.0, "warmup_s": 20.0, "max_tries": 5,
    }
    values.update(kw)
    return TemperatureSettings(**values)  # type: ignore[arg-type]


def test_cools_down_until_at_base_temperature(tmp_path: Path) -> None:
    root, package = hwmon_tree(tmp_path, 52000)
    sleeps: list[float] = []
    reports: list[tuple[str, float | None]] = []

    def cool(seconds: float) -> None:  # the machine cools by 4 °C while we wait
        sleeps.append(seconds)
        package.write_text(f"{int(package.read_text()) - 4000}\n")

    gate = TemperatureGate(settings(root), sleep=cool, warm=lambda s: pytest.fail("no warm-up expected"),
                           report=lambda status, t, message: reports.append((status, t)))
    result = gate.check(45.0)
    assert result.ok and result.temperature_c == 44.0 and result.tries == 3
    assert sleeps == [30.0, 30.0]
    assert reports == [("cooldown", 52.0), ("cooldown", 48.0), ("ok", 44.0)]


def test_warms_up_when_far_below(tmp_path: Path) -> None:
    root, package = hwmon_tree(tmp_path, 30000)
    warmed: list[float] = []

    def warm(seconds: float) -> None:
        warmed.append(seconds)
        package.write_text(f"{int(package.read_text()) + 3000}\n")

    result = TemperatureGate(settings(root), sleep=lambda s: None, warm=warm).check(45.0)
    assert result.ok and result.temperature_c == 36.0 and warmed == [20.0, 20.0]
    assert "within [35.0, 45.0]" in result.message


def test_gives_up_after_max_tries(tmp_path: Path) -> None:
    root, _ = hwmon_tree(tmp_path, 60000)
    sleeps: list[float] = []
    result = TemperatureGate(settings(root, max_tries=3), sleep=sleeps.append).check(45.0)
    assert not result.ok and result.tries == 3 and len(sleeps) == 2  # no pointless wait after the last try
    assert result.message == "gave up after 3 tries: 60.0°C still above the range [35.0, 45.0]°C"


def test_unreadable_sensor_fails_with_the_reason(tmp_path: Path) -> None:
    root, _ = hwmon_tree(tmp_path, 40000)
    result = TemperatureGate(settings(root, chip=["k10temp"])).check(45.0)
    assert not result.ok and result.temperature_c is None
    assert result.message.startswith("cannot read the temperature:")


def test_sensors_json_source_with_chip_and_feature(tmp_path: Path) -> None:
    gate = TemperatureGate(
        TemperatureSettings(chip=["coretemp-*"], feature=["Package id 0"], source="sensors",
                            sensors_command=["cat", str(SENSORS_FIXTURE)])
    )
    result = gate.check(55.0)  # the recorded package temperature is 54 °C
    assert result.ok and result.temperature_c == 54.0


def test_busy_warmup_runs_real_processes(tmp_path: Path) -> None:
    busy_warmup(0.2)  # one busy process per CPU for 0.2 s, then back
    marker = tmp_path / "warm"
    busy_warmup(0.1, ["touch", str(marker)])
    assert marker.exists()
