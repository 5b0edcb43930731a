"""Temperatures from the Linux hwmon sysfs tree or from lm-sensors' ``sensors -j``.

hwmon (``/sys/class/hwmon``)::

    hwmon2/name           coretemp                     (the driver; older kernels: hwmon2/device/name)
    hwmon2/temp1_input    45000                        (millidegrees Celsius)
    hwmon2/temp1_label    Package id 0                 (optional)

``sensors -j`` (lm-sensors 3.5+) prints a JSON object: chip (``coretemp-isa-0000``) → feature
label (``Package id 0``) → subfeatures (``temp1_input``: 45.0 °C, ``temp1_max`` ...), with an
``Adapter`` string per chip. Only ``tempN_input`` values are read.

Both providers give the gauge ``temperature_c`` (degC) with detail ``<chip>/<label>`` and accept
chip and feature filters (shell patterns, case-sensitive, see :func:`fnmatch.fnmatchcase`).
:func:`read_temperature_c` does a one-off read for gates and checks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope
from wattwise.providers.ipmi import CommandResult, Runner, call_runner, run_command

METRIC = "temperature_c"
DEFAULT_HWMON_ROOT = "/sys/class/hwmon"
DEFAULT_SENSORS_COMMAND = ("sensors", "-j")
_TEMP_INPUT_RE = re.compile(r"^temp(\d+)_input$")
_HWMON_DIR_RE = re.compile(r"^hwmon(\d+)$")


@dataclass(frozen=True)
class TemperatureReading:
    chip: str  # hwmon: driver name (made unique, e.g. coretemp@coretemp.1); sensors: coretemp-isa-0000
    feature: str  # the label (Package id 0, Tctl, Composite) or tempN when there is none
    value_c: float | None  # None: the sensor could not be read this time
    source: str = ""  # file path or sensors command

    @property
    def detail(self) -> str:
        return f"{self.chip}/{self.feature}"


def _matches(value: str, patterns: Sequence[str] | None, *alternatives: str) -> bool:
    if not patterns:
        return True
    candidates = (value, *alternatives)
    return any(fnmatchcase(c, p) for p in patterns for c in candidates)


def _as_patterns(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value) or None


def _filter_text(chips: Sequence[str] | None, features: Sequence[str] | None) -> str:
    parts = []
    if chips:
        parts.append(f"chips={','.join(chips)}")
    if features:
        parts.append(f"features={','.join(features)}")
    return " ".join(parts) or "no filter"


# --- hwmon -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HwmonSensor:
    chip: str
    chip_name: str  # driver name as in `name`
    feature: str
    path: Path  # tempN_input


def _read_first_line(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _hwmon_sort_key(path: Path) -> tuple[int, str]:
    match = _HWMON_DIR_RE.match(path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def discover_hwmon_sensors(root: str | Path = DEFAULT_HWMON_ROOT) -> list[_HwmonSensor]:
    """All `tempN_input` files under `root`, with chip and feature names (no values read)."""
    root = Path(root)
    try:
        directories = sorted((p for p in root.iterdir() if _HWMON_DIR_RE.match(p.name)), key=_hwmon_sort_key)
    except OSError as exc:
        raise ProviderError(f"cannot list {root}: {exc.strerror or exc}") from exc
    chips: list[tuple[str, Path, str]] = []  # (name, directory holding the temp files, device id)
    for directory in directories:
        base = directory
        name = _read_first_line(directory / "name")
        if name is None:  # kernels before 3.x kept the attributes in device/
            base = directory / "device"
            name = _read_first_line(base / "name")
        if name is None:
            continue
        device = directory / "device"
        device_id = device.resolve().name if device.is_symlink() else directory.name
        chips.append((name, base, device_id))
    name_counts: dict[str, int] = {}
    for name, _, _ in chips:
        name_counts[name] = name_counts.get(name, 0) + 1
    sensors: list[_HwmonSensor] = []
    for name, base, device_id in chips:
        chip = name if name_counts[name] == 1 else f"{name}@{device_id}"
        try:
            files = [p for p in base.iterdir() if _TEMP_INPUT_RE.match(p.name)]
        except OSError:
            continue
        files.sort(key=lambda p: int(_TEMP_INPUT_RE.match(p.name).group(1)))  # type: ignore[union-attr]
        labels: dict[Path, str] = {}
        for path in files:
            index = _TEMP_INPUT_RE.match(path.name).group(1)  # type: ignore[union-attr]
            labels[path] = _read_first_line(base / f"temp{index}_label") or f"temp{index}"
        label_counts: dict[str, int] = {}
        for label in labels.values():
            label_counts[label] = label_counts.get(label, 0) + 1
        for path in files:
            label = labels[path]
            if label_counts[label] > 1:  # two inputs with one label: keep them apart
                label = f"{label} ({path.name.removesuffix('_input')})"
            sensors.append(_HwmonSensor(chip, name, label, path))
    return sensors


def _read_millidegrees(path: Path) -> float | None:
    text = _read_first_line(path)
    if text is None:
        return None
    try:
        return int(text) / 1000
    except ValueError:
        return None


def read_hwmon_temperatures(
    root: str | Path = DEFAULT_HWMON_ROOT,
    chips: str | Sequence[str] | None = None,
    features: str | Sequence[str] | None = None,
) -> list[TemperatureReading]:
    """Read all matching hwmon temperatures once. A chip pattern matches the unique chip name or
    the driver name; a feature pattern the label or ``tempN``."""
    chip_patterns, feature_patterns = _as_patterns(chips), _as_patterns(features)
    return [
        TemperatureReading(s.chip, s.feature, _read_millidegrees(s.path), str(s.path))
        for s in discover_hwmon_sensors(root)
        if _matches(s.chip, chip_patterns, s.chip_name)
        and _matches(s.feature, feature_patterns, s.path.name.removesuffix("_input"))
    ]


class HwmonTemperatureProvider(Provider):
    """Temperatures (°C) of hwmon sensors: CPU packages and cores, NVMe drives, ACPI zones..."""

    name = "hwmon"
    description = "Temperatures from the hwmon sysfs tree (/sys/class/hwmon)"
    scope = Scope.MACHINE
    default_interval_s = 1.0
    metric_units = {METRIC: "degC"}

    def __init__(
        self,
        root: str | Path = DEFAULT_HWMON_ROOT,
        chips: str | Sequence[str] | None = None,
        features: str | Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.chips = _as_patterns(chips)
        self.features = _as_patterns(features)
        self._sensors: list[_HwmonSensor] = []

    def _select(self) -> list[_HwmonSensor]:
        return [s for s in discover_hwmon_sensors(self.root)
                if _matches(s.chip, self.chips, s.chip_name)
                and _matches(s.feature, self.features, s.path.name.removesuffix("_input"))]

    def availability(self) -> Availability:
        try:
            if not self.root.exists():
                return Availability.no(f"{self.root} does not exist (no hwmon drivers, or /sys not mounted)")
            all_sensors = discover_hwmon_sensors(self.root)
            if not all_sensors:
                return Availability.no(
                    f"no temperature sensor under {self.root} (load a driver: coretemp, k10temp, "
                    f"nvme, acpi thermal; a virtual machine usually has none)")
            selected = self._select()
            if not selected:
                return Availability.no(f"no hwmon temperature sensor matches "
                                       f"{_filter_text(self.chips, self.features)}")
            return Availability.yes(f"{len(selected)} temperature sensor{'s' if len(selected) != 1 else ''}")
        except Exception as exc:  # availability must never raise
            return Availability.no(f"cannot inspect {self.root}: {exc}")

    def open(self) -> None:
        self._sensors = self._select()
        if not self._sensors:
            raise ProviderError(f"no hwmon temperature sensor under {self.root} matches "
                                f"{_filter_text(self.chips, self.features)}")

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec(METRIC, "degC", Kind.GAUGE, f"{s.chip}/{s.feature}",
                           description=f"hwmon {s.path.parent.name}/{s.path.name}") for s in self._sensors]

    def read(self) -> Sequence[float | None]:
        """Degrees Celsius per sensor; None for a sensor that cannot be read this time."""
        if not self._sensors:
            raise ProviderError("HwmonTemperatureProvider.read() called before open()")
        return [_read_millidegrees(s.path) for s in self._sensors]

    def close(self) -> None:
        self._sensors = []


# --- sensors -j ------------------------------------------------------------------------------------


def _chip_prefix(chip: str) -> str:
    """'coretemp-isa-0000' -> 'coretemp' (libsensors names are <prefix>-<bus>-<address>)."""
    parts = chip.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else chip


def parse_sensors_json(text: str) -> list[TemperatureReading]:
    """All ``tempN_input`` values of ``sensors -j`` output, in output order.

    Raises ProviderError naming the text if it is not the expected JSON object.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        excerpt = text.strip()[:200]
        raise ProviderError(
            f"sensors -j output is not JSON ({exc.msg} at line {exc.lineno}): {excerpt!r}") from None
    if not isinstance(data, dict):
        raise ProviderError(f"sensors -j output is not a JSON object: {text.strip()[:200]!r}")
    readings: list[TemperatureReading] = []
    for chip, features in data.items():
        if not isinstance(features, dict):
            raise ProviderError(f"sensors -j: chip {chip!r} is not an object: {features!r}")
        for feature, subfeatures in features.items():
            if not isinstance(subfeatures, dict):  # "Adapter": "ISA adapter"
                continue
            for key, value in subfeatures.items():
                if _TEMP_INPUT_RE.match(key):
                    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
                        else None
                    if number is not None and not math.isfinite(number):
                        number = None
                    readings.append(TemperatureReading(chip, feature, number, "sensors -j"))
    return readings


