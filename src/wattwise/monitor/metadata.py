"""Who a unit belongs to: its user and its project (Slurm account), resolved once per unit.

User, first that gives an answer:

1. the uid in a Slurm v1 path (``slurm/uid_<U>/job_<N>``);
2. the real uid of a process of the unit (``/proc/<pid>/status``, ``Uid:`` line);
3. ``UserId=name(uid)`` from ``scontrol show job -o <N>`` (Slurm jobs, when enabled);

for a libvirt VM or a Kubernetes pod, the owner its metadata names comes first
(:mod:`wattwise.monitor.managers`: Nova or wattwise domain XML metadata, the pod's user label).

The uid becomes a name through a passwd file (default: the system's user database), else it stays
the number. Project, first that gives an answer:

1. the mapping file's ``units:`` entry for ``<manager>/<unit id>``;
   then, for a VM or a pod, its metadata's project (Nova project, the pod's namespace);
2. ``Account=`` from ``scontrol show job -o <N>`` (Slurm jobs, when enabled);
3. ``SLURM_JOB_ACCOUNT`` in the environment of a process of the job (``/proc/<pid>/environ``,
   readable by root) — a job's processes can change their own environment, so prefer 1 or 2 where
   users must not choose their project label;
4. the mapping file's ``users:`` entry (the user's default project);
5. empty (unknown).

Mapping file (YAML)::

    users:                 # user → default project
      alice: astro
    units:                 # <manager>/<unit id> → project
      slurm/4242: chem
      docker/0123456789ab: web
"""

from __future__ import annotations

import pwd
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wattwise.errors import ConfigError
from wattwise.monitor.discovery import Unit, read_bytes
from wattwise.monitor.managers import KubernetesPods, LibvirtDomains, ManagedOwner

SCONTROL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class UnitOwner:
    user: str = ""
    project: str = ""
    uid: int | None = None
    info: tuple[tuple[str, str], ...] = ()  # extra labels of wattwise_unit_info (VM and pod metadata)


@dataclass(frozen=True)
class ProjectMap:
    users: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ProjectMap:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read project mapping {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"project mapping {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"project mapping {path}: expected a mapping with keys users and units")
        unknown = sorted(set(data) - {"users", "units"})
        if unknown:
            raise ConfigError(f"project mapping {path}: unknown key(s) {', '.join(unknown)}; "
                              "allowed are users and units")
        sections: dict[str, dict[str, str]] = {}
        for key in ("users", "units"):
            section = data.get(key) or {}
            if not isinstance(section, dict):
                raise ConfigError(f"project mapping {path}: {key} must map names to projects")
            for name, project in section.items():
                if not isinstance(project, str | int) or isinstance(project, bool):
                    raise ConfigError(f"project mapping {path}: {key}.{name} must be a project name, "
                                      f"got {project!r}")
            sections[key] = {str(k): str(v) for k, v in section.items()}
        return cls(sections["users"], sections["units"])


class UserNames:
    """uid → user name, from a passwd-format file or the system database; unknown uids stay numbers."""

    def __init__(self, passwd: str | Path | None = None) -> None:
        self._table: dict[int, str] | None = None
        if passwd is not None:
            self._table = {}
            try:
                lines = Path(passwd).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read passwd file {passwd}: {exc.strerror}") from exc
            for line in lines:
                parts = line.split(":")
                if len(parts) >= 3 and parts[2].isdigit():
                    self._table[int(parts[2])] = parts[0]

    def name(self, uid: int) -> str:
        if self._table is not None:
            return self._table.get(uid, str(uid))
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)


def process_uid(proc_root: str, pid: int) -> int | None:
    data = read_bytes(f"{proc_root}/{pid}/status")
    if data is None:
        return None
    match = re.search(rb"(?m)^Uid:\s+(\d+)", data)
    return int(match.group(1)) if match else None


def process_environ(proc_root: str, pid: int) -> dict[str, str]:
    data = read_bytes(f"{proc_root}/{pid}/environ")
    if not data:
        return {}
    result: dict[str, str] = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            key, value = item.split(b"=", 1)
            result[key.decode(errors="replace")] = value.decode(errors="replace")
    return result


@dataclass(frozen=True)
class ScontrolJob:
    user: str | None = None
    uid: int | None = None
    account: str | None = None


def parse_scontrol_job(text: str) -> ScontrolJob:
    """``scontrol show job -o <id>``: one line of ``Key=Value`` pairs (UserId=alice(1000) Account=astro)."""
    user = uid = account = None
    match = re.search(r"(?:^|\s)UserId=([^\s(]+)\((\d+)\)", text)
    if match:
        user, uid = match.group(1), int(match.group(2))
    match = re.search(r"(?:^|\s)Account=(\S+)", text)
    if match and match.group(1) != "(null)":
        account = match.group(1)
    return ScontrolJob(user, uid, account)


class OwnerResolver:
    """Resolves a unit's owner; callers cache the answer per unit (labels must stay stable)."""

    def __init__(
        self,
        proc_root: str | Path = "/proc",
        mapping: ProjectMap | None = None,
        names: UserNames | None = None,
        scontrol: Sequence[str] | None = None,
        libvirt: LibvirtDomains | None = None,
        pods: KubernetesPods | None = None,
    ) -> None:
        self.proc_root = str(proc_root)
        self.mapping = mapping or ProjectMap()
        self.names = names or UserNames()
        self.scontrol = list(scontrol) if scontrol else None
        self.libvirt = libvirt
        self.pods = pods

    def _managed(self, unit: Unit) -> ManagedOwner:
        if unit.manager == "libvirt" and self.libvirt is not None:
            return self.libvirt.owner(unit.unit_id)
        if unit.manager == "k8s":
            if self.pods is not None:
                return self.pods.owner(unit.unit_id, unit.detail)
            return ManagedOwner(info=(("qos_class", unit.detail),) if unit.detail else ())
        return ManagedOwner()

    def _scontrol(self, job_id: str) -> ScontrolJob:
        if not self.scontrol:
            return ScontrolJob()
        try:
            done = subprocess.run([*self.scontrol, "show", "job", "-o", job_id], capture_output=True,
                                  text=True, timeout=SCONTROL_TIMEOUT_S, check=False,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return ScontrolJob()
        return parse_scontrol_job(done.stdout) if done.returncode == 0 else ScontrolJob()

    def resolve(self, unit: Unit, pid: int | None) -> UnitOwner:
        uid = unit.path_uid
        if uid is None and pid is not None:
            uid = process_uid(self.proc_root, pid)
        job = self._scontrol(unit.unit_id) if unit.manager == "slurm" else ScontrolJob()
        managed = self._managed(unit)
        user = self.names.name(uid) if uid is not None else (job.user or "")
        user = managed.user or user
        if uid is None:
            uid = job.uid
        project = self.mapping.units.get(f"{unit.manager}/{unit.unit_id}")
        if project is None and managed.project:
            project = managed.project
        if project is None and job.account:
            project = job.account
        if project is None and unit.manager == "slurm" and pid is not None:
            project = process_environ(self.proc_root, pid).get("SLURM_JOB_ACCOUNT") or None
        if project is None and user:
            project = self.mapping.users.get(user)
        return UnitOwner(user, project or "", uid, managed.info)
