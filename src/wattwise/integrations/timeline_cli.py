"""`wattwise timeline`: energy per phase over the commits of a repository, with change points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wattwise.clitools import DbOption, JsonOption, console

if TYPE_CHECKING:
    from wattwise.analysis.timeline import Timeline

__all__ = ["plot_timeline", "register", "timeline"]


def register(app: typer.Typer) -> None:
    app.command("timeline")(timeline)


def timeline(
    repo: Annotated[str, typer.Option("--repo", help="The repository: a checkout folder here (e.g. .), or its origin "
                                      "URL or checkout root as runs recorded it (settings.git).")],
    branch: Annotated[str | None, typer.Option("--branch", help="Only runs of this branch.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only runs of this name (one workload; needed when the "
                                             "repository's runs measure several).")] = None,
    include_dirty: Annotated[bool, typer.Option("--include-dirty", help="Also runs measured with uncommitted "
                                                "changes.")] = False,
    phase: Annotated[str, typer.Option("--phase", help="Which phase.")] = "[RUNTIME]",
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="unit_energy_j, energy_j, duration_s, carbon_g or mean_power_w (default: the "
                     "unit's energy where every run has it, else the machine's)."),
    ] = None,
    window: Annotated[int, typer.Option("--window", help="Commits on each side of the change-point test.")] = 3,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the change-point test.")] = 0.05,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a chart (PNG or SVG).")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Energy of one phase over commits, with the spread of repeated runs and change points.

    A change point is a commit where Welch's t-test between the runs of the commits before it and those from it on
    finds a difference (p < alpha), the clearest among its neighbours.

    Examples:\n
      wattwise timeline --repo https://github.com/acme/shop.git --branch main --name "pytest shop"\n
      wattwise timeline --repo /src/shop --phase "load data" --plot timeline.png\n
      wattwise timeline --repo /src/shop --json | jq '.points[] | select(.change)'
    """
    from wattwise.analysis.timeline import build_timeline
    from wattwise.measure.gitinfo import git_info, repository_key
    from wattwise.store import open_store
    from wattwise.units import format_si

    info = git_info(repo) if Path(repo).is_dir() else None
    # a checkout here: the name its runs recorded; a URL: the same name without credentials or .git
    repo = str(info["repo"]) if info is not None else repository_key(repo)
    result = build_timeline(open_store(db), repo, branch=branch, name=name, include_dirty=include_dirty,
                            phase=phase, metric=metric, window=window, alpha=alpha)
    if plot is not None:
        plot_timeline(result, plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    from rich.table import Table

    table = Table(title=f"{result.repo} {result.branch or '(all branches)'} — {result.name}: {result.phase}, "
                        f"{result.metric}")
    for column in ("commit", "runs", "mean ± sd", "95 % CI", "change"):
        table.add_column(column, justify="left" if column == "commit" else "right")
    for p in result.points:
        mark = "≈" if p.estimated else ""
        sd = f" ± {format_si(p.sd, result.unit)}" if p.sd is not None else ""
        ci = (f"{format_si(p.ci_low, result.unit)} – {format_si(p.ci_high, result.unit)}"
              if p.ci_low is not None and p.ci_high is not None else "–")
        change = f"{p.change_relative:+.0%} (p = {p.change_p:.2g})" if p.change and p.change_relative is not None \
            else ""
        table.add_row(p.short, str(len(p.values)), f"{mark}{format_si(p.mean, result.unit)}{sd}", ci, change)
    console.print(table)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False, markup=False)


def plot_timeline(result: Timeline, path: Path) -> None:
    """Mean with its 95 % interval per commit, every run as a dot, change points marked; y-axis from zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(result.points)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(xs) + 2), 4), layout="constrained")
    for x, p in zip(xs, result.points, strict=True):
        ax.scatter([x] * len(p.values), p.values, s=12, color="#90a4ae", zorder=2)
    means = [p.mean for p in result.points]
    low = [p.mean - p.ci_low if p.ci_low is not None else 0 for p in result.points]
    high = [p.ci_high - p.mean if p.ci_high is not None else 0 for p in result.points]
    ax.errorbar(xs, means, yerr=[low, high], fmt="-o", color="#2e7d32", capsize=3, zorder=3, label="mean, 95 % CI")
    for x, p in zip(xs, result.points, strict=True):
        if p.change:
            ax.axvline(x - 0.5, color="#c62828", linestyle="--", linewidth=1)
            ax.annotate(f"{p.change_relative:+.0%}", (x - 0.45, max(means) * 1.02), color="#c62828", fontsize=8)
    estimated = any(p.estimated for p in result.points)
    ax.set_xticks(xs, [p.short for p in result.points], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"{'≈ ' if estimated else ''}{result.metric} ({result.unit})")
    ax.set_title(f"{result.phase} over commits ({result.branch or 'all branches'})", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    plt.close(fig)