def _sensors_output(command: Sequence[str], runner: Runner) -> str:
    try:
        result: CommandResult = call_runner(runner, command)
    except ProviderError as exc:
        if "command not found" in str(exc):
            raise ProviderError(f"{exc} (install the lm-sensors package)") from exc
        raise
    if result.returncode != 0 and not result.stdout.strip().startswith("{"):
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        first = message[0] if message else f"exit status {result.returncode}"
        raise ProviderError(f"{' '.join(command)} failed: {first}")
    return result.stdout


def read_sensors_temperatures(
    command: Sequence[str] = DEFAULT_SENSORS_COMMAND,
    chips: str | Sequence[str] | None = None,
    features: str | Sequence[str] | None = None,
    runner: Runner | None = None,
) -> list[TemperatureReading]:
    """Run ``sensors -j`` once and return the matching temperatures. A chip pattern matches the
    full chip name (coretemp-isa-0000) or its prefix (coretemp)."""
    chip_patterns, feature_patterns = _as_patterns(chips), _as_patterns(features)
    text = _sensors_output(command, runner or run_command)
    return [r for r in parse_sensors_json(text)
            if _matches(r.chip, chip_patterns, _chip_prefix(r.chip))
            and _matches(r.feature, feature_patterns)]


class SensorsTemperatureProvider(Provider):
    """Temperatures (°C) from lm-sensors' ``sensors -j``."""

    name = "sensors"
    description = "Temperatures from lm-sensors (sensors -j)"
    scope = Scope.MACHINE
    default_interval_s = 1.0
    metric_units = {METRIC: "degC"}

    def __init__(
        self,
        command: Sequence[str] = DEFAULT_SENSORS_COMMAND,
        chips: str | Sequence[str] | None = None,
        features: str | Sequence[str] | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.command = list(command)
        self.chips = _as_patterns(chips)
        self.features = _as_patterns(features)
        self._runner: Runner = runner or run_command
        self._details: list[str] = []

    def _query(self) -> list[TemperatureReading]:
        return read_sensors_temperatures(self.command, self.chips, self.features, self._runner)

    def availability(self) -> Availability:
        try:
            readings = self._query()
        except ProviderError as exc:
            return Availability.no(str(exc))
        except Exception as exc:  # availability must never raise
            return Availability.no(f"cannot run {' '.join(self.command)}: {exc}")
        if not readings:
            return Availability.no(f"{' '.join(self.command)} reports no temperature matching "
                                   f"{_filter_text(self.chips, self.features)}")
        return Availability.yes(f"{len(readings)} temperature sensor{'s' if len(readings) != 1 else ''}")

    def open(self) -> None:
        readings = self._query()
        if not readings:
            raise ProviderError(f"{' '.join(self.command)} reports no temperature matching "
                                f"{_filter_text(self.chips, self.features)}")
        self._details = []
        for reading in readings:
            if reading.detail not in self._details:
                self._details.append(reading.detail)

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec(METRIC, "degC", Kind.GAUGE, d, description="lm-sensors temperature") for d in
                self._details]

    def read(self) -> Sequence[float | None]:
        """Degrees Celsius per sensor found at open(); None for one missing from this output."""
        if not self._details:
            raise ProviderError("SensorsTemperatureProvider.read() called before open()")
        by_detail: dict[str, float | None] = {}
        for reading in self._query():
            by_detail.setdefault(reading.detail, reading.value_c)
        return [by_detail.get(d) for d in self._details]

    def close(self) -> None:
        self._details = []


