"""Starting, stopping and killing the processes wattwise measures: the one place that does it.

    start_process(argv, cgroup_procs=..., new_session=...)   -> subprocess.Popen  (enters cgroups before exec)
    stop_process(process, grace_s=..., group=..., cgroup=...) -> exit code        (SIGINT → SIGTERM → SIGKILL)
    signal_group(process, sig)                                                     (whole process group)
    descendants(pid) / signal_all(pids, sig)                                       (process tree from /proc)
    process_start_ticks(pid) / owner_alive(pid, start_ticks)                       (is that pid still that process?)

Guarantees: `start_process` raises `WattwiseError` (not `OSError`) when the program cannot be started, naming
it; `stop_process` never raises for a process that is already gone and always reaps it (no zombie);
`owner_alive` is False for a reused pid (the start time in /proc/PID/stat differs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any, Protocol

from wattwise.errors import WattwiseError

__all__ = [
    "KillableGroup",
    "descendants",
    "owner_alive",
    "process_start_ticks",
    "signal_all",
    "signal_group",
    "start_process",
    "stop_process",
]

#: the escalation `stop_process` follows by default: ask nicely (like Ctrl-C), then terminate
DEFAULT_STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


class KillableGroup(Protocol):
    """Anything that can kill every process it holds (a `CreatedCgroup`)."""

    def kill_all(self) -> None: ...


def start_process(
    argv: Sequence[str],
    *,
    cgroup_procs: Iterable[str | os.PathLike[str]] = (),
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = False,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start `argv`. `cgroup_procs` are `cgroup.procs` files the child writes its pid into between fork and exec,
    so that its first CPU time is already counted; `env` is added to the current environment; `new_session`
    gives it its own process group (then `signal_group` reaches its children too)."""
    if not argv:
        raise WattwiseError("no command given")
    procs_files = [str(p) for p in cgroup_procs]

    def enter_cgroups() -> None:  # runs in the child between fork and exec
        pid = str(os.getpid())
        for procs in procs_files:
            with open(procs, "w") as handle:
                handle.write(pid)

    full_env: dict[str, str] | None = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        return subprocess.Popen(
            list(argv),
            stdout=stdout,
            stderr=stderr,
            preexec_fn=enter_cgroups if procs_files else None,
            env=full_env,
            cwd=cwd,
            start_new_session=new_session,
        )
    except OSError as exc:
        raise WattwiseError(f"could not start {argv[0]!r}: {exc.strerror or exc}") from exc
    except subprocess.SubprocessError as exc:  # the cgroup write failed in the child
        raise WattwiseError(f"could not start {argv[0]!r} in its cgroup: {exc}") from exc


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process group led by `process` (started with `new_session=True`)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(
    process: subprocess.Popen[bytes],
    *,
    grace_s: float = 3.0,
    signals: Sequence[int] = DEFAULT_STOP_SIGNALS,
    group: bool = False,
    cgroup: KillableGroup | None = None,
) -> int | None:
    """Stop a running process: each of `signals` in turn with `grace_s` to exit, then SIGKILL (to the whole
    cgroup first when one is given). `group` signals its process group. Returns the exit code."""
    for sig in (*signals, signal.SIGKILL):
        if process.poll() is not None:
            break
        if sig == signal.SIGKILL and cgroup is not None:
            cgroup.kill_all()
        if group:
            signal_group(process, sig)
        else:
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=grace_s if sig != signal.SIGKILL else None)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


def _parent_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None and len(stat) > 1:
            tree.setdefault(int(stat[1]), []).append(int(entry.name))
    return tree


def _read_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (field 3 on: state, ppid, ...), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces and ')': split after the last ')'
    return text[text.rfind(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren, ...), from /proc."""
    tree = _parent_map()
    out: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(tree.get(child, []))
    return out


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send `sig` to each pid; ones that are gone or not ours are skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def process_start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat field 22); None when it does not exist.
    With the pid it identifies a process even after the pid is reused."""
    stat = _read_stat(pid)
    if stat is None or len(stat) < 20:
        return None
    return int(stat[19])


def owner_alive(pid: int, start_ticks: int | None) -> bool:
    """Is the process that had `pid` and started at `start_ticks` still running (and not a zombie)?"""
    stat = _read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_ticks is None or int(stat[19]) == start_ticks


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for `pid` to disappear; True when gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _read_stat(pid) is None:
            return True
        time.sleep(0.02)
    return _read_stat(pid) is None
