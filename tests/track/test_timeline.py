"""Energy over commits on a git repository the test makes: 5 commits, the fourth doubles the work."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import wattwise
from wattwise.analysis.timeline import CommitPoint, build_timeline, find_change_points
from wattwise.errors import WattwiseError
from wattwise.measure.gitinfo import repository_key
from wattwise.store import Store

RUNS_PER_COMMIT = 4
WORK = [300_000, 300_000, 300_000, 600_000, 600_000]  # commit 4 doubles the work


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    base = tmp_path_factory.mktemp("timeline")
    repo = base / "shop"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    db = str(base / "timeline.db")
    commits = []
    old = Path.cwd()
    os.chdir(repo)
    try:
        for i, work in enumerate(WORK):
            (repo / "work.txt").write_text(str(work))
            (repo / "version.txt").write_text(str(i))
            _git(repo, "add", "work.txt", "version.txt")
            date = f"2026-01-0{i + 1}T00:00:00"
            subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"commit {i}"], check=True,
                           env={**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
            commits.append(_git(repo, "rev-parse", "HEAD"))
            for _ in range(RUNS_PER_COMMIT):
                with wattwise.track("bench", db=db, interval="50ms") as t, t.phase("work"):
                    _burn(int((repo / "work.txt").read_text()))
    finally:
        os.chdir(old)
    return repo, db, commits


def test_runs_record_their_commit_and_the_doubling_is_the_one_change_point(measured) -> None:
    repo, db, commits = measured
    timeline = build_timeline(Store(f"sqlite:///{db}"), str(repo), branch="main", phase="work")
    assert [p.commit for p in timeline.points] == commits  # ordered by commit time
    assert all(len(p.values) == RUNS_PER_COMMIT for p in timeline.points)
    assert timeline.metric == "unit_energy_j"  # the tracked process's own energy
    flagged = [p.commit for p in timeline.points if p.change]
    assert flagged == [commits[3]]
    change = timeline.points[3]
    assert change.change_relative is not None and change.change_relative > 0.3


def test_cli_json_and_plot(measured, run_cli, tmp_path: Path) -> None:
    repo, db, commits = measured
    out = run_cli("timeline", "--repo", str(repo), "--branch", "main", "--phase", "work", "--json", "--db", db,
                  check=True)
    data = json.loads(out.stdout)
    assert [p["commit"] for p in data["points"] if p["change"]] == [commits[3]]
    plot = tmp_path / "t.png"
    table = run_cli("timeline", "--repo", str(repo), "--phase", "work", "--plot", str(plot), "--db", db, check=True)
    assert commits[3][:8] in table.stdout and plot.stat().st_size > 1000
    missing = run_cli("timeline", "--repo", "/nowhere", "--db", db)
    assert missing.returncode == 2 and "no finished runs of repository '/nowhere'" in missing.stderr


def test_page_and_badge(measured) -> None:
    from fastapi.testclient import TestClient

    from wattwise.web.app import create_app

    repo, db, commits = measured
    client = TestClient(create_app(store=Store(f"sqlite:///{db}")))
    page = client.get("/timeline", params={"repo": str(repo), "branch": "main", "phase": "work"})
    assert page.status_code == 200 and commits[3][:8] in page.text and 'id="timeline"' in page.text
    badge = client.get("/timeline/badge.svg", params={"repo": str(repo), "phase": "work"})
    assert badge.status_code == 200 and badge.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in badge.text and "energy: ≈ " in badge.text
    api = client.get("/api/timeline", params={"repo": str(repo), "phase": "work"})
    assert api.status_code == 200 and len(api.json()["points"]) == 5
    assert client.get("/api/timeline", params={"repo": "/nowhere"}).status_code == 404


def _point(values: list[float]) -> CommitPoint:
    mean = sum(values) / len(values)
    return CommitPoint("c", None, [], values, mean, None, None, None, False)


def test_change_points_by_hand() -> None:
    flat = [_point([10.0, 10.2, 9.8]) for _ in range(4)]
    find_change_points(flat)
    assert not any(p.change for p in flat)  # noise alone is no change
    step = [_point([10.0, 10.2, 9.8]) for _ in range(3)] + [_point([20.0, 20.2, 19.8]) for _ in range(3)]
    find_change_points(step, window=2)
    assert [p.change for p in step] == [False, False, False, True, False, False]
    assert step[3].change_relative == pytest.approx(1.0)


def test_one_workload_at_a_time_and_no_dirty_runs(measured, tmp_path: Path) -> None:
    repo, db, _commits = measured
    store = Store(f"sqlite:///{db}")
    old = Path.cwd()
    os.chdir(repo)
    try:
        with wattwise.track("other workload", db=db, interval="50ms"):  # same commit, another workload
            _burn(10_000)
        (repo / "work.txt").write_text("999")  # uncommitted change: this run did not measure the commit
        with wattwise.track("bench", db=db, interval="50ms"):
            _burn(10_000)
        _git(repo, "checkout", "--", "work.txt")
    finally:
        os.chdir(old)
    with pytest.raises(WattwiseError, match=r"2 different workloads: 'bench' \(20 runs\), 'other workload' \(1 runs\)"):
        build_timeline(store, str(repo), phase="work")
    timeline = build_timeline(store, str(repo), name="bench", phase="work")
    assert sum(len(p.values) for p in timeline.points) == 20  # the dirty run is left out
    assert timeline.name == "bench"
    with_dirty = build_timeline(store, str(repo), name="bench", include_dirty=True)
    assert sum(len(p.values) for p in with_dirty.points) == 21


def test_repository_names_carry_no_credentials() -> None:
    assert repository_key("https://gitlab-ci-token:glcbt-SECRET@gitlab.example.com/g/p.git") == "gitlab.example.com/g/p"
    assert repository_key("git@github.com:acme/shop.git") == "github.com/acme/shop"
    assert repository_key("ssh://git@GitHub.com/acme/shop") == "github.com/acme/shop"
    assert repository_key("https://github.com/acme/shop") == "github.com/acme/shop"
    assert repository_key("/src/shop") == "/src/shop"
