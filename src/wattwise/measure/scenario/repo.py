"""GMT's `--uri` and `--filename`: the root a scenario is judged against, and its files inside it.

`--uri` is a local folder (used as it is) or a git repository: a URL (https, http, ssh, git, file, or
`user@host:path`), or a local repository together with `--branch`/`--commit-hash`. A repository is cloned
shallowly into a temporary folder that is removed afterwards; a clone with a symlink that leads out of it is
refused (as GMT does). Each `--filename` is relative to the root and may not leave it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.errors import WattwiseError

__all__ = ["Checkout", "is_git_url", "open_uri"]

_URL_RE = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
_REF_RE = re.compile(r"^[\w./-]+$")
CLONE_TIMEOUT_S = 600.0


@dataclass
class Checkout:
    root: Path
    files: list[Path]
    uri: str
    branch: str | None = None
    commit: str | None = None
    temporary: Path | None = None  # the clone, removed by open_uri
    settings: dict[str, object] = field(default_factory=dict)


def is_git_url(uri: str) -> bool:
    return bool(_URL_RE.match(uri))


def _git(*args: str, cwd: Path | None = None, what: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=CLONE_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise WattwiseError("git is not installed: it is needed for a repository --uri") from exc
    except subprocess.TimeoutExpired as exc:
        raise WattwiseError(f"{what}: git did not finish within {CLONE_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        detail = " / ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-3:])
        raise WattwiseError(f"{what} failed: {detail}")
    return done.stdout.strip()


def _check_ref(value: str | None, flag: str) -> None:
    if value is not None and (not _REF_RE.match(value) or value.startswith("-")):
        raise WattwiseError(
            f"{flag} {value!r} is not a branch name or commit hash (letters, digits, '.', '_', '/', '-')"
        )


def _clone(uri: str, branch: str | None, commit: str | None, into: Path) -> None:
    source = uri
    if not is_git_url(uri):
        source = Path(uri).resolve().as_uri()  # file:// so that --depth is honoured for a local repository
    if commit:
        _git("init", "-q", str(into), what="preparing the clone")
        _git("remote", "add", "origin", "--", source, cwd=into, what="preparing the clone")
        try:
            _git("fetch", "-q", "--depth", "1", "origin", commit, cwd=into, what=f"fetching commit {commit}")
        except WattwiseError:  # servers that do not hand out single commits: fetch the branch(es), then pick it
            _git("fetch", "-q", "origin", *([branch] if branch else []), cwd=into, what=f"fetching {uri}")
        _git("checkout", "-q", "--detach", commit, cwd=into, what=f"checking out commit {commit}")
        return
    args = ["clone", "-q", "--depth", "1", "--single-branch", "--recurse-submodules", "--shallow-submodules"]
    if branch:
        args += ["--branch", branch]
    _git(*args, "--", source, str(into), what=f"cloning {uri}" + (f" (branch {branch})" if branch else ""))


def _outside_symlink(root: Path) -> Path | None:
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                return path
    return None


@contextmanager
def open_uri(
    uri: str, filenames: list[str], branch: str | None = None, commit: str | None = None
) -> Iterator[Checkout]:
    """The root and scenario files of `--uri`/`--filename`; a clone is removed when the block ends."""
    _check_ref(branch, "--branch")
    _check_ref(commit, "--commit-hash")
    names = filenames or ["usage_scenario.yml"]
    temporary: Path | None = None
    try:
        if is_git_url(uri) or branch or commit:
            if not is_git_url(uri) and not Path(uri).is_dir():
                raise WattwiseError(f"--uri {uri}: no such folder, and not a git URL")
            temporary = Path(tempfile.mkdtemp(prefix="wattwise-uri-"))
            root = temporary / "repo"
            _clone(uri, branch, commit, root)
            root = root.resolve()
            bad = _outside_symlink(root)
            if bad is not None:
                raise WattwiseError(
                    f"--uri {uri}: the repository has a symlink that leads out of it ({bad.relative_to(root)}); "
                    "refused for a cloned repository"
                )
        else:
            root = Path(uri).expanduser().resolve()
            if not root.is_dir():
                raise WattwiseError(f"--uri {uri}: no such folder")
        files = []
        for name in names:
            if Path(name).is_absolute():
                raise WattwiseError(f"--filename {name}: give a path relative to --uri")
            path = (root / name).resolve()
            if not path.is_relative_to(root):
                raise WattwiseError(f"--filename {name}: leads out of --uri {uri}")
            if not path.is_file():
                raise WattwiseError(f"--filename {name}: no such file in {uri}")
            files.append(path)
        head = None
        if (root / ".git").exists():
            try:
                head = _git("rev-parse", "HEAD", cwd=root, what="reading the commit")
            except WattwiseError:
                head = None
        checkout = Checkout(root, files, uri, branch, head, temporary)
        checkout.settings = {"uri": uri, "branch": branch, "commit_hash": head, "filenames": names}
        yield checkout
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
