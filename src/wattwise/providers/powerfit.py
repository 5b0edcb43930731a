"""Fitting and evaluating load→power models on SPECpower results (scripts/fit-power-model.py, benchmarks).

Needs the `bench` extra (scikit-learn; xgboost for the GMT-style comparison): run time never imports this
module. Reads the SPECpower CSV shipped in `data/specpower/` (provenance in data/README.md), one row per
published result with wall power at active idle and 10 … 100 % target load.

Evaluation protocol (the same for every method):
- grouped cross-validation: 5 folds, a server model (vendor + model name) never in train and test at once;
- time split: train on results published before `TEST_FROM_YEAR`, test on those published from it on.
MAPE = mean of |predicted − measured| / measured over the 11 load levels of every test server.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wattwise.errors import ConfigError
from wattwise.providers.powermodel import FEATURES, LOAD_LEVELS, MachineSpec

__all__ = [
    "TEST_FROM_YEAR",
    "Server",
    "codecarbon_curve",
    "cross_validated",
    "export_trees",
    "fit_hgb",
    "fit_xgb",
    "load_specpower",
    "mape",
    "teads_curve",
]

TEST_FROM_YEAR = 2019
LEVEL_COLUMNS = ("ActiveIdle", *(f"{k}_AvgPower" for k in range(10, 101, 10)))
HGB_PARAMS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 20}
XGB_PARAMS: dict[str, Any] = {"n_estimators": 300, "max_depth": 5, "learning_rate": 0.05}
Predictor = Callable[[Sequence["Server"]], np.ndarray]
Fitter = Callable[[Sequence["Server"]], Predictor]


@dataclass(frozen=True)
class Server:
    group: str  # vendor | model: the unit of grouped cross-validation
    published: int  # publication year
    spec: MachineSpec
    power_w: tuple[float, ...]  # measured at LOAD_LEVELS


def _number(row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _turbo_ghz(row: dict[str, str], base_ghz: float) -> float:
    turbo = _number(row, "TurboBoostGHz")
    if math.isnan(turbo):
        match = re.search(r"up to\s*([\d.]+)\s*GHz", row.get("HW_CPUChars", ""), re.IGNORECASE)
        turbo = float(match.group(1)) if match else base_ghz
    return max(turbo, base_ghz)


def load_specpower(path: str | Path) -> list[Server]:
    """Servers with a TDP and all 11 power levels (rows without are skipped: 10 of 551 lack a TDP)."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except OSError as exc:
        raise ConfigError(f"cannot read SPECpower data {path}: {exc.strerror}") from exc
    servers = []
    for row in rows:
        power = tuple(_number(row, c) for c in LEVEL_COLUMNS)
        tdp = _number(row, "TDP")
        if math.isnan(tdp) or any(math.isnan(p) or p <= 0 for p in power):
            continue
        base = _number(row, "HW_CPUFreq") / 1000
        psu = _number(row, "NumOfPSU")
        spec = MachineSpec(
            tdp_w=tdp, chips=int(_number(row, "CPUChips")), cores=int(_number(row, "CPUCores")),
            threads=int(_number(row, "CPUThreads")), base_ghz=base, turbo_ghz=_turbo_ghz(row, base),
            memory_gb=_number(row, "HW_MemAmountGB"), psu_count=1 if math.isnan(psu) else int(psu),
            amd=row.get("CPUMake", "").strip().lower() == "amd",
            year=int(_number(row, "Hardware_Availability_Year")),
        )
        published = int(row["Publication"].strip()[-4:])
        servers.append(Server(f"{row['HW_Vendor']}|{row['HW_Model']}", published, spec, power))
    return servers


def long_table(servers: Sequence[Server]) -> tuple[np.ndarray, np.ndarray]:
    """One row per (server, load level): FEATURES and measured power."""
    x = np.array([s.spec.features(u) for s in servers for u in LOAD_LEVELS], dtype=float)
    y = np.array([p for s in servers for p in s.power_w], dtype=float)
    return x, y


def measured(servers: Sequence[Server]) -> np.ndarray:
    return np.array([s.power_w for s in servers], dtype=float)


def mape(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, list[float]]:
    """Overall MAPE (%) and MAPE per load level, for (servers × levels) arrays."""
    error = np.abs(predicted - actual) / actual * 100
    return float(error.mean()), [float(v) for v in error.mean(axis=0)]


# --- the baselines --------------------------------------------------------------------------------------------

def teads_curve(servers: Sequence[Server]) -> np.ndarray:
    """wattwise's previous default: TDP × chips × Teads ratios, linearly interpolated."""
    from wattwise.providers.estimate import PowerCurve

    rows = []
    for s in servers:
        curve = PowerCurve.from_tdp(s.spec.tdp_w * s.spec.chips, "SPECpower TDP")
        rows.append([curve.power_w(u) for u in LOAD_LEVELS])
    return np.array(rows)


def _codecarbon_dimms(memory_gb: float) -> int:
    if memory_gb <= 2:
        return 1
    if memory_gb <= 16:
        return 2
    if memory_gb <= 32:
        return 4
    if memory_gb <= 64:
        return 4
    if memory_gb <= 128:
        return 8
    for size in (128, 64, 32, 16, 8, 4):
        if size <= memory_gb / 8:
            return min(math.ceil(memory_gb / size), 32)
    return 8


