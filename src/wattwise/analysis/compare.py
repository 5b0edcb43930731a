"""Statistics over repeated runs and significance between two groups of runs.

One group (several runs of one scenario): n, mean, sample standard deviation (n − 1), coefficient of
variation (sd / mean) and the 95 % confidence interval of the mean, mean ± t(0.975, n − 1) · sd / √n.

Two groups (e.g. two branches or two machines): Welch's unequal-variances t-test,
t = (mean_b − mean_a) / √(sd_a²/n_a + sd_b²/n_b), Welch–Satterthwaite degrees of freedom, two-sided
p-value; "significant" when p < alpha (default 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wattwise.analysis.phases import summarize_run
from wattwise.errors import WattwiseError
from wattwise.store import Store

#: phase figures compared by default, from the summarize_run phase dicts
DEFAULT_METRICS = ("energy_j", "duration_s", "mean_power_w", "carbon_g")
#: phase figures that come from the machine's power; estimated wherever the phase's energy is
ENERGY_FIGURES = frozenset(
    {
        "energy_j",
        "mean_power_w",
        "peak_power_w",
        "carbon_g",
        "unit_energy_j",
        "above_baseline_energy_j",
        "unit_above_baseline_energy_j",
    }
)
CONFIDENCE = 0.95


@dataclass
class Describe:
    n: int
    mean: float | None
    sd: float | None
    cv: float | None
    ci_low: float | None
    ci_high: float | None
    min: float | None
    max: float | None


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> Describe:
    from scipy import stats

    data = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(data)
    if n == 0:
        return Describe(0, None, None, None, None, None, None, None)
    mean = sum(data) / n
    if n < 2:
        return Describe(n, mean, None, None, None, None, min(data), max(data))
    sd = math.sqrt(sum((x - mean) ** 2 for x in data) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    cv = sd / abs(mean) if mean != 0 else None
    return Describe(n, mean, sd, cv, mean - half, mean + half, min(data), max(data))


@dataclass
class Welch:
    t: float | None
    df: float | None
    p: float | None
    alpha: float
    significant: bool | None
    verdict: str
    difference: float | None  # mean_b − mean_a
    relative_difference: float | None  # (mean_b − mean_a) / mean_a


def welch(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> Welch:
    """Welch's t-test of group b against group a."""
    from scipy import stats

    da, db = describe(a), describe(b)
    diff = None if da.mean is None or db.mean is None else db.mean - da.mean
    rel = diff / da.mean if diff is not None and da.mean else None
    if da.n < 2 or db.n < 2:
        return Welch(None, None, None, alpha, None, "not enough runs (need ≥ 2 in each group)", diff, rel)
    assert da.sd is not None and db.sd is not None and diff is not None
    va, vb = da.sd**2 / da.n, db.sd**2 / db.n
    if va + vb == 0:
        significant = diff != 0
        p = 0.0 if significant else 1.0
        verdict = "significant (no spread in either group)" if significant else "not significant (identical)"
        return Welch(None, None, p, alpha, significant, verdict, diff, rel)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (da.n - 1) + vb**2 / (db.n - 1))
    p = float(2 * stats.t.sf(abs(t), df))
    significant = p < alpha
    verdict = (
        f"significant (p = {p:.3g} < {alpha:g})"
        if significant
        else f"not significant (p = {p:.3g} ≥ {alpha:g})"
    )
    return Welch(t, df, p, alpha, significant, verdict, diff, rel)


@dataclass
class Row:
    phase: str
    metric: str
    a: Describe
    b: Describe | None
    test: Welch | None
    #: some of the values come from the load→power estimate (shown with ≈)
    estimated: bool = False


def _values(summaries: list[dict[str, Any]], phase: str, metric: str) -> list[float]:
    out = []
    for summary in summaries:
        for p in summary["phases"]:
            if p["name"] == phase and p.get(metric) is not None:
                out.append(float(p[metric]))
                break
    return out


def _estimated(summaries: list[dict[str, Any]], phase: str, metric: str) -> bool:
    """Whether any run's value of this figure in this phase is estimated."""
    if metric not in ENERGY_FIGURES:
        return False
    return any(
        bool(p.get("estimated"))
        for s in summaries
        for p in s["phases"]
        if p["name"] == phase and p.get(metric) is not None
    )


def compare_summaries(
    a: list[dict[str, Any]],
    b: list[dict[str, Any]] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    phases: Sequence[str] | None = None,
    alpha: float = 0.05,
    include_hidden: bool = False,
) -> list[Row]:
    if not a:
        raise WattwiseError("nothing to compare: give at least one run")
    if phases is None:
        names: list[str] = []
        for summary in a + (b or []):
            for p in summary["phases"]:
                if (include_hidden or not p.get("hidden")) and p["name"] not in names:
                    names.append(p["name"])
        phases = names
    rows = []
    for phase in phases:
        for metric in metrics:
            va = _values(a, phase, metric)
            vb = _values(b, phase, metric) if b else None
            if not va and not vb:
                continue
            rows.append(
                Row(
                    phase,
                    metric,
                    describe(va),
                    describe(vb) if vb is not None else None,
                    welch(va, vb, alpha) if vb is not None else None,
                    _estimated(a + (b or []), phase, metric),
                )
            )
    return rows


def compare_runs(
    store: Store,
    runs: Sequence[int],
    vs: Sequence[int] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    phases: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The comparison as a JSON-ready dict: {"runs", "vs", "alpha", "rows": [...]}."""
    if not 0 < alpha < 1:
        raise WattwiseError(f"alpha must be between 0 and 1, got {alpha}")
    a = [summarize_run(store, r) for r in runs]
    b = [summarize_run(store, r) for r in vs] if vs else None
    rows = compare_summaries(a, b, metrics=metrics, phases=phases, alpha=alpha)
    names = sorted({s["name"] for s in a + (b or [])})
    return {
        "runs": list(runs),
        "vs": list(vs) if vs else [],
        "names": names,
        "alpha": alpha,
        "confidence": CONFIDENCE,
        "estimated": any(r.estimated for r in rows),
        "rows": [asdict(r) for r in rows],
    }
