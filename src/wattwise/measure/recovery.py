"""Runs whose measuring process died (`kill -9`, OOM killer, power loss) are found and closed as `crashed`.

While a run is open, `MeasurementSession` keeps a marker file `<data dir>/running/<pid>-<run id>.json` with the
database URL, the owner (host, pid, process start ticks), the cgroups it made and the phase that is open. Every
wattwise command calls `recover_on_start()` first: one `listdir` of that folder (no database, no SQLAlchemy
import), so it costs nothing when nothing crashed. A marker whose owner is gone is claimed (atomic rename, so
two commands never recover the same run) and its run recovered:

- the processes left in its cgroups are killed and the cgroups removed;
- containers and networks labelled `wattwise.run_id=<id>` are removed with podman;
- the open phase is closed at the last stored sample; the run is marked `crashed` (or the outcome the owner
  had decided but could not store, e.g. `incomplete` on a full disk), its samples kept, its summary stored.

`recover_runs(store)` (`wattwise runs recover`) does the same from the database: every `running` run owned by
this host whose owner process is gone, markers or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise.measure.process import owner_alive, process_start_ticks

if TYPE_CHECKING:
    from wattwise.store import Store

__all__ = ["RECOVERED_ERROR", "Recovered", "RunMarker", "recover_on_start", "recover_runs"]

RUN_LABEL = "wattwise.run_id"
STORE_LABEL = "wattwise.store"
RECOVERED_ERROR = "the process measuring this run ({owner}) ended without closing it (killed?); samples up to then kept"
CGROUP_PARENT = "wattwise"
#: a marker whose database could not be reached is tried again by commands started this much later
RETRY_AFTER_S = 300.0


def markers_dir() -> Path:
    from wattwise.config import data_dir

    return data_dir() / "running"


@dataclass
class RunMarker:
    """The marker file of one open run (see the module docstring)."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, url: str, run_id: int, host: str, pid: int, start_ticks: int | None) -> RunMarker | None:
        """Write the marker; None (the run is still recoverable from the database) if the folder is not writable."""
        try:
            folder = markers_dir()
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        marker = cls(folder / f"{pid}-{run_id}.json", {"url": url, "run_id": run_id, "host": host, "pid": pid,
                                                       "start_ticks": start_ticks, "cgroups": [], "phase": None})
        marker._write()
        return marker

    @classmethod
    def load(cls, path: Path) -> RunMarker | None:
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.data), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # the database still knows the owner

    def add_cgroups(self, directories: list[str]) -> None:
        self.data["cgroups"] = [*self.data.get("cgroups", []), *directories]
        self._write()

    def set_phase(self, name: str | None, start_us: int | None = None, parent: str | None = None) -> None:
        """The phase that is open now (closed at the last sample if the owner dies)."""
        self.data["phase"] = None if name is None else {"name": name, "start_us": start_us, "parent": parent}
        self._write()

    def set_outcome(self, status: str, error: str | None) -> None:
        """What the owner decided but could not store (recovery stores it instead of `crashed`)."""
        self.data["outcome"] = {"status": status, "error": error}
        self._write()

    def remove(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass

    @property
    def owner_gone(self) -> bool:
        return self.data.get("host") == socket.gethostname() and not owner_alive(
            int(self.data.get("pid", 0)), self.data.get("start_ticks")
        )


@dataclass(frozen=True)
class Recovered:
    run_id: int
    status: str
    removed: list[str]  # what was cleaned up (cgroups, containers, networks)
    url: str = ""


def recover_on_start() -> list[Recovered]:
    """Called first by every wattwise command: recovers runs whose owner on this machine is gone. Costs one
    `listdir` when there is nothing to do; never raises (a recovery that fails leaves the marker for later)."""
    try:
        folder = markers_dir()
        entries = os.listdir(folder)
    except OSError:
        return []
    for entry in entries:  # a recovery whose own process died: its marker goes back for the next one
        stem, dot, claimer = entry.partition(".recovering-")
        if dot and claimer.isdigit() and not owner_alive(int(claimer), None):
            try:
                os.rename(folder / entry, folder / f"{stem}.json")
                entries.append(f"{stem}.json")
            except OSError:
                pass
    names = [n for n in entries if n.endswith(".json")]
    recovered: list[Recovered] = []
    now = time.time()
    for name in names:
        marker = RunMarker.load(folder / name)
        if marker is None or not marker.owner_gone:
            continue
        if now - float(marker.data.get("attempted_at", 0)) < RETRY_AFTER_S:
            continue  # its database was unreachable a moment ago: do not make every command wait for it
        claimed = marker.path.with_suffix(f".recovering-{os.getpid()}")
        try:
            os.rename(marker.path, claimed)  # only one process gets it
        except OSError:
            continue
        marker.path = claimed
        try:
            from wattwise.store import Store

            store = Store(str(marker.data["url"]))
            try:
                result = _recover(store, int(marker.data["run_id"]), marker.data)
            finally:
                store.close()
        except Exception:
            marker.data["attempted_at"] = now
            marker.path = folder / name
            marker._write()  # try again later
            try:
                os.unlink(claimed)
            except OSError:
                pass
            continue
        marker.remove()
        if result is not None:
            recovered.append(Recovered(result.run_id, result.status, result.removed, str(marker.data["url"])))
    return recovered


def recover_runs(store: Store, run_ids: list[int] | None = None) -> list[Recovered]:
    """Recover every `running` run of this host whose owner process is gone (or just `run_ids`), with or without
    a marker file. Runs whose owner is alive are left alone."""
    host = socket.gethostname()
    markers: dict[tuple[str, int], RunMarker] = {}
    try:
        for path in markers_dir().glob("*.json"):
            marker = RunMarker.load(path)
            if marker is not None:
                markers[(str(marker.data.get("url")), int(marker.data.get("run_id", 0)))] = marker
    except OSError:
        pass
    out: list[Recovered] = []
    for run in store.running_runs(host):
        if run_ids is not None and run.id not in run_ids:
            continue
        if run.owner_pid is None or owner_alive(run.owner_pid, run.owner_start_ticks):
            continue
        marker = markers.get((store.url, run.id))
        result = _recover(store, run.id, marker.data if marker else {"host": host, "pid": run.owner_pid})
        if marker is not None:
            marker.remove()
        if result is not None:
            out.append(result)
    return out


def _recover(store: Store, run_id: int, data: dict[str, Any]) -> Recovered | None:
    from wattwise.store import RunStatus

    run = store.get_run(run_id)
    if run.status != RunStatus.RUNNING:
        return None
    token = (run.settings or {}).get("run_token")  # a scenario's host services: cgroups scenario-<token>-<service>
    owner_pid = run.owner_pid or data.get("pid")
    removed = _remove_cgroups(run_id, [Path(p) for p in data.get("cgroups", [])], owner_pid,
                              str(token) if token else None)
    removed += _remove_labelled(run_id, store.url)
    phase = data.get("phase")
    if phase and phase.get("start_us") is not None:
        end_us = _last_sample_us(store, run_id)
        if end_us is not None and end_us > int(phase["start_us"]):
            store.add_phase(run_id, str(phase["name"]), int(phase["start_us"]), end_us, parent=phase.get("parent"))
    outcome = data.get("outcome") or {}
    status = str(outcome.get("status") or RunStatus.CRASHED)
    owner = f"pid {data.get('pid')} on {data.get('host')}"
    error = outcome.get("error") or RECOVERED_ERROR.format(owner=owner)
    warnings = list(run.warnings or [])
    if removed:
        warnings.append("recovery removed: " + ", ".join(removed))
    store.finish_run(run_id, status, error=error, warnings=warnings)
    try:
        from wattwise.analysis import summarize_run

        store.update_run(run_id, results=summarize_run(store, run_id))
    except Exception:  # the summary is a cache: the run page computes it again
        pass
    return Recovered(run_id, status, removed, store.url)


def _last_sample_us(store: Store, run_id: int) -> int | None:
    last: int | None = None
    for metric in store.metrics(run_id):
        t_us, _ = store.samples(metric.id)
        if len(t_us):
            last = max(last or 0, int(t_us[-1]))
    return last


def _cgroup_dirs_of_run(run_id: int, owner_pid: int | None, token: str | None) -> list[Path]:
    """Cgroups named `run-<id>-<owner pid>` (a command's: run ids repeat across databases, the owner's pid tells
    them apart) or `scenario-<token>-*` (a scenario's host services, `token` from the run's settings) below the
    wattwise parent in every hierarchy."""
    from wattwise.providers.cgroup import CgroupMounts

    try:
        mounts = CgroupMounts.from_mountinfo()
    except Exception:
        return []
    points = {m.mount_point for m in mounts.v1.values()}
    if mounts.v2 is not None:
        points.add(mounts.v2.mount_point)
    found: list[Path] = []
    patterns = [*([f"run-{run_id}-{int(owner_pid)}"] if owner_pid else []),
                *([f"scenario-{token}-*"] if token and token.isalnum() else [])]
    for point in points:
        for pattern in patterns:
            found.extend((point / CGROUP_PARENT).glob(pattern))
    return found


def _remove_cgroups(run_id: int, recorded: list[Path], owner_pid: int | None, token: str | None = None) -> list[str]:
    import signal

    directories = list(dict.fromkeys([*recorded, *_cgroup_dirs_of_run(run_id, owner_pid, token)]))
    removed: list[str] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for _ in range(50):
            pids = _pids(directory)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                directory.rmdir()
                removed.append(f"cgroup {directory}")
                break
            except OSError:
                time.sleep(0.05)
    return removed


def _pids(directory: Path) -> list[int]:
    try:
        return [int(x) for x in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _remove_labelled(run_id: int, store_url: str) -> list[str]:
    """Containers, then networks, labelled `wattwise.run_id=<id>` (podman), except those whose `wattwise.store`
    label names another database (run ids repeat across databases; the label is the first 12 hex digits of the
    SHA-256 of the database URL, as the scenario runner sets it)."""
    podman = shutil.which("podman")
    if podman is None:
        return []
    store_key = hashlib.sha256(str(store_url).encode()).hexdigest()[:12]
    removed: list[str] = []
    label = f"label={RUN_LABEL}={run_id}"
    base = [podman, *shlex.split(os.environ.get("WATTWISE_PODMAN_ARGS", ""))]
    for kind, listing, removal in (
        ("container", ["ps", "-a", "--filter", label, "--format", "json"], ["rm", "-f", "-t", "0"]),
        ("network", ["network", "ls", "--filter", label, "--format", "json"], ["network", "rm", "-f"]),
    ):
        try:
            found = subprocess.run([*base, *listing], capture_output=True, text=True, timeout=60, check=False)
            items = json.loads(found.stdout or "[]")
        except (OSError, subprocess.TimeoutExpired, ValueError):
            continue
        ids = []
        for item in items if isinstance(items, list) else []:
            labels = item.get("Labels") or item.get("labels") or {}
            ident = item.get("Id") or item.get("id") or item.get("ID")
            if ident and labels.get(STORE_LABEL, store_key) == store_key:
                ids.append(str(ident))
        if not ids:
            continue
        try:
            subprocess.run([*base, *removal, *ids], capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        removed += [f"{kind} {i[:12]}" for i in ids]
    return removed


def own_start_ticks() -> int | None:
    return process_start_ticks(os.getpid())
