"""Compute units from the cgroup hierarchies: Slurm jobs, docker and podman containers, systemd services.

Every scrape walks the hierarchies afresh (v2 and one v1 controller, both found from mountinfo) and
classifies each directory by its path relative to the hierarchy root:

=========  =====================================================================  ==================
manager    path (v2 and v1 alike unless said)                                     unit id
=========  =====================================================================  ==================
slurm      ``system.slice/[<node>_]slurmstepd.scope/job_<N>`` (v2)               ``<N>``
slurm      ``slurm[_<node>]/uid_<U>/job_<N>`` (v1; the uid comes from the path)   ``<N>``
docker     ``…/docker-<64 hex>.scope`` (systemd driver), ``docker/<64 hex>``      first 12 hex digits
podman     ``…/libpod-<64 hex>.scope``, ``libpod_parent/libpod-<64 hex>``         first 12 hex digits
systemd    ``system.slice/<name>.service``                                        ``<name>.service``
libvirt    ``machine.slice/machine-qemu\\x2d<N>\\x2d<name>.scope``,                 domain name
           ``machine/qemu-<N>-<name>.libvirt-qemu``
k8s        ``kubepods.slice/[kubepods-<qos>.slice/]kubepods-[<qos>-]pod<uid>.slice``,  pod uid
           ``kubepods/[<qos>/]pod<uid>`` (no QoS level: Guaranteed)
=========  =====================================================================  ==================

A matching directory is the unit and its subtree (Slurm steps ``step_*``, podman's ``container``
sub-cgroup) is folded into it: cgroup CPU and memory counters are hierarchical, so the unit's own
files already include its children. A unit without any process anywhere in its subtree is stale and
dropped (v2: ``cgroup.events`` says ``populated 0``; v1: every ``cgroup.procs`` below it is empty).

Readings use a few raw ``os.read`` calls per unit instead of :meth:`UnitCgroup.read`, because a scrape
of 1,000 units must stay under 100 ms; :func:`read_usage` returns the same :class:`CgroupUsage`
(tests check that both agree on the fixture trees).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.providers.cgroup import CgroupMount, CgroupMounts, CgroupUsage, parse_cpuset
from wattwise.providers.procstat import USER_HZ

MANAGERS = ("slurm", "docker", "podman", "systemd", "libvirt", "k8s")
DEFAULT_CGROUP_MOUNT_BASE = "/sys/fs/cgroup"
#: v1 controllers whose directories a unit reading uses
READ_CONTROLLERS = ("cpuacct", "memory", "cpuset")
#: which v1 hierarchy is walked to find units (the first one mounted)
WALK_CONTROLLERS = ("cpuacct", "memory", "cpu", "pids", "name=systemd")
UNLIMITED = 2**62

# anchored at the hierarchy root: a look-alike path made by a user inside their own delegated cgroup tree
# (user.slice/.../user@UID.service/...) must never pass for a Slurm job
log = logging.getLogger(__name__)

_SLURM_V2 = re.compile(r"^(?:system\.slice/)?[^/]*slurmstepd\.scope/job_(\d+)$")
_SLURM_V1 = re.compile(r"^slurm[^/]*/uid_(\d+)/job_(\d+)$")
_DOCKER = re.compile(r"(?:^|/)(?:docker-([0-9a-f]{64})\.scope|docker/([0-9a-f]{64}))$")
_PODMAN = re.compile(r"(?:^|/)libpod-([0-9a-f]{64})(?:\.scope)?$")
_SERVICE = re.compile(r"^system\.slice/([^/]+\.service)$")
# libvirt/QEMU: systemd driver machine.slice/machine-qemu\x2d<N>\x2d<name>.scope (systemd escapes '-' as \x2d);
# cgroupfs driver machine/qemu-<N>-<name>.libvirt-qemu (older: machine/<name>.libvirt-qemu)
_QEMU_SYSTEMD = re.compile(r"^machine\.slice/machine-qemu\\x2d\d+\\x2d(.+)\.scope$")
_QEMU_CGROUPFS = re.compile(r"^machine/(?:qemu-\d+-)?(.+)\.libvirt-qemu$")
# Kubernetes pods: systemd driver kubepods.slice/[kubepods-<qos>.slice/]kubepods-[<qos>-]pod<uid with _>.slice;
# cgroupfs driver kubepods/[<qos>/]pod<uid>; no QoS level = Guaranteed
_K8S_SYSTEMD = re.compile(r"^kubepods\.slice/(?:kubepods-(burstable|besteffort)\.slice/)?"
                          r"kubepods-(?:(?:burstable|besteffort)-)?pod([0-9a-f_]{36})\.slice$")
_K8S_CGROUPFS = re.compile(r"^kubepods/(?:(burstable|besteffort)/)?pod([0-9a-f-]{36})$")


@dataclass(frozen=True)
class UnitMatch:
    manager: str
    unit_id: str
    path_uid: int | None = None
    detail: str = ""  # k8s: the pod's QoS class (guaranteed, burstable, besteffort)


def classify(relative_path: str) -> UnitMatch | None:
    """The unit a cgroup path (relative to its hierarchy root, no leading slash) is, or None."""
    last = relative_path.rsplit("/", 1)[-1]
    if last.startswith("job_"):
        match = _SLURM_V2.search(relative_path)
        if match:
            return UnitMatch("slurm", match.group(1))
        match = _SLURM_V1.search(relative_path)
        if match:
            return UnitMatch("slurm", match.group(2), int(match.group(1)))
        return None
    if "docker" in relative_path:
        match = _DOCKER.search(relative_path)
        if match:
            return UnitMatch("docker", (match.group(1) or match.group(2))[:12])
    if last.startswith("libpod-"):
        match = _PODMAN.search(relative_path)
        if match:
            return UnitMatch("podman", match.group(1)[:12])
    if last.endswith(".service"):
        match = _SERVICE.match(relative_path)
        if match:
            return UnitMatch("systemd", match.group(1))
        return None
    return _classify_vm_or_pod(relative_path, last)


def _classify_vm_or_pod(relative_path: str, last: str) -> UnitMatch | None:
    if last.startswith("machine-qemu") or last.endswith(".libvirt-qemu"):
        match = _QEMU_SYSTEMD.match(relative_path) or _QEMU_CGROUPFS.match(relative_path)
        if match:
            return UnitMatch("libvirt", match.group(1).replace("\\x2d", "-"))
        return None
    if "pod" in last and relative_path.startswith("kubepods"):
        match = _K8S_SYSTEMD.match(relative_path) or _K8S_CGROUPFS.match(relative_path)
        if match:
            return UnitMatch("k8s", match.group(2).replace("_", "-"), detail=match.group(1) or "guaranteed")
    return None


def rebase_mounts(mounts: CgroupMounts, cgroup_root: str | Path | None) -> CgroupMounts:
    """Read the hierarchies under `cgroup_root` instead of where mountinfo says they are mounted.

    A mount point below /sys/fs/cgroup keeps its place relative to that directory
    (/sys/fs/cgroup/cpuacct → <cgroup_root>/cpuacct); any other mount point is placed under
    `cgroup_root` with its full path. Used for fixture trees and for containers that bind-mount the
    host's cgroup filesystem elsewhere.
    """
    if cgroup_root is None:
        return mounts
    root = Path(cgroup_root)

    def move(mount: CgroupMount) -> CgroupMount:
        point = mount.mount_point
        try:
            relative = point.relative_to(DEFAULT_CGROUP_MOUNT_BASE)
        except ValueError:
            relative = point.relative_to(point.anchor)
        return CgroupMount(root / relative, mount.root)

    return CgroupMounts({c: move(m) for c, m in mounts.v1.items()}, move(mounts.v2) if mounts.v2 else None)


@dataclass
class Unit:
    """One compute unit found by a walk: its directories in each hierarchy (plain strings, for speed)."""

    manager: str
    unit_id: str
    v1: dict[str, str] = field(default_factory=dict)  # controller → directory
    v2: str | None = None
    path_uid: int | None = None
    detail: str = ""  # k8s: QoS class

    @property
    def key(self) -> tuple[str, str]:
        return (self.manager, self.unit_id)

    def directories(self) -> list[str]:
        return [*dict.fromkeys(self.v1.values()), *([self.v2] if self.v2 else [])]


def _hierarchy_root(mount: CgroupMount) -> str:
    # mountinfo's root field is "/" unless only a sub-tree of the hierarchy is mounted (containers):
    # paths found by walking the mount point are then relative to that sub-tree, which is what we want
    return str(mount.mount_point)


def _walk(root: str, managers: frozenset[str]) -> list[tuple[str, UnitMatch]]:
    """(relative path, match) of every unit directory below root; unit subtrees are not descended."""
    found: list[tuple[str, UnitMatch]] = []
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        directory, relative = stack.pop()
        try:
            with os.scandir(directory) as entries:
                children = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in children:
            child_relative = f"{relative}/{name}" if relative else name
            match = classify(child_relative)
            if match is not None:
                if match.manager in managers:
                    found.append((child_relative, match))
                continue
            stack.append((f"{directory}/{name}", child_relative))
    return found


def discover_units(mounts: CgroupMounts, managers: frozenset[str] | None = None) -> list[Unit]:
    """Every unit directory in the v2 hierarchy and in the first walkable v1 hierarchy, merged by
    (manager, unit id) so that a job present in both keeps its v1 controllers and its v2 directory.
    Liveness is not checked here (see :func:`is_populated`)."""
    managers = frozenset(managers or MANAGERS)
    units: dict[tuple[str, str], Unit] = {}
    walk_controller = next((c for c in WALK_CONTROLLERS if c in mounts.v1), None)
    if walk_controller is not None:
        walk_root = _hierarchy_root(mounts.v1[walk_controller])
        controller_roots = {
            c: _hierarchy_root(mounts.v1[c]) for c in READ_CONTROLLERS if c in mounts.v1
        }
        seen_v1: set[tuple[str, str]] = set()
        for relative, match in _walk(walk_root, managers):
            key = (match.manager, match.unit_id)
            if key in seen_v1:  # a second directory claiming the same unit: keep the first, never merge
                log.warning("cgroup %s claims %s %s again; ignored", relative, *key)
                continue
            seen_v1.add(key)
            unit = units.setdefault(key, Unit(match.manager, match.unit_id, detail=match.detail))
            unit.path_uid = match.path_uid if match.path_uid is not None else unit.path_uid
            # not checked with a stat per controller (that is 3,000 system calls for 1,000 units): a
            # controller without this directory just gives no values when its files are read
            for controller, controller_root in controller_roots.items():
                unit.v1[controller] = f"{controller_root}/{relative}"
    if mounts.v2 is not None:
        v2_root = _hierarchy_root(mounts.v2)
        seen_v2: set[tuple[str, str]] = set()
        for relative, match in _walk(v2_root, managers):
            key = (match.manager, match.unit_id)
            if key in seen_v2:
                log.warning("cgroup %s claims %s %s again; ignored", relative, *key)
                continue
            seen_v2.add(key)
            unit = units.setdefault(key, Unit(match.manager, match.unit_id, detail=match.detail))
            unit.v2 = f"{v2_root}/{relative}"
    return list(units.values())


# --- raw reads --------------------------------------------------------------------------------------


_CHUNK = 16384  # a bigger buffer costs more to allocate than the read itself


def read_bytes(path: str) -> bytes | None:
    """The whole (small) file, or None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) == _CHUNK:  # rare: a long memory.stat or cgroup.procs
            parts = [data]
            while True:
                more = os.read(fd, _CHUNK)
                if not more:
                    break
                parts.append(more)
            data = b"".join(parts)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(data: bytes | None) -> int | None:
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return None  # "max" and anything else that is not a number


