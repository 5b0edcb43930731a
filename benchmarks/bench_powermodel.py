"""Power model accuracy: four load→power methods on the same SPECpower servers, side by side.

Methods: Teads × TDP (wattwise's previous default), CodeCarbon's documented estimate without a sensor
(TDP × (0.1 + 0.9·load³) + 5 W per guessed DIMM), a GMT-style XGBoost (cloud-energy: hardware facts +
utilization → watts) and wattwise's model (monotone gradient-boosted trees on ln W, `powermodel`).
Protocols: grouped 5-fold cross-validation by server model, and a time split (train on results published
before 2019, test on 2019–2020). MAPE in % per load level and overall; coverage of wattwise's 90 % interval
(quantiles of the training years' cross-validated residuals) on the time-split test servers.

Target: wattwise's model has the lowest time-split MAPE of the four (figure = ours / best other, ≤ 1); the
interval's coverage is printed, not a target (nominal 90 %). Needs the `bench` extra (scikit-learn; xgboost optional:
its column is skipped with a message when it is absent). Data: data/specpower/specpower-2007-2020.csv.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# one OpenMP thread: scikit-learn's spinning worker threads slow the fits 40-fold on a busy 2-core machine
os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _target import report  # noqa: E402

CSV = HERE.parent / "data" / "specpower" / "specpower-2007-2020.csv"
LEVEL_NAMES = ["idle", *(f"{k}%" for k in range(10, 101, 10))]


def main() -> int:
    if importlib.util.find_spec("sklearn") is None:
        print("scikit-learn is not installed: install the bench extra (uv sync --extra bench); skipped")
        return 1
    from wattwise.providers import powerfit

    servers = powerfit.load_specpower(CSV)
    train, test = powerfit.time_split(servers)
    print(f"{len(servers)} SPECpower results ({len({s.group for s in servers})} server models); time split: "
          f"{len(train)} published before {powerfit.TEST_FROM_YEAR}, {len(test)} from it on")
    fixed: dict[str, Callable[[Sequence[powerfit.Server]], np.ndarray]] = {
        "Teads×TDP": powerfit.teads_curve,
        "CodeCarbon": powerfit.codecarbon_curve,
    }
    fitted: dict[str, powerfit.Fitter] = {}
    if importlib.util.find_spec("xgboost") is None:
        print("xgboost is not installed: the GMT-style XGBoost column is skipped")
    else:
        fitted["GMT XGBoost"] = powerfit.xgb_predictor
    fitted["wattwise"] = powerfit.hgb_predictor

    results: dict[str, dict[str, tuple[float, list[float]]]] = {}
    all_actual, test_actual = powerfit.measured(servers), powerfit.measured(test)
    for name, curve in fixed.items():
        results[name] = {"cv": powerfit.mape(curve(servers), all_actual),
                         "time": powerfit.mape(curve(test), test_actual)}
    wattwise_time_prediction = None
    for name, fitter in fitted.items():
        started = time.perf_counter()
        cv = powerfit.cross_validated(servers, fitter)
        prediction = fitter(train)(test)
        if name == "wattwise":
            wattwise_time_prediction = prediction
        results[name] = {"cv": powerfit.mape(cv, all_actual), "time": powerfit.mape(prediction, test_actual)}
        print(f"  {name}: fitted 6 times in {time.perf_counter() - started:.0f} s")

    names = list(results)
    for protocol, title in (("cv", "grouped 5-fold CV by server model"),
                            ("time", f"time split (test: published {powerfit.TEST_FROM_YEAR}–2020)")):
        print(f"\nMAPE (%), {title}")
        print(f"{'load':>6} " + " ".join(f"{n:>12}" for n in names))
        for i, level in enumerate(LEVEL_NAMES):
            print(f"{level:>6} " + " ".join(f"{results[n][protocol][1][i]:12.1f}" for n in names))
        print(f"{'all':>6} " + " ".join(f"{results[n][protocol][0]:12.1f}" for n in names))

    assert wattwise_time_prediction is not None
    train_cv = powerfit.cross_validated(train, powerfit.hgb_predictor)
    low, high = powerfit.interval_from_residuals(train_cv, powerfit.measured(train))
    covered = powerfit.coverage(wattwise_time_prediction, test_actual, low, high)
    print(f"\nwattwise 90 % interval (from the training years' CV residuals) covers {covered:.1%} of the "
          f"{test_actual.size} time-split test points")

    ours = results["wattwise"]["time"][0]
    best_other = min(results[n]["time"][0] for n in names if n != "wattwise")
    ok = report("powermodel_time_split_mape_vs_best_other", ours / best_other, "×", 1.0, higher_is_better=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