def _codecarbon_ram_w(memory_gb: float, per_dimm_w: float = 5.0) -> float:
    n = _codecarbon_dimms(memory_gb)
    tiers = ((4, 1.0), (4, 0.9), (8, 0.8), (math.inf, 0.7))
    total, left = 0.0, float(n)
    for size, factor in tiers:
        take = min(left, size)
        total += per_dimm_w * factor * take
        left -= take
    return max(total, 2 * per_dimm_w)


def codecarbon_curve(servers: Sequence[Server]) -> np.ndarray:
    """CodeCarbon 3.x without a power sensor, as its methodology documents it: CPU = TDP × (0.1 + 0.9 × load³)
    (machine "cpu_load" mode), RAM = 5 W per DIMM (DIMM count guessed from the memory size, with decreasing
    power per DIMM beyond 4, 8 and 16 DIMMs). TDP × chips is used, which favours CodeCarbon on multi-socket
    servers (it looks up one CPU model)."""
    rows = []
    for s in servers:
        tdp = s.spec.tdp_w * s.spec.chips
        ram = _codecarbon_ram_w(s.spec.memory_gb)
        rows.append([tdp * (0.1 + 0.9 * u**3) + ram for u in LOAD_LEVELS])
    return np.array(rows)


# --- fitted models ---------------------------------------------------------------------------------------------

def fit_hgb(servers: Sequence[Server]) -> Any:
    """wattwise's model: gradient-boosted trees on ln(power), monotone increasing in utilization."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # type: ignore[import-untyped,import-not-found,unused-ignore]

    x, y = long_table(servers)
    constraints = [0] * (len(FEATURES) - 1) + [1]
    return HistGradientBoostingRegressor(monotonic_cst=constraints, random_state=0, **HGB_PARAMS).fit(x, np.log(y))


def hgb_predictor(servers: Sequence[Server]) -> Predictor:
    model = fit_hgb(servers)

    def predict(test: Sequence[Server]) -> np.ndarray:
        x, _ = long_table(test)
        return np.maximum.accumulate(np.exp(model.predict(x)).reshape(len(test), len(LOAD_LEVELS)), axis=1)

    return predict


def xgb_predictor(servers: Sequence[Server]) -> Predictor:
    """GMT-style (green-coding cloud-energy): XGBoost on the hardware facts plus utilization, power in W."""
    import xgboost  # type: ignore[import-not-found,unused-ignore]

    x, y = long_table(servers)
    model = xgboost.XGBRegressor(random_state=0, n_jobs=2, **XGB_PARAMS).fit(x, y)

    def predict(test: Sequence[Server]) -> np.ndarray:
        tx, _ = long_table(test)
        return np.asarray(model.predict(tx), dtype=float).reshape(len(test), len(LOAD_LEVELS))

    return predict


fit_xgb = xgb_predictor


def cross_validated(servers: Sequence[Server], fitter: Fitter, folds: int = 5) -> np.ndarray:
    """Out-of-fold predictions, grouped by server model."""
    from sklearn.model_selection import GroupKFold  # type: ignore[import-untyped,import-not-found,unused-ignore]

    groups = [s.group for s in servers]
    out = np.zeros((len(servers), len(LOAD_LEVELS)))
    for train, test in GroupKFold(n_splits=folds).split(np.zeros(len(servers)), groups=groups):
        predict = fitter([servers[i] for i in train])
        out[test] = predict([servers[i] for i in test])
    return out


def time_split(servers: Sequence[Server]) -> tuple[list[Server], list[Server]]:
    train = [s for s in servers if s.published < TEST_FROM_YEAR]
    test = [s for s in servers if s.published >= TEST_FROM_YEAR]
    return train, test


def interval_from_residuals(predicted: np.ndarray, actual: np.ndarray,
                            quantiles: tuple[float, float] = (0.05, 0.95)) -> tuple[list[float], list[float]]:
    """Per load level, the quantiles of ln(measured / predicted)."""
    log_ratio = np.log(actual / predicted)
    low = np.quantile(log_ratio, quantiles[0], axis=0)
    high = np.quantile(log_ratio, quantiles[1], axis=0)
    return [float(v) for v in low], [float(v) for v in high]


def coverage(predicted: np.ndarray, actual: np.ndarray, low: Sequence[float], high: Sequence[float]) -> float:
    lo = predicted * np.exp(np.asarray(low))
    hi = predicted * np.exp(np.asarray(high))
    return float(np.mean((actual >= lo) & (actual <= hi)))


def export_trees(model: Any) -> dict[str, Any]:
    """A fitted HistGradientBoostingRegressor as plain data for `powermodel.PowerModel`."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append({
            "feature": [int(v) for v in nodes["feature_idx"]],
            "threshold": [float(v) for v in nodes["num_threshold"]],
            "left": [int(v) for v in nodes["left"]],
            "right": [int(v) for v in nodes["right"]],
            "value": [float(v) for v in nodes["value"]],
            "leaf": [int(v) for v in nodes["is_leaf"]],
            "missing_left": [int(v) for v in nodes["missing_go_to_left"]],
        })
    return {"features": list(FEATURES), "baseline": float(np.ravel(model._baseline_prediction)[0]), "trees": trees}