def _keyed(data: bytes | None, key: bytes) -> int | None:
    """The value of the `key value` line in a flat-keyed cgroup file (bytes.find: faster than a regex)."""
    if data is None:
        return None
    if data.startswith(key + b" "):
        start = len(key) + 1
    else:
        found = data.find(b"\n" + key + b" ")
        if found < 0:
            return None
        start = found + len(key) + 2
    end = data.find(b"\n", start)
    try:
        return int(data[start:end] if end >= 0 else data[start:])
    except ValueError:
        return None


def find_process(directory: str) -> tuple[int, str] | None:
    """(a pid, the cgroup.procs file it was listed in) anywhere in the subtree, directory first."""
    stack = [directory]
    while stack:
        current = stack.pop()
        procs = current + "/cgroup.procs"
        pid = _first_pid_in(procs)
        if pid is not None:
            return pid, procs
        try:
            with os.scandir(current) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return None


def _first_pid_in(procs_file: str) -> int | None:
    data = read_bytes(procs_file)
    if data:
        try:
            return int(data.split(None, 1)[0])
        except (ValueError, IndexError):
            return None
    return None


def is_populated(unit: Unit, hint: str | None = None) -> tuple[bool, str | None]:
    """Whether any process lives in the unit's subtree, and the cgroup.procs file that showed it.

    v2: ``cgroup.events`` (one read). v1: the `hint` file first (where processes were found last
    time, typically the job's task_0), else a search of every cgroup.procs below the unit.
    """
    if unit.v2 is not None:
        populated = _keyed(read_bytes(unit.v2 + "/cgroup.events"), b"populated")
        if populated is not None:
            return populated > 0, hint
    if hint is not None and _first_pid_in(hint) is not None:
        return True, hint
    found = unit_process(unit)
    return (True, found[1]) if found else (False, None)


