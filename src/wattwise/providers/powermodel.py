"""Wall power of a server from its hardware facts and CPU utilization: a model fitted on SPECpower results.

The model is gradient-boosted regression trees (scikit-learn's `HistGradientBoostingRegressor`, fitted by
`scripts/fit-power-model.py` from `data/specpower/specpower-2007-2020.csv`) on ln(wall power) with the
utilization constrained to be monotone increasing. Its trees ship as data (`wattwise/data/power_model.json`)
and are evaluated here with plain Python: no scikit-learn at run time.

Every prediction carries an interval: the 5th and 95th percentiles of ln(measured / predicted) from grouped
cross-validation (by server model) at each load level, applied multiplicatively. The interval's coverage on
servers newer than the training data is measured by the fit script and stored with the parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from wattwise.errors import ConfigError

__all__ = [
    "FEATURES",
    "LOAD_LEVELS",
    "CurvePoint",
    "MachineSpec",
    "PowerModel",
    "interval_scaled",
    "load_model",
]

#: the model's inputs, in the order of the tree features
FEATURES: tuple[str, ...] = (
    "log_tdp_total_w",  # ln(TDP per chip × chips)
    "log_chips",
    "log_cores",
    "log_threads",
    "base_ghz",
    "turbo_ghz",
    "log_memory_gb",
    "psu_count",
    "amd",
    "year",
    "log_threads_per_core",
    "utilization",  # 0..1
)
LOAD_LEVELS: tuple[float, ...] = tuple(k / 10 for k in range(11))
MODEL_RESOURCE = "data/power_model.json"


@dataclass(frozen=True)
class MachineSpec:
    """The hardware facts the model reads. `tdp_w` is per chip; cores and threads are totals."""

    tdp_w: float
    chips: int
    cores: int
    threads: int
    base_ghz: float
    turbo_ghz: float
    memory_gb: float
    psu_count: int = 1
    amd: bool = False
    year: int = 2020

    def __post_init__(self) -> None:
        for name in ("tdp_w", "chips", "cores", "threads", "base_ghz", "turbo_ghz", "memory_gb", "psu_count"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"machine description: {name} must be a positive number, got {value!r}")
        if self.threads < self.cores:
            raise ConfigError(f"machine description: threads ({self.threads}) fewer than cores ({self.cores})")

    def features(self, utilization: float) -> list[float]:
        return [
            math.log(self.tdp_w * self.chips),
            math.log(self.chips),
            math.log(self.cores),
            math.log(self.threads),
            self.base_ghz,
            max(self.turbo_ghz, self.base_ghz),
            math.log(self.memory_gb),
            float(self.psu_count),
            1.0 if self.amd else 0.0,
            float(self.year),
            math.log(self.threads / self.cores),
            min(max(utilization, 0.0), 1.0),
        ]


@dataclass(frozen=True)
class CurvePoint:
    utilization: float
    power_w: float
    power_w_low: float
    power_w_high: float

    def to_dict(self) -> dict[str, float]:
        return {
            "utilization": self.utilization,
            "power_w": round(self.power_w, 2),
            "power_w_low": round(self.power_w_low, 2),
            "power_w_high": round(self.power_w_high, 2),
        }


@dataclass(frozen=True)
class _Tree:
    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]
    leaf: tuple[bool, ...]
    missing_left: tuple[bool, ...]

    def predict(self, x: Sequence[float]) -> float:
        node = 0
        while not self.leaf[node]:
            v = x[self.feature[node]]
            go_left = self.missing_left[node] if math.isnan(v) else v <= self.threshold[node]
            node = self.left[node] if go_left else self.right[node]
        return self.value[node]


class PowerModel:
    """Shipped model parameters: trees, baseline and interval quantiles per load level."""

    def __init__(self, params: dict[str, Any], source: str = MODEL_RESOURCE) -> None:
        try:
            if tuple(params["features"]) != FEATURES:
                raise ConfigError(f"{source}: features {params['features']} differ from this wattwise's {FEATURES}")
            self.baseline = float(params["baseline"])
            self.trees = [
                _Tree(tuple(t["feature"]), tuple(float(v) for v in t["threshold"]), tuple(t["left"]),
                      tuple(t["right"]), tuple(float(v) for v in t["value"]), tuple(bool(v) for v in t["leaf"]),
                      tuple(bool(v) for v in t["missing_left"]))
                for t in params["trees"]
            ]
            interval = params["interval"]
            self.interval_levels = tuple(float(v) for v in interval["levels"])
            self.log_ratio_low = tuple(float(v) for v in interval["log_ratio_low"])
            self.log_ratio_high = tuple(float(v) for v in interval["log_ratio_high"])
            self.quantiles = tuple(float(v) for v in interval["quantiles"])
            self.coverage = interval.get("time_split_coverage")
            self.defaults: dict[str, Any] = dict(params.get("defaults", {}))
            self.evaluation: dict[str, Any] = dict(params.get("evaluation", {}))
            self.trained_years = tuple(params.get("trained_years", (2007, 2020)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: not a wattwise power model ({type(exc).__name__}: {exc})") from exc
        self.source = source

    @property
    def interval_percent(self) -> int:
        return round((self.quantiles[1] - self.quantiles[0]) * 100)

    def log_power(self, x: Sequence[float]) -> float:
        return self.baseline + sum(tree.predict(x) for tree in self.trees)

    def _ratio_bounds(self, utilization: float) -> tuple[float, float]:
        lo = _interp(utilization, self.interval_levels, self.log_ratio_low)
        hi = _interp(utilization, self.interval_levels, self.log_ratio_high)
        return math.exp(lo), math.exp(hi)

    def curve(self, spec: MachineSpec, levels: Sequence[float] = LOAD_LEVELS) -> list[CurvePoint]:
        """Power with its interval at each utilization in `levels` (ascending); monotone by construction
        (the trees are constrained in utilization) and by a running maximum against rounding."""
        points: list[CurvePoint] = []
        running = 0.0
        for u in levels:
            p = max(math.exp(self.log_power(spec.features(u))), running)
            running = p
            low, high = self._ratio_bounds(u)
            points.append(CurvePoint(u, p, p * low, p * high))
        # bounds monotone too (the ratios vary a little between levels)
        for i in range(1, len(points)):
            prev, cur = points[i - 1], points[i]
            points[i] = CurvePoint(cur.utilization, cur.power_w, max(cur.power_w_low, prev.power_w_low),
                                   max(cur.power_w_high, prev.power_w_high))
        return points


def interval_scaled(points: Sequence[CurvePoint], factor: float) -> list[CurvePoint]:
    """The curve scaled by `factor` (a VM's share of its host), interval included."""
    return [CurvePoint(p.utilization, p.power_w * factor, p.power_w_low * factor, p.power_w_high * factor)
            for p in points]


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


@cache
def load_model() -> PowerModel:
    """The model shipped with wattwise (fitted by scripts/fit-power-model.py)."""
    try:
        text = resources.files("wattwise").joinpath(MODEL_RESOURCE).read_text()
    except OSError as exc:
        raise ConfigError(f"the shipped power model {MODEL_RESOURCE} is missing: {exc}") from exc
    return PowerModel(json.loads(text))
