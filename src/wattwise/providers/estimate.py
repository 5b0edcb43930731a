"""Estimated machine power where no sensor exists: a load→power curve from CPU utilization.

Curve, first found of:
1. a calibration table (`--power-curve` / `$WATTWISE_POWER_CURVE`, CSV `utilization,power_w` with optional
   `power_w_low,power_w_high`, e.g. from a wall meter);
2. the curve `wattwise calibrate` stored for this machine (same CPU model and thread count);
3. the power model fitted on SPECpower (`powermodel`), at 0, 10, … 100 % utilization, with its interval,
   from the machine's facts (`machine_facts`: TDP from `--tdp`/`$WATTWISE_TDP_W` or the shipped table,
   chips, cores, threads, clocks, memory; a VM's share of its host). What was assumed is said in the source.
The Teads × TDP curve (`PowerCurve.from_tdp`) stays available for comparison. Every figure is marked estimated.
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
    """Piecewise-linear machine power (W) as a function of CPU utilization (0..1), optionally with the
    bounds of its interval at the same utilizations (`low`, `high`)."""

    points: tuple[tuple[float, float], ...]
    source: str
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    assumed: tuple[str, ...] = ()  # facts the curve rests on that were assumed, not found

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ConfigError(f"power curve from {self.source} needs at least two points")
        xs = [x for x, _ in self.points]
        if xs != sorted(xs) or len(set(xs)) != len(xs):
            raise ConfigError(f"power curve from {self.source}: utilizations must increase")
        if xs[0] < 0 or xs[-1] > 1:
            raise ConfigError(f"power curve from {self.source}: utilization must lie in 0..1")
        for name, bound in (("low", self.low), ("high", self.high)):
            if bound is not None and len(bound) != len(self.points):
                raise ConfigError(f"power curve from {self.source}: {name} bounds need one value per point")

    @staticmethod
    def _interp(u: float, xs: Sequence[float], ys: Sequence[float]) -> float:
        u = min(max(u, xs[0]), xs[-1])
        for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
            if u <= x1:
                return y0 + (y1 - y0) * (u - x0) / (x1 - x0)
        return ys[-1]

    def power_w(self, utilization: float) -> float:
        return self._interp(utilization, [x for x, _ in self.points], [y for _, y in self.points])

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def interval_w(self, utilization: float) -> tuple[float, float] | None:
        """(low, high) bounds of the power at this utilization, None when the curve has no interval."""
        if self.low is None or self.high is None:
            return None
        xs = [x for x, _ in self.points]
        return self._interp(utilization, xs, self.low), self._interp(utilization, xs, self.high)

    def scaled(self, factor: float, source: str | None = None) -> PowerCurve:
        return PowerCurve(tuple((u, p * factor) for u, p in self.points), source or self.source,
                          None if self.low is None else tuple(v * factor for v in self.low),
                          None if self.high is None else tuple(v * factor for v in self.high), self.assumed)

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
        points: list[tuple[float, float, float | None, float | None]] = []
        for number, row in enumerate(rows, start=2):
            try:
                u = float(row["utilization"])
                p = float(row["power_w"])
                lo = float(row["power_w_low"]) if row.get("power_w_low") not in (None, "") else None
                hi = float(row["power_w_high"]) if row.get("power_w_high") not in (None, "") else None
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{path}:{number}: expected columns utilization,power_w[,power_w_low,power_w_high] with "
                    f"numbers ({type(exc).__name__}: {exc})"
                ) from exc
            if p < 0 or (lo is not None and lo > p) or (hi is not None and hi < p):
                raise ConfigError(f"{path}:{number}: power_w={p:g} must be ≥ 0 and lie within its low/high bounds")
            points.append((u, p, lo, hi))
        if points and max(u for u, *_ in points) > 1.0:
            points = [(u / 100.0, p, lo, hi) for u, p, lo, hi in points]
        points.sort(key=lambda row: row[0])
        lows = tuple(lo for *_, lo, _ in points)
        highs = tuple(hi for *_, hi in points)
        complete = all(v is not None for v in (*lows, *highs)) and bool(points)
        return cls(tuple((u, p) for u, p, *_ in points), str(path),
                   tuple(v for v in lows if v is not None) if complete else None,
                   tuple(v for v in highs if v is not None) if complete else None)

    def to_csv(self, path: str | Path) -> None:
        """Write the curve as a calibration table that `from_csv` reads back."""
        lines = ["utilization,power_w" + (",power_w_low,power_w_high" if self.has_interval else "")]
        for i, (u, p) in enumerate(self.points):
            row = f"{u:g},{p:.3f}"
            if self.low is not None and self.high is not None:
                row += f",{self.low[i]:.3f},{self.high[i]:.3f}"
            lines.append(row)
        Path(path).write_text("\n".join(lines) + "\n")

    @classmethod
    def from_model(cls, tdp_w: float | None = None, tdp_source: str = "", proc_root: str | Path = "/proc",
                   lscpu_text: str | None = None, vhost_ratio: float | None = None,
                   host_threads: int | None = None) -> PowerCurve:
        """This machine's curve from the SPECpower model, with its interval and what was assumed."""
        from wattwise.providers.machine_facts import model_input, read_machine_facts
        from wattwise.providers.powermodel import load_model

        model = load_model()
        facts = read_machine_facts(proc_root, lscpu_text)
        if tdp_w is None and facts.cpu_model:
            found = lookup_tdp(facts.cpu_model)
            if found is not None:
                tdp_w, tdp_source = found.tdp_w, found.source
        given = model_input(facts, model, tdp_w=tdp_w, tdp_source=tdp_source, vhost_ratio=vhost_ratio,
                            host_threads=host_threads)
        curve = model.curve(given.spec)
        share = given.share
        source = (f"≈ SPECpower model ({model.interval_percent} % interval, coverage "
                  f"{(model.coverage or 0) * 100:.0f} % on newer servers)"
                  + (f" × VM share {share:.3g}" if share != 1.0 else "") + f"; {given.summary()}")
        return cls(tuple((p.utilization, p.power_w * share) for p in curve), source,
                   tuple(p.power_w_low * share for p in curve), tuple(p.power_w_high * share for p in curve),
                   tuple(f"{k} {v}" for k, v in given.assumed.items()))


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
    tdp_w: float | None = None,
    calibration: str | Path | None = None,
    cpuinfo: str | Path = "/proc/cpuinfo",
    *,
    vhost_ratio: float | None = None,
    calibration_dir: str | Path | None = None,
) -> PowerCurve:
    """The curve `measure`, `monitor` and the estimate provider use (see the module docstring for the order).

    `cpuinfo` names the proc tree read (its directory holds cpuinfo and meminfo); lscpu is run only for the
    real /proc."""
    calibration = calibration or os.environ.get(ENV_CALIBRATION)
    if calibration:
        return PowerCurve.from_csv(calibration)
    proc_root = Path(cpuinfo).parent
    lscpu_text = None if proc_root == Path("/proc") else ""
    if tdp_w is None:
        from wattwise.providers.calibrate import stored_calibration

        stored = stored_calibration(proc_root, calibration_dir)
        if stored is not None:
            return stored
    source = "configured"
    if tdp_w is None and os.environ.get(ENV_TDP):
        try:
            tdp_w = float(os.environ[ENV_TDP])
        except ValueError as exc:
            raise ConfigError(f"{ENV_TDP}={os.environ[ENV_TDP]!r} is not a number of watts") from exc
        source = ENV_TDP
    if tdp_w is not None and tdp_w <= 0:
        raise ConfigError(f"TDP must be positive, got {tdp_w} W ({source})")
    from wattwise.providers.powermodel import MODEL_RESOURCE

    if not resources.files("wattwise").joinpath(MODEL_RESOURCE).is_file():  # a broken install: say so
        model = cpu_model_name(Path(proc_root) / "cpuinfo")
        found = lookup_tdp(model) if tdp_w is None and model else None
        total = tdp_w or (found.tdp_w if found else GENERIC_W_PER_THREAD * (os.cpu_count() or 1))
        return PowerCurve.from_tdp(total, f"{MODEL_RESOURCE} missing from this installation: Teads ratios")
    return PowerCurve.from_model(tdp_w, source, proc_root=proc_root, lscpu_text=lscpu_text,
                                 vhost_ratio=vhost_ratio)


