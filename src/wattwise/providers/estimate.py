"""Estimated machine power where no sensor exists: a load→power curve from CPU utilization.

Default curve: the published server ratios of power to CPU TDP at 0, 10, 50 and 100 % utilization
(0.12, 0.32, 0.75, 1.02; Teads/Boavizta, fitted on SPECpower results), linearly interpolated. The TDP
comes from `--tdp`/`WATTWISE_TDP_W`, else from the shipped table by the CPU's model name, else a
generic 10 W per thread seen (said in the curve's source, so users know to configure it). A user
calibration table (CSV `utilization,power_w`, e.g. from a wall meter) replaces the curve.
Every figure is marked estimated.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from wattwise.errors import ConfigError
from wattwise.providers.base import Availability, Kind, MetricSpec, Provider
from wattwise.providers.files import KernelFile
from wattwise.providers.procstat import CpuTimes, read_cpu_times, utilization_between

TEADS_CURVE_RATIOS: tuple[tuple[float, float], ...] = ((0.0, 0.12), (0.10, 0.32), (0.50, 0.75), (1.0, 1.02))
ENV_TDP = "WATTWISE_TDP_W"
GENERIC_W_PER_THREAD = 10.0
ENV_CALIBRATION = "WATTWISE_POWER_CURVE"


@dataclass(frozen=True)
class PowerCurve:
    """Piecewise-linear machine power (W) as a function of CPU utilization (0..1)."""

    points: tuple[tuple[float, float], ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ConfigError(f"power curve from {self.source} needs at least two points")
        xs = [x for x, _ in self.points]
        if xs != sorted(xs) or len(set(xs)) != len(xs):
            raise ConfigError(f"power curve from {self.source}: utilizations must increase")
        if xs[0] < 0 or xs[-1] > 1:
            raise ConfigError(f"power curve from {self.source}: utilization must lie in 0..1")

    def power_w(self, utilization: float) -> float:
        u = min(max(utilization, self.points[0][0]), self.points[-1][0])
        for (x0, y0), (x1, y1) in zip(self.points, self.points[1:], strict=False):
            if u <= x1:
                return y0 + (y1 - y0) * (u - x0) / (x1 - x0)
        return self.points[-1][1]

    @classmethod
    def from_tdp(cls, tdp_w: float, source: str) -> PowerCurve:
        if tdp_w <= 0:
            raise ConfigError(f"TDP must be positive, got {tdp_w} W ({source})")
        return cls(tuple((u, r * tdp_w) for u, r in TEADS_CURVE_RATIOS), f"TDP {tdp_w:g} W ({source}) × Teads ratios")

    @classmethod
    def from_csv(cls, path: str | Path) -> PowerCurve:
        """A calibration table: CSV with header `utilization,power_w` (utilization 0..1 or 0..100 %)."""
        path = Path(path)
        try:
            rows = list(csv.DictReader(path.open()))
        except OSError as exc:
            raise ConfigError(f"cannot read power calibration {path}: {exc.strerror}") from exc
        points = []
        for number, row in enumerate(rows, start=2):
            try:
                u = float(row["utilization"])
                p = float(row["power_w"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{path}:{number}: expected columns utilization,power_w with numbers ({exc})"
                ) from exc
            points.append((u, p))
        if points and max(u for u, _ in points) > 1.0:
            points = [(u / 100.0, p) for u, p in points]
        return cls(tuple(sorted(points)), str(path))


@cache
def _tdp_table() -> dict[str, float]:
    text = resources.files("wattwise").joinpath("data/cpu_tdp.csv").read_text()
    table: dict[str, float] = {}
    for row in csv.DictReader(text.splitlines()):
        try:
            table[row["name"].strip().lower()] = float(row["tdp_w"])
        except (TypeError, ValueError):
            continue  # a few source rows carry ranges like '27.29.5': not usable
    return table


def _normalise_model(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\b(CPU|Processor|\d+-Core|with Radeon.*)\b", "", name, flags=re.IGNORECASE)
    name = name.split("@")[0]
    return re.sub(r"\s+", " ", name).strip().lower()


@dataclass(frozen=True)
class TdpLookup:
    tdp_w: float
    source: str


def lookup_tdp(model_name: str) -> TdpLookup | None:
    """TDP for a CPU model name from the shipped table (None when the model is not listed)."""
    table = _tdp_table()
    wanted = _normalise_model(model_name)
    if wanted in table:
        return TdpLookup(table[wanted], f"table: {wanted}")
    for name, tdp in table.items():  # table names are often the model without the vendor prefix
        if name and (wanted.endswith(" " + name) or name.endswith(" " + wanted)):
            return TdpLookup(tdp, f"table: {name}")
    return None


def cpu_model_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def default_power_curve(
    tdp_w: float | None = None, calibration: str | Path | None = None, cpuinfo: str | Path = "/proc/cpuinfo"
) -> PowerCurve:
    calibration = calibration or os.environ.get(ENV_CALIBRATION)
    if calibration:
        return PowerCurve.from_csv(calibration)
    if tdp_w is None and os.environ.get(ENV_TDP):
        try:
            tdp_w = float(os.environ[ENV_TDP])
        except ValueError as exc:
            raise ConfigError(f"{ENV_TDP}={os.environ[ENV_TDP]!r} is not a number of watts") from exc
        return PowerCurve.from_tdp(tdp_w, ENV_TDP)
    if tdp_w is not None:
        return PowerCurve.from_tdp(tdp_w, "configured")
    model = cpu_model_name(cpuinfo)
    threads = os.cpu_count() or 1
    found = lookup_tdp(model) if model else None
    if found is None:
        # not in the table (e.g. a VM that shows only "AMD EPYC"): a generic 10 W per thread seen,
        # said loudly in the source so that users configure --tdp or a calibration table
        return PowerCurve.from_tdp(
            GENERIC_W_PER_THREAD * threads,
            f"CPU '{model or '?'}' not in the TDP table: generic {GENERIC_W_PER_THREAD:g} W per thread, set --tdp",
        )
    return PowerCurve.from_tdp(found.tdp_w, found.source)


class EstimatedPowerProvider(Provider):
    name = "estimate"
    description = "Estimated machine power from CPU utilization and a load→power curve (TDP or calibration)"
    metric_units = {"estimated_power_w": "W"}

    def __init__(self, curve: PowerCurve | None = None, proc_root: str | Path = "/proc") -> None:
        self._curve = curve
        self.proc_root = Path(proc_root)
        self._stat = KernelFile(self.proc_root / "stat")
        self._previous: CpuTimes | None = None

    @property
    def curve(self) -> PowerCurve:
        if self._curve is None:
            self._curve = default_power_curve()
        return self._curve

    @curve.setter
    def curve(self, curve: PowerCurve) -> None:
        self._curve = curve

    def availability(self) -> Availability:
        try:
            read_cpu_times(self.proc_root)
            source = self.curve.source
        except Exception as exc:  # availability must not raise
            return Availability.no(str(exc))
        return Availability.yes(f"estimated: {source}")

    def open(self) -> None:
        self._previous = read_cpu_times(self.proc_root)

    def specs(self) -> Sequence[MetricSpec]:
        return [
            MetricSpec(
                "estimated_power_w",
                "W",
                Kind.GAUGE,
                "machine",
                estimated=True,
                description=f"machine power estimated from CPU utilization; {self.curve.source}",
            )
        ]

    def read(self) -> Sequence[float | None]:
        assert self._previous is not None, "open() first"
        now = read_cpu_times(self.proc_root, self._stat)
        utilization = utilization_between(self._previous, now)
        self._previous = now
        return [self.curve.power_w(utilization)]

    def close(self) -> None:
        self._stat.close()
