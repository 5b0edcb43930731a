"""Fit wattwise's load→power model on SPECpower results and write src/wattwise/data/power_model.json.

    .venv/bin/python scripts/fit-power-model.py [--csv data/specpower/specpower-2007-2020.csv] [--out PATH]

Needs the `bench` extra (scikit-learn). Steps:
1. grouped 5-fold cross-validation by server model on all results → out-of-fold ln(measured/predicted) per
   load level → the 5th/95th percentiles become the shipped interval;
2. time split: fit on results published before 2019, test on 2019–2020 (MAPE), with the interval computed
   the same way inside the training years → its coverage on the test years is stored as `time_split_coverage`;
3. the final model is fitted on all results; its trees are exported and checked against scikit-learn's own
   predictions.
Deterministic (random_state=0): running it twice writes the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

# one OpenMP thread: scikit-learn's spinning worker threads slow the fits 40-fold on a busy 2-core machine
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from wattwise.providers import powerfit  # noqa: E402
from wattwise.providers.powermodel import LOAD_LEVELS, PowerModel  # noqa: E402

QUANTILES = (0.05, 0.95)


def typical_host(servers: list[powerfit.Server]) -> dict[str, float | int | bool]:
    """The median recent 2-chip server: the host assumed for a VM whose host is unknown."""
    recent = [s.spec for s in servers if s.published >= powerfit.TEST_FROM_YEAR and s.spec.chips == 2]
    return {
        "tdp_w": statistics.median(s.tdp_w for s in recent),
        "chips": 2,
        "cores": int(statistics.median(s.cores for s in recent)),
        "threads": int(statistics.median(s.threads for s in recent)),
        "base_ghz": statistics.median(s.base_ghz for s in recent),
        "turbo_ghz": statistics.median(s.turbo_ghz for s in recent),
        "memory_gb": statistics.median(s.memory_gb for s in recent),
        "year": max(s.spec.year for s in servers),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", default=str(ROOT / "data/specpower/specpower-2007-2020.csv"))
    parser.add_argument("--out", default=str(ROOT / "src/wattwise/data/power_model.json"))
    args = parser.parse_args(argv)
    servers = powerfit.load_specpower(args.csv)
    print(f"{len(servers)} SPECpower results, {len({s.group for s in servers})} server models")

    print("grouped 5-fold cross-validation …", flush=True)
    oof = powerfit.cross_validated(servers, powerfit.hgb_predictor)
    actual = powerfit.measured(servers)
    cv_mape, cv_levels = powerfit.mape(oof, actual)
    low, high = powerfit.interval_from_residuals(oof, actual, QUANTILES)
    print(f"  MAPE {cv_mape:.1f} %")

    print(f"time split: train < {powerfit.TEST_FROM_YEAR}, test ≥ {powerfit.TEST_FROM_YEAR} …", flush=True)
    train, test = powerfit.time_split(servers)
    predicted = powerfit.hgb_predictor(train)(test)
    test_actual = powerfit.measured(test)
    time_mape, time_levels = powerfit.mape(predicted, test_actual)
    train_oof = powerfit.cross_validated(train, powerfit.hgb_predictor)
    t_low, t_high = powerfit.interval_from_residuals(train_oof, powerfit.measured(train), QUANTILES)
    covered = powerfit.coverage(predicted, test_actual, t_low, t_high)
    print(f"  MAPE {time_mape:.1f} % on {len(test)} servers; {QUANTILES[1] - QUANTILES[0]:.0%} interval covers "
          f"{covered:.1%}")

    print("final fit on all results …", flush=True)
    model = powerfit.fit_hgb(servers)
    params = powerfit.export_trees(model)
    params.update({
        "trained_years": [min(s.published for s in servers), max(s.published for s in servers)],
        "interval": {"levels": list(LOAD_LEVELS), "quantiles": list(QUANTILES), "log_ratio_low": low,
                     "log_ratio_high": high, "time_split_coverage": round(covered, 4)},
        "defaults": {"host": typical_host(servers), "year": max(s.spec.year for s in servers)},
        "evaluation": {
            "servers": len(servers), "cv_folds": 5, "cv_mape_percent": round(cv_mape, 2),
            "cv_mape_by_level_percent": [round(v, 2) for v in cv_levels],
            "time_split_test_from": powerfit.TEST_FROM_YEAR, "time_split_test_servers": len(test),
            "time_split_mape_percent": round(time_mape, 2),
            "time_split_mape_by_level_percent": [round(v, 2) for v in time_levels],
        },
        "source": "scripts/fit-power-model.py on data/specpower/specpower-2007-2020.csv (SPECpower_ssj2008)",
    })
    # the exported trees must reproduce scikit-learn's predictions
    shipped = PowerModel(params)
    x, _ = powerfit.long_table(servers[:40])
    ours = np.array([shipped.log_power(row) for row in x])
    difference = float(np.max(np.abs(ours - model.predict(x))))
    if difference > 1e-9:
        print(f"exported trees differ from scikit-learn by {difference:g}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(params, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB, {len(params['trees'])} trees)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
