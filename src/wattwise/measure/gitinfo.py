"""Which commit a run measured: the git repository, branch and commit of a folder (for the energy timeline)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_info"]


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(folder: str | Path) -> dict[str, Any] | None:
    """{repo, root, branch, commit, commit_time, dirty} of the checkout `folder` is in; None if it is not one.

    `repo` is the `origin` remote's URL where there is one, else the checkout's root folder; `branch` is None on a
    detached HEAD; `commit_time` is the committer time (Unix seconds) that orders commits on a timeline."""
    folder = Path(folder)
    root = _git(folder, "rev-parse", "--show-toplevel")
    if not root:
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return None  # a repository without commits
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    commit_time = _git(folder, "log", "-1", "--format=%ct", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {
        "repo": _git(folder, "config", "--get", "remote.origin.url") or root,
        "root": root,
        "branch": None if branch in (None, "HEAD") else branch,
        "commit": commit,
        "commit_time": int(commit_time) if commit_time and commit_time.isdigit() else None,
        "dirty": bool(status),
    }
