"""Control groups: where the hierarchies are mounted, and what a unit's cgroup used.

Both versions are supported at once, as on machines that mount v1 controllers separately and v2 beside
them (e.g. at /sys/fs/cgroup/unified). Mount points are found from /proc/self/mountinfo, never assumed.

v1: cpuacct.usage (ns), cpuacct.stat (USER_HZ ticks), memory.usage_in_bytes, memory.max_usage_in_bytes,
    memory.limit_in_bytes, memory.stat, memory.failcnt.
v2: cpu.stat (usage_usec, user_usec, system_usec), memory.current, memory.peak, memory.max, memory.stat,
    memory.events (oom, oom_kill).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope
from wattwise.providers.files import KernelFile
from wattwise.providers.procstat import USER_HZ

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "cpuset", "pids", "freezer", "blkio", "devices")


def _unescape_mount_path(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


@dataclass(frozen=True)
class CgroupMount:
    mount_point: Path
    root: str  # the hierarchy path that is mounted at mount_point ("/" normally)


@dataclass(frozen=True)
class CgroupMounts:
    """Mount points of the v1 controllers and of the v2 unified hierarchy."""

    v1: dict[str, CgroupMount] = field(default_factory=dict)  # controller -> mount
    v2: CgroupMount | None = None

    @classmethod
    def from_mountinfo(cls, path: str | Path = "/proc/self/mountinfo") -> CgroupMounts:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> CgroupMounts:
        v1: dict[str, CgroupMount] = {}
        v2: CgroupMount | None = None
        for line in text.splitlines():
            if " - " not in line:
                continue
            before, after = line.split(" - ", 1)
            fields = before.split()
            tail = after.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            fstype, super_options = tail[0], tail[2]
            mount = CgroupMount(Path(_unescape_mount_path(fields[4])), _unescape_mount_path(fields[3]))
            if fstype == "cgroup2":
                v2 = v2 or mount
            elif fstype == "cgroup":
                for option in super_options.split(","):
                    if option in V1_CONTROLLERS or option.startswith("name="):
                        v1.setdefault(option, mount)
        return cls(v1, v2)

    def v1_dir(self, controller: str, cgroup_path: str) -> Path | None:
        mount = self.v1.get(controller)
        return _join(mount, cgroup_path) if mount else None

    def v2_dir(self, cgroup_path: str) -> Path | None:
        return _join(self.v2, cgroup_path) if self.v2 else None


def _join(mount: CgroupMount, cgroup_path: str) -> Path:
    relative = cgroup_path
    if mount.root != "/" and relative.startswith(mount.root):
        relative = relative[len(mount.root) :]
    return mount.mount_point / relative.lstrip("/")


def cgroup_paths_of_pid(pid: int | str, proc_root: str | Path = "/proc") -> dict[str, str]:
    """Parse /proc/<pid>/cgroup: {controller or 'name=x' or '' (v2): path}."""
    result: dict[str, str] = {}
    path = Path(proc_root) / str(pid) / "cgroup"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            result[controller] = parts[2]
    return result


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    result: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return result
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


@dataclass(frozen=True)
class CgroupUsage:
    """One reading of a unit's cgroup. None where the hierarchy does not offer the figure."""

    cpu_time_s: float | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    memory_b: int | None = None
    memory_peak_b: int | None = None
    memory_limit_b: int | None = None
    memory_rss_b: int | None = None
    memory_cache_b: int | None = None
    memory_fail_count: int | None = None
    oom_kill_count: int | None = None
    cpu_count: int | None = None


