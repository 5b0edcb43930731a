"""Plots of a sweep: mean saving with its 95 % interval against each varying parameter, and a wait × length
map per policy.

Each point pools the per-arrival savings (every job of every configuration with that value: arrivals, seeds
and the other parameters) and shows their mean with the 95 % t-interval of the mean as error bars. The y axis
always includes 0, so that a difference of a few tenths of a point is not drawn as a cliff.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wattwise.schedule.sweep import Grid, mean_ci95


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pooled(rows: list[dict[str, Any]]) -> list[float]:
    out: list[float] = []
    for row in rows:
        values = row.get("savings_pct")
        out += list(values) if values is not None else [row["saving_pct"]]
    return out


def plot_sweep(grid: Grid, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write ``saving_by_<parameter>.png`` per varying parameter and ``saving_wait_length.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    policies = grid.axes["policy"]
    extra: dict[str, list[Any]] = {"zone": list(grid.carbons), "signal": list(grid.signals),
                                   "month": list(grid.months)}
    for key in [*(k for k, v in extra.items() if len(v) > 1), *grid.varying]:
        if key == "policy":
            continue
        values: list[Any] = extra[key] if key in extra else grid.axes[key]
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(len(values))
        width = 0.24 / max(1, len(policies))  # a small dodge so that error bars do not overlap
        low_all = 0.0
        for n, policy in enumerate(policies):
            stats = [mean_ci95(_pooled([r for r in rows if r["policy"] == policy and r[key] == value]))
                     for value in values]
            means = np.array([m for m, _, _ in stats])
            lows = np.array([lo if math.isfinite(lo) else m for m, lo, _ in stats])
            highs = np.array([hi if math.isfinite(hi) else m for m, _, hi in stats])
            offset = (n - (len(policies) - 1) / 2) * width
            ax.errorbar(x + offset, means, yerr=[means - lows, highs - means], marker="o", capsize=3,
                        label=policy, linestyle="-")
            if np.isfinite(lows).any():
                low_all = min(low_all, float(np.nanmin(lows)))
        ax.set_xticks(x, [_label(v) for v in values])
        ax.set_ylim(bottom=min(0.0, low_all * 1.1))
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel(key)
        ax.set_ylabel("carbon saved against agnostic (%)")
        ax.set_title(f"saving by {key}: mean over arrivals, 95 % interval")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        target = out / f"saving_by_{key}.png"
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(target)
    if "wait_h" in grid.varying and "length_h" in grid.varying and grid.jobs_path is None:
        written.append(_heatmap(grid, rows, out / "saving_wait_length.png"))
    return written


def _heatmap(grid: Grid, rows: list[dict[str, Any]], target: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    policies = grid.axes["policy"]
    waits, lengths = grid.axes["wait_h"], grid.axes["length_h"]
    fig, axes = plt.subplots(1, len(policies), figsize=(5.5 * len(policies), 4.5), squeeze=False)
    tables = []
    for policy in policies:
        table = np.full((len(lengths), len(waits)), np.nan)
        for i, length in enumerate(lengths):
            for j, wait in enumerate(waits):
                chosen = _pooled([r for r in rows if r["policy"] == policy and r["length_h"] == length
                                  and r["wait_h"] == wait])
                if chosen:
                    table[i, j] = float(np.mean(chosen))
        tables.append(table)
    finite = [t[np.isfinite(t)] for t in tables]
    vmax = max([float(f.max()) for f in finite if f.size] + [1e-9])
    vmin = min([float(f.min()) for f in finite if f.size] + [0.0])
    for ax, policy, table in zip(axes[0], policies, tables, strict=True):
        image = ax.imshow(table, origin="lower", aspect="auto", cmap="Greens", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(waits)), [f"{w:g}" for w in waits])
        ax.set_yticks(range(len(lengths)), [f"{v:g}" for v in lengths])
        ax.set_xlabel("waiting time (h)")
        ax.set_ylabel("job length (h)")
        ax.set_title(f"{policy}: mean saving (%)")
        for i in range(len(lengths)):
            for j in range(len(waits)):
                if np.isfinite(table[i, j]):
                    dark = (table[i, j] - vmin) / (vmax - vmin or 1) > 0.6
                    ax.text(j, i, f"{table[i, j]:.1f}", ha="center", va="center", fontsize=9,
                            color="white" if dark else "black")
        fig.colorbar(image, ax=ax, label="saving (%)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
