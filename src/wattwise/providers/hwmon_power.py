"""Power sensors of the Linux hwmon class (``/sys/class/hwmon/hwmon*/power*_input``).

Each ``hwmonN`` directory has a ``name`` (the driver: ``power_meter`` for an ACPI power meter, which
measures the whole system; ``amdgpu``; ``nvme``; …) and power channels ``power<K>_input`` (instantaneous)
or ``power<K>_average`` (averaged by the device), in microwatts, with an optional ``power<K>_label``. The
sensors to read are chosen by driver name and optionally label (``power_meter``, ``amdgpu:PPT``); their
power is summed into one whole-node reading, in the same shape as an IPMI DCMI reading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.providers.base import ProviderError
from wattwise.providers.ipmi import DcmiPowerReading

DEFAULT_ROOT = Path("/sys/class/hwmon")
UW_PER_W = 1e6


@dataclass(frozen=True)
class HwmonPowerSensor:
    device: str  # hwmon3
    driver: str  # power_meter
    channel: str  # power1
    label: str  # power1_label, else the channel
    path: Path  # the power<K>_input (or _average) file

    @property
    def key(self) -> str:
        return f"{self.device}/{self.driver}/{self.label}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def list_power_sensors(root: str | Path = DEFAULT_ROOT) -> list[HwmonPowerSensor]:
    """Every power channel under `root` (``power<K>_input``, else ``power<K>_average``)."""
    root = Path(root)
    if not root.is_dir():
        raise ProviderError(f"{root}: no hwmon directory")
    sensors = []
    for device in sorted(root.iterdir(), key=lambda p: (len(p.name), p.name)):
        driver = _read(device / "name") or device.name
        channels = sorted({m.group(1) for f in device.glob("power*_*")
                           if (m := re.fullmatch(r"(power\d+)_(?:input|average)", f.name))})
        for channel in channels:
            path = device / f"{channel}_input"
            if not path.exists():
                path = device / f"{channel}_average"
            label = _read(device / f"{channel}_label") or channel
            sensors.append(HwmonPowerSensor(device.name, driver, channel, label, path))
    return sensors


def select_sensors(sensors: Sequence[HwmonPowerSensor], patterns: Sequence[str]) -> list[HwmonPowerSensor]:
    """Sensors whose driver (and label, for ``driver:label``) match one of `patterns`."""
    chosen = []
    for sensor in sensors:
        for pattern in patterns:
            driver, _, label = pattern.partition(":")
            if sensor.driver == driver and (not label or sensor.label == label):
                chosen.append(sensor)
                break
    return chosen


class HwmonPower:
    """Whole-node power summed over chosen hwmon power sensors; :meth:`query` as for IPMI DCMI."""

    name = "hwmon"

    def __init__(self, patterns: Sequence[str] = ("power_meter",), root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.patterns = list(patterns)
        self.sensors: list[HwmonPowerSensor] | None = None

    def open(self) -> None:
        sensors = list_power_sensors(self.root)
        self.sensors = select_sensors(sensors, self.patterns)
        if not self.sensors:
            present = ", ".join(sorted({f"{s.driver}:{s.label}" for s in sensors})) or "none"
            raise ProviderError(f"no hwmon power sensor under {self.root} matches {', '.join(self.patterns)} "
                                f"(present: {present})")

    def query(self) -> DcmiPowerReading:
        if self.sensors is None:
            self.open()
        assert self.sensors is not None
        total = 0.0
        for sensor in self.sensors:
            text = _read(sensor.path)
            if text is None or not text.lstrip("-").isdigit():
                raise ProviderError(f"{sensor.path}: expected microwatts, got {text!r}")
            total += int(text) / UW_PER_W
        return DcmiPowerReading(power_w=total)
