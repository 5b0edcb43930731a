"""Which commit a run measured: the git repository, branch and commit of a folder (for the energy timeline)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_info", "repository_key"]


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def repository_key(url: str) -> str:
    """One name per repository, without credentials: `https://user:token@host/o/r.git`, `ssh://git@host/o/r` and
    `git@host:o/r.git` all become `host/o/r` (CI runners clone with a token in the URL: it must never be stored).
    A local path is kept as it is."""
    from urllib.parse import urlsplit

    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        host = parts.hostname or ""
        path = parts.path
    elif re.match(r"^[^/@]+@[^/:]+:", text):  # scp-like: git@host:owner/repo.git
        user_host, _, path = text.partition(":")
        host = user_host.rpartition("@")[2]
    else:
        return text
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host.lower()}/{path}" if host else path


def git_info(folder: str | Path) -> dict[str, Any] | None:
    """{repo, root, branch, commit, commit_time, dirty} of the checkout `folder` is in; None if it is not one.

    `repo` is the `origin` remote as `host/owner/repo` (`repository_key`: no credentials, one name for its https
    and ssh URLs) where there is one, else the checkout's root folder; `branch` is None on a
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
        "repo": repository_key(_git(folder, "config", "--get", "remote.origin.url") or root),
        "root": root,
        "branch": None if branch in (None, "HEAD") else branch,
        "commit": commit,
        "commit_time": int(commit_time) if commit_time and commit_time.isdigit() else None,
        "dirty": bool(status),
    }
