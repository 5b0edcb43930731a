"""Energy over commits: the runs of one repository and branch, grouped by commit, with change points.

Runs carry their git repository, branch and commit in `settings["git"]` (the tracker, `wattwise ci` and the
measurement session record it). For one phase, each commit gets the mean and spread of its runs' energy; a commit is
a change point when Welch's t-test between the runs of the `window` commits before it and the `window` commits
from it on says the two differ (p < alpha) and no neighbouring commit differs more clearly: a statistical test
between consecutive windows, not a fixed threshold, so the spread of repeated runs decides what counts as a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from wattwise.analysis.compare import describe, welch
from wattwise.errors import WattwiseError

if TYPE_CHECKING:
    from wattwise.store import Store

__all__ = [
    "CommitPoint",
    "Timeline",
    "build_timeline",
    "find_change_points",
    "known_repositories",
]

RUNTIME = "[RUNTIME]"
#: the energy figure used, in order of preference: the unit's attributed energy, else the machine's
METRICS = ("unit_energy_j", "energy_j")
ALL_METRICS = (*METRICS, "duration_s", "carbon_g", "mean_power_w")


@dataclass
class CommitPoint:
    commit: str
    commit_time: int | None
    run_ids: list[int]
    values: list[float]
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    estimated: bool
    change: bool = False
    change_p: float | None = None
    change_relative: float | None = None

    @property
    def short(self) -> str:
        return self.commit[:8]


@dataclass
class Timeline:
    repo: str
    branch: str | None
    name: str
    phase: str
    metric: str
    unit: str
    points: list[CommitPoint]
    alpha: float
    window: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo, "branch": self.branch, "name": self.name, "phase": self.phase, "metric": self.metric,
            "unit": self.unit, "alpha": self.alpha, "window": self.window,
            "points": [{**asdict(p), "short": p.short} for p in self.points],
        }


def _phase_value(results: dict[str, Any], phase: str, metric: str) -> tuple[float | None, bool]:
    for p in results.get("phases") or []:
        if p.get("name") == phase:
            value = p.get(metric)
            return (float(value) if value is not None else None), bool(p.get("estimated"))
    return None, False


def _matches(git: dict[str, Any], repo: str, branch: str | None) -> bool:
    if repo not in (git.get("repo"), git.get("root")):
        return False
    return branch is None or git.get("branch") == branch


def _select_runs(store: Store, repo: str, branch: str | None, name: str | None, include_dirty: bool,
                 scan_limit: int) -> list[Any]:
    """The finished runs of one workload (`name`) of `repo` on `branch`; an error rather than a mix."""
    runs = [r for r in store.list_runs(limit=scan_limit, status="finished")
            if isinstance((r.settings or {}).get("git"), dict) and _matches(r.settings["git"], repo, branch)
            and (include_dirty or not r.settings["git"].get("dirty"))]
    if not runs:
        raise WattwiseError(
            f"no finished runs of repository {repo!r}{f' on branch {branch!r}' if branch else ''}"
            f"{'' if include_dirty else ' without uncommitted changes'}: runs record their git checkout when "
            "measured inside one (see `wattwise runs show ID --json`, settings.git)")
    names: dict[str, int] = {}
    for r in runs:
        names[r.name] = names.get(r.name, 0) + 1
    if name is not None:
        runs = [r for r in runs if r.name == name]
        if not runs:
            raise WattwiseError(f"no run named {name!r} in {repo!r}; names: "
                                + ", ".join(f"{n!r} ({c})" for n, c in sorted(names.items())))
    elif len(names) > 1:
        raise WattwiseError(f"the runs of {repo!r} measure {len(names)} different workloads: "
                            + ", ".join(f"{n!r} ({c} runs)" for n, c in sorted(names.items()))
                            + "; choose one with --name")
    return runs


def build_timeline(
    store: Store,
    repo: str,
    *,
    branch: str | None = None,
    name: str | None = None,
    include_dirty: bool = False,
    phase: str = RUNTIME,
    metric: str | None = None,
    window: int = 3,
    alpha: float = 0.05,
    scan_limit: int = 100_000,
) -> Timeline:
    """The timeline of `repo` (as recorded: `host/owner/repo` or the checkout root) on `branch` (None: any), for the
    runs named `name` — one workload: a timeline never averages different workloads together. Runs measured with
    uncommitted changes (`dirty`) are left out unless `include_dirty`: their commit is not what they measured."""
    from wattwise.analysis.phases import summarize_run

    if window < 1:
        raise WattwiseError(f"--window must be at least 1 commit, got {window}")
    if metric is not None and metric not in ALL_METRICS:
        raise WattwiseError(f"metric {metric!r} is not known: use one of {', '.join(ALL_METRICS)}")
    runs = _select_runs(store, repo, branch, name, include_dirty, scan_limit)
    summaries = {r.id: (r.results if r.results else summarize_run(store, r.id)) for r in runs}
    chosen = metric
    if chosen is None:  # the unit's energy where every run has it, else the machine's
        chosen = next((m for m in METRICS if all(_phase_value(summaries[r.id], phase, m)[0] is not None
                                                  for r in runs)), "energy_j")
    by_commit: dict[str, list[tuple[int, float, bool, int | None]]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        value, estimated = _phase_value(summaries[run.id], phase, chosen)
        if value is None:
            continue
        git = run.settings["git"]
        by_commit.setdefault(git["commit"], []).append((run.id, value, estimated, git.get("commit_time")))
    if not by_commit:
        raise WattwiseError(f"no run of {repo!r} has a phase {phase!r} with {chosen}")
    points = []
    for commit, rows in by_commit.items():
        stats = describe([v for _, v, _, _ in rows])
        assert stats.mean is not None
        points.append(CommitPoint(commit, rows[0][3], [r for r, _, _, _ in rows], [v for _, v, _, _ in rows],
                                  stats.mean, stats.sd, stats.ci_low, stats.ci_high, any(e for _, _, e, _ in rows)))
    first_seen = {c: min(r for r, _, _, _ in rows) for c, rows in by_commit.items()}
    points.sort(key=lambda p: (p.commit_time if p.commit_time is not None else 0, first_seen[p.commit]))
    find_change_points(points, window=window, alpha=alpha)
    unit = "s" if chosen == "duration_s" else "g" if chosen == "carbon_g" else "W" if chosen == "mean_power_w" else "J"
    return Timeline(repo, branch, runs[0].name, phase, chosen, unit, points, alpha, window)


def find_change_points(points: list[CommitPoint], *, window: int = 3, alpha: float = 0.05) -> None:
    """Mark commits where the runs before and from them on differ (Welch, p < alpha), the clearest of neighbours."""
    tests: list[tuple[float, float] | None] = [None]
    for i in range(1, len(points)):
        before = [v for p in points[max(0, i - window):i] for v in p.values]
        after = [v for p in points[i:i + window] for v in p.values]
        result = welch(before, after, alpha)
        if result.significant and result.p is not None and result.relative_difference is not None:
            tests.append((result.p, result.relative_difference))
        else:
            tests.append(None)
    for i, test in enumerate(tests):
        if test is None:
            continue
        neighbours = [tests[j] for j in range(max(1, i - window + 1), min(len(tests), i + window))
                      if j != i and tests[j] is not None]
        if all(test[0] <= other[0] for other in neighbours if other is not None):
            points[i].change, points[i].change_p, points[i].change_relative = True, test[0], test[1]


def known_repositories(store: Store, scan_limit: int = 10_000) -> list[tuple[str, str | None, str]]:
    """(repo, branch, run name) triples that finished runs recorded, most recent first (the dashboard's picker)."""
    seen: dict[tuple[str, str | None, str], None] = {}
    for run in store.list_runs(limit=scan_limit, status="finished"):
        git = (run.settings or {}).get("git")
        if isinstance(git, dict) and git.get("repo"):
            seen.setdefault((str(git["repo"]), git.get("branch"), run.name), None)
    return list(seen)