def parse_cpuset(text: str) -> int:
    """Count CPUs in a cpuset list like '0-3,8,10-11'."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            count += int(high) - int(low) + 1
        else:
            count += 1
    return count


@dataclass(frozen=True)
class UnitCgroup:
    """A compute unit's cgroup directories: v1 per controller and/or v2."""

    label: str
    v1: dict[str, Path] = field(default_factory=dict)
    v2: Path | None = None

    @classmethod
    def of_path(cls, label: str, cgroup_path: str, mounts: CgroupMounts) -> UnitCgroup:
        """The same cgroup path in every hierarchy that has it."""
        v1 = {}
        for controller in ("cpuacct", "cpu", "memory", "cpuset", "pids"):
            directory = mounts.v1_dir(controller, cgroup_path)
            if directory is not None and directory.is_dir():
                v1[controller] = directory
        v2 = mounts.v2_dir(cgroup_path)
        return cls(label, v1, v2 if v2 is not None and v2.is_dir() else None)

    @classmethod
    def of_pid(cls, label: str, pid: int, mounts: CgroupMounts, proc_root: str | Path = "/proc") -> UnitCgroup:
        """The cgroups a process is in (v1 per controller, v2)."""
        paths = cgroup_paths_of_pid(pid, proc_root)
        v1: dict[str, Path] = {}
        for controller in ("cpuacct", "cpu", "memory", "cpuset", "pids"):
            if controller in paths:
                directory = mounts.v1_dir(controller, paths[controller])
                if directory is not None and directory.is_dir():
                    v1[controller] = directory
        v2 = mounts.v2_dir(paths[""]) if "" in paths else None
        return cls(label, v1, v2 if v2 is not None and v2.is_dir() else None)

    def exists(self) -> bool:
        return any(p.is_dir() for p in self.v1.values()) or bool(self.v2 and self.v2.is_dir())

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for directory in [*self.v1.values(), *([self.v2] if self.v2 else [])]:
            try:
                pids.update(int(x) for x in (directory / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(pids)

    def cpu_and_memory_files(self) -> tuple[tuple[Path, str] | None, Path | None]:
        """Where CPU seconds and memory in use are read from: ((file, 'ns' | 'cpu.stat'), memory file)."""
        cpu: tuple[Path, str] | None = None
        acct = self.v1.get("cpuacct")
        if acct is not None and (acct / "cpuacct.usage").exists():
            cpu = (acct / "cpuacct.usage", "ns")
        elif self.v2 is not None:
            cpu = (self.v2 / "cpu.stat", "cpu.stat")
        memory = self.v1.get("memory")
        if memory is not None:
            memory_file: Path | None = memory / "memory.usage_in_bytes"
        else:
            memory_file = self.v2 / "memory.current" if self.v2 is not None else None
        return cpu, memory_file

    def read_cpu_and_memory(self) -> tuple[float | None, int | None]:
        """Only CPU seconds and memory in use: two small files, for frequent sampling."""
        cpu, memory_file = self.cpu_and_memory_files()
        return _cpu_seconds(cpu, None), (_read_int(memory_file) if memory_file is not None else None)

    def read(self) -> CgroupUsage:
        values: dict[str, float | int | None] = {}
        acct = self.v1.get("cpuacct")
        if acct is not None:
            usage_ns = _read_int(acct / "cpuacct.usage")
            if usage_ns is not None:
                values["cpu_time_s"] = usage_ns / 1e9
            stat = _read_keyed(acct / "cpuacct.stat")
            if stat:
                values["cpu_user_s"] = stat.get("user", 0) / USER_HZ
                values["cpu_system_s"] = stat.get("system", 0) / USER_HZ
        if self.v2 is not None and "cpu_time_s" not in values:
            stat = _read_keyed(self.v2 / "cpu.stat")
            if "usage_usec" in stat:
                values["cpu_time_s"] = stat["usage_usec"] / 1e6
                values["cpu_user_s"] = stat.get("user_usec", 0) / 1e6
                values["cpu_system_s"] = stat.get("system_usec", 0) / 1e6
        memory = self.v1.get("memory")
        if memory is not None:
            values["memory_b"] = _read_int(memory / "memory.usage_in_bytes")
            values["memory_peak_b"] = _read_int(memory / "memory.max_usage_in_bytes")
            limit = _read_int(memory / "memory.limit_in_bytes")
            values["memory_limit_b"] = limit if limit is not None and limit < 2**62 else None
            values["memory_fail_count"] = _read_int(memory / "memory.failcnt")
            stat = _read_keyed(memory / "memory.stat")
            if stat:
                values["memory_rss_b"] = stat.get("total_rss", stat.get("rss"))
                values["memory_cache_b"] = stat.get("total_cache", stat.get("cache"))
            oom = _read_keyed(memory / "memory.oom_control")
            if "oom_kill" in oom:
                values["oom_kill_count"] = oom["oom_kill"]
        elif self.v2 is not None and (self.v2 / "memory.current").exists():
            values["memory_b"] = _read_int(self.v2 / "memory.current")
            values["memory_peak_b"] = _read_int(self.v2 / "memory.peak")
            values["memory_limit_b"] = _read_int(self.v2 / "memory.max")
            stat = _read_keyed(self.v2 / "memory.stat")
            if stat:
                values["memory_rss_b"] = stat.get("anon")
                values["memory_cache_b"] = stat.get("file")
            events = _read_keyed(self.v2 / "memory.events")
            if events:
                values["memory_fail_count"] = events.get("max")
                values["oom_kill_count"] = events.get("oom_kill")
        cpuset_dir = self.v1.get("cpuset")
        cpuset_file = (
            (cpuset_dir / "cpuset.cpus") if cpuset_dir else (self.v2 / "cpuset.cpus.effective" if self.v2 else None)
        )
        if cpuset_file is not None:
            try:
                values["cpu_count"] = parse_cpuset(cpuset_file.read_text())
            except (OSError, ValueError):
                pass
        return CgroupUsage(**values)  # type: ignore[arg-type]


def _cpu_seconds(cpu: tuple[Path, str] | None, reader: KernelFile | None) -> float | None:
    if cpu is None:
        return None
    path, kind = cpu
    try:
        text = reader.read_text() if reader is not None else path.read_text()
    except OSError:
        return None
    if kind == "ns":
        try:
            return int(text.strip()) / 1e9
        except ValueError:
            return None
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return None


def _int_from(reader: KernelFile | None) -> int | None:
    if reader is None:
        return None
    try:
        text = reader.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class CgroupProvider(Provider):
    """CPU time and memory of one unit's cgroup (a measured command, a container)."""

    name = "cgroup"
    description = "Per-unit CPU seconds and memory from cgroups v1 (cpuacct, memory) and v2 (cpu.stat, memory.current)"
    scope = Scope.UNIT
    metric_units = {"cgroup_cpu_time_s": "s", "cgroup_memory_b": "B"}

    def __init__(self, unit: UnitCgroup | None = None, mountinfo: str | Path = "/proc/self/mountinfo") -> None:
        self.unit = unit
        self.mountinfo = Path(mountinfo)
        self._origin_cpu_s = 0.0
        self._cpu: tuple[Path, str] | None = None
        self._cpu_file: KernelFile | None = None
        self._memory_file: KernelFile | None = None

    def availability(self) -> Availability:
        try:
            mounts = CgroupMounts.from_mountinfo(self.mountinfo)
        except ProviderError as exc:
            return Availability.no(str(exc))
        if "cpuacct" not in mounts.v1 and mounts.v2 is None:
            return Availability.no("no cgroup v1 cpuacct controller and no cgroup v2 hierarchy is mounted")
        where = ", ".join(
            [f"v1 {c} at {m.mount_point}" for c, m in mounts.v1.items() if c in ("cpuacct", "memory")]
            + ([f"v2 at {mounts.v2.mount_point}"] if mounts.v2 else [])
        )
        return Availability.yes(where)

    def open(self) -> None:
        if self.unit is None:
            raise ProviderError("the cgroup provider measures a unit: it is attached by `measure` and `run`")
        if not self.unit.exists():
            raise ProviderError(f"cgroup of {self.unit.label} does not exist")
        cpu, memory_file = self.unit.cpu_and_memory_files()
        self._cpu = cpu
        self._cpu_file = KernelFile(cpu[0]) if cpu is not None else None
        self._memory_file = KernelFile(memory_file) if memory_file is not None else None
        self._origin_cpu_s = _cpu_seconds(self._cpu, self._cpu_file) or 0.0

    def specs(self) -> Sequence[MetricSpec]:
        label = self.unit.label if self.unit else ""
        return [
            MetricSpec("cgroup_cpu_time_s", "s", Kind.COUNTER, label, description="CPU seconds used by the unit"),
            MetricSpec("cgroup_memory_b", "B", Kind.GAUGE, label, description="memory charged to the unit"),
        ]

    def read(self) -> Sequence[float | None]:
        assert self.unit is not None
        cpu_s, memory_b = _cpu_seconds(self._cpu, self._cpu_file), _int_from(self._memory_file)
        cpu = None if cpu_s is None else cpu_s - self._origin_cpu_s
        return [cpu, None if memory_b is None else float(memory_b)]

    def close(self) -> None:
        for reader in (self._cpu_file, self._memory_file):
            if reader is not None:
                reader.close()


# --- creating cgroups for measured units ---------------------------------------------------------

CREATE_V1_CONTROLLERS = ("cpuacct", "memory")


@dataclass
class CreatedCgroup:
    """A cgroup that wattwise made for a unit (in every available hierarchy); remove() cleans up."""

    unit: UnitCgroup
    procs_files: list[Path]

    def add_pid(self, pid: int) -> None:
        for procs in self.procs_files:
            procs.write_text(str(pid))

    def kill_all(self) -> None:
        import signal

        for pid in self.unit.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        for directory in [*self.unit.v1.values(), *([self.unit.v2] if self.unit.v2 else [])]:
            try:
                directory.rmdir()
            except OSError:
                pass


def _enable_v2_controllers(parent: Path) -> None:
    """Give children of `parent` the cpu and memory controllers (memory.current, memory.peak) where the v2
    hierarchy has them. The parent holds no processes, so this is allowed; where it fails, CPU time still comes
    from cpu.stat, which every v2 cgroup has."""
    available = (
        set((parent / "cgroup.controllers").read_text().split()) if (parent / "cgroup.controllers").exists() else set()
    )
    for controller in ("cpu", "memory"):
        if controller in available:
            try:
                (parent / "cgroup.subtree_control").write_text(f"+{controller}")
            except OSError:
                pass


def create_unit_cgroup(
    label: str, name: str, mounts: CgroupMounts | None = None, parent: str = "wattwise"
) -> CreatedCgroup:
    """mkdir `<hierarchy>/<parent>/<name>` in the v1 cpuacct and memory hierarchies and in v2.

    Raises ProviderError when no hierarchy could be written (not root, or no cgroups mounted).
    """
    mounts = mounts or CgroupMounts.from_mountinfo()
    v1: dict[str, Path] = {}
    procs: list[Path] = []
    errors: list[str] = []
    targets: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for controller in CREATE_V1_CONTROLLERS:
        mount = mounts.v1.get(controller)
        if mount is not None and mount.mount_point not in seen:
            seen.add(mount.mount_point)
            targets.append((controller, mount.mount_point))
    if mounts.v2 is not None:
        targets.append(("", mounts.v2.mount_point))
    v2: Path | None = None
    for controller, mount_point in targets:
        directory = mount_point / parent / name
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            if not controller:
                _enable_v2_controllers(directory.parent)
            directory.mkdir(exist_ok=True)
        except OSError as exc:
            errors.append(f"{directory}: {exc.strerror}")
            continue
        procs.append(directory / "cgroup.procs")
        if controller:
            v1[controller] = directory
            if controller == "cpuacct" and mounts.v1.get("cpu") == mounts.v1.get("cpuacct"):
                v1["cpu"] = directory
        else:
            v2 = directory
    if not procs:
        raise ProviderError("could not create a cgroup for the command: " + "; ".join(errors or ["no cgroups mounted"]))
    return CreatedCgroup(UnitCgroup(label, v1, v2), procs)


def iter_cgroup_dirs(root: Path) -> Iterable[Path]:
    """All directories below root (root included), depth first, without following symlinks."""
    stack = [root]
    while stack:
        directory = stack.pop()
        yield directory
        try:
            with os.scandir(directory) as entries:
                stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