class EstimatedPowerProvider(Provider):
    name = "estimate"
    description = "Estimated machine power from CPU utilization and a load→power curve (TDP or calibration)"
    metric_units = {"estimated_power_w": "W", "estimated_power_low_w": "W", "estimated_power_high_w": "W"}

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
        specs = [
            MetricSpec(
                "estimated_power_w",
                "W",
                Kind.GAUGE,
                "machine",
                estimated=True,
                description=f"machine power estimated from CPU utilization; {self.curve.source}",
            )
        ]
        if self.curve.has_interval:
            for bound in ("low", "high"):
                specs.append(MetricSpec(f"estimated_power_{bound}_w", "W", Kind.GAUGE, "machine", estimated=True,
                                        description=f"{bound} bound of the estimated machine power's interval"))
        return specs

    def read(self) -> Sequence[float | None]:
        assert self._previous is not None, "open() first"
        now = read_cpu_times(self.proc_root, self._stat)
        utilization = utilization_between(self._previous, now)
        self._previous = now
        bounds = self.curve.interval_w(utilization)
        if bounds is None:
            return [self.curve.power_w(utilization)]
        return [self.curve.power_w(utilization), *bounds]

    def close(self) -> None:
        self._stat.close()


#: figures of a phase summary that scale with its machine energy and so carry its interval
INTERVAL_FIGURES = ("energy_j", "mean_power_w", "carbon_g", "unit_energy_j")