# --- one-off reads -----------------------------------------------------------------------------


def _hottest(readings: Iterable[TemperatureReading], what: str) -> float:
    values = [r.value_c for r in readings if r.value_c is not None]
    if not values:
        raise ProviderError(f"no readable temperature for {what}")
    return max(values)


def read_temperature_c(
    chip: str | Sequence[str] | None = None,
    feature: str | Sequence[str] | None = None,
    *,
    source: str = "auto",
    hwmon_root: str | Path = DEFAULT_HWMON_ROOT,
    sensors_command: Sequence[str] = DEFAULT_SENSORS_COMMAND,
    runner: Runner | None = None,
) -> float:
    """One fresh temperature in °C: the highest of the sensors matching `chip` and `feature`.

    `source` is "hwmon", "sensors" or "auto" (hwmon if it has a matching sensor, else sensors -j).
    Raises ProviderError if no matching sensor can be read.
    """
    what = _filter_text(_as_patterns(chip), _as_patterns(feature))
    if source not in ("auto", "hwmon", "sensors"):
        raise ProviderError(f"unknown temperature source {source!r}: use hwmon, sensors or auto")
    if source in ("auto", "hwmon"):
        try:
            readings = read_hwmon_temperatures(hwmon_root, chip, feature)
        except ProviderError:
            if source == "hwmon":
                raise
            readings = []
        if readings or source == "hwmon":
            return _hottest(readings, f"{what} under {hwmon_root}")
    readings = read_sensors_temperatures(sensors_command, chip, feature, runner)
    return _hottest(readings, f"{what} in {' '.join(sensors_command)}")