def unit_process(unit: Unit) -> tuple[int, str] | None:
    for directory in unit.directories():
        found = find_process(directory)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class StaticUsage:
    """The slowly changing part of a unit's reading, refreshed less often than every scrape."""

    memory_limit_b: int | None
    cpu_count: int | None


def read_static(unit: Unit) -> StaticUsage:
    limit: int | None = None
    cpus: int | None = None
    memory = unit.v1.get("memory")
    if memory is not None:
        limit = _int(read_bytes(memory + "/memory.limit_in_bytes"))
    elif unit.v2 is not None:
        limit = _int(read_bytes(unit.v2 + "/memory.max"))
    if limit is not None and limit >= UNLIMITED:
        limit = None
    cpuset = unit.v1.get("cpuset")
    data = read_bytes(cpuset + "/cpuset.cpus") if cpuset else None
    if data is None and unit.v2 is not None:
        data = read_bytes(unit.v2 + "/cpuset.cpus.effective")
    if data is not None and data.strip():
        try:
            cpus = parse_cpuset(data.decode())
        except ValueError:
            cpus = None
    return StaticUsage(limit, cpus)


def read_usage(unit: Unit, static: StaticUsage | None = None) -> CgroupUsage:
    """The unit's CPU and memory figures now (None where its hierarchies do not offer them).

    v1: cpuacct.usage, cpuacct.stat, memory.usage_in_bytes, memory.stat (total_rss, total_cache),
    memory.failcnt, memory.oom_control (oom_kill).
    v2: cpu.stat, memory.current, memory.stat (anon, file), memory.events (max, oom_kill).
    The peak (memory.max_usage_in_bytes, memory.peak) is not read: one file less per unit and scrape.
    """
    static = static or read_static(unit)
    cpu_s = user_s = system_s = None
    acct = unit.v1.get("cpuacct")
    if acct is not None:
        usage_ns = _int(read_bytes(acct + "/cpuacct.usage"))
        if usage_ns is not None:
            cpu_s = usage_ns / 1e9
            stat = read_bytes(acct + "/cpuacct.stat")
            user = _keyed(stat, b"user")
            system = _keyed(stat, b"system")
            user_s = None if user is None else user / USER_HZ
            system_s = None if system is None else system / USER_HZ
    if cpu_s is None and unit.v2 is not None:
        stat = read_bytes(unit.v2 + "/cpu.stat")
        usage_us = _keyed(stat, b"usage_usec")
        if usage_us is not None:
            cpu_s = usage_us / 1e6
            user_s = (_keyed(stat, b"user_usec") or 0) / 1e6
            system_s = (_keyed(stat, b"system_usec") or 0) / 1e6
    used = rss = cache = fails = ooms = None
    memory = unit.v1.get("memory")
    if memory is not None:
        used = _int(read_bytes(memory + "/memory.usage_in_bytes"))
        stat = read_bytes(memory + "/memory.stat")
        rss = _keyed(stat, b"total_rss")
        if rss is None:
            rss = _keyed(stat, b"rss")
        cache = _keyed(stat, b"total_cache")
        if cache is None:
            cache = _keyed(stat, b"cache")
        fails = _int(read_bytes(memory + "/memory.failcnt"))
        ooms = _keyed(read_bytes(memory + "/memory.oom_control"), b"oom_kill")
    elif unit.v2 is not None:
        used = _int(read_bytes(unit.v2 + "/memory.current"))
        if used is not None:
            stat = read_bytes(unit.v2 + "/memory.stat")
            rss = _keyed(stat, b"anon")
            cache = _keyed(stat, b"file")
            events = read_bytes(unit.v2 + "/memory.events")
            fails = _keyed(events, b"max")
            ooms = _keyed(events, b"oom_kill")
    return CgroupUsage(
        cpu_time_s=cpu_s,
        cpu_user_s=user_s,
        cpu_system_s=system_s,
        memory_b=used,
        memory_limit_b=static.memory_limit_b,
        memory_rss_b=rss,
        memory_cache_b=cache,
        memory_fail_count=fails,
        oom_kill_count=ooms,
        cpu_count=static.cpu_count,
    )