def estimate_interval(
    figures: dict[str, float | None],
    estimated_j: float | None,
    low_j: float | None,
    high_j: float | None,
) -> dict[str, float | None]:
    """`<figure>_low`/`<figure>_high` for every figure in INTERVAL_FIGURES present in `figures`.

    `estimated_j`, `low_j`, `high_j` are the phase's integrals of `estimated_power_w` and its interval bounds
    (`estimated_power_low_w`, `estimated_power_high_w`); a measured part of `energy_j` (GPU energy) is kept
    as it is. Mean power, carbon and unit energy are proportional to the machine energy, so they scale with
    it. Empty when the phase has no estimate with an interval."""
    energy = figures.get("energy_j")
    if energy is None or not energy > 0 or estimated_j is None or low_j is None or high_j is None:
        return {}
    measured = energy - estimated_j
    ratios = ((measured + low_j) / energy, (measured + high_j) / energy)
    out: dict[str, float | None] = {}
    for name in INTERVAL_FIGURES:
        if name in figures:
            value = figures[name]
            out[f"{name}_low"] = None if value is None else value * ratios[0]
            out[f"{name}_high"] = None if value is None else value * ratios[1]
    return out


def format_estimate(value: float | None, low: float | None, high: float | None, unit: str) -> str:
    """`≈ 182 W (150–214)`, with the SI prefix of the value shared by its bounds (`≈ 1.23 kJ (1.01–1.45)`);
    `≈ 182 W` when there is no interval."""
    from wattwise.units import format_si

    if value is None:
        return "–"
    text = "≈ " + format_si(value, unit)
    if low is None or high is None:
        return text
    factor = 1.0
    for candidate in (1e12, 1e9, 1e6, 1e3, 1.0, 1e-3, 1e-6):
        if abs(value) >= candidate:
            factor = candidate
            break
    def bound(x: float) -> str:  # 3 significant digits, never in e-notation (a bound may pass 1000)
        return f"{x:.0f}" if abs(x) >= 999.5 else f"{x:.3g}"

    return f"{text} ({bound(low / factor)}–{bound(high / factor)})"
