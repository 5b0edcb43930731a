"""Synthetic cgroup, proc and powercap trees in the kernel's file formats, for fixtures and benchmarks.

The files hold what the kernel prints (cgroup v1 ``cpuacct``/``memory``/``cpuset`` interface files,
cgroup v2 ``cpu.stat``/``memory.*``/``cgroup.events``, ``/proc/stat``, ``/proc/meminfo``,
``/proc/<pid>/status`` and ``environ``, powercap ``intel-rapl:*`` zones), with chosen numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

V1_UNLIMITED = 9223372036854771712

V1_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset
39 31 0:36 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,freezer
"""

V2_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@dataclass
class UnitFigures:
    """What one unit has used, in the units the kernel files count in."""

    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    memory_b: int = 0
    memory_peak_b: int = 0
    memory_limit_b: int | None = None
    rss_b: int = 0
    cache_b: int = 0
    fail_count: int = 0
    oom_kills: int = 0
    cpus: str = "0-3"
    pids: list[int] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s


def v2_memory_stat(f: UnitFigures) -> str:
    return (f"anon {f.rss_b}\nfile {f.cache_b}\nkernel 1179648\nkernel_stack 65536\npagetables 135168\n"
            "sec_pagetables 0\npercpu 960\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\n"
            f"file_mapped {f.cache_b // 4}\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\n"
            f"file_thp 0\nshmem_thp 0\ninactive_anon {f.rss_b}\nactive_anon 0\ninactive_file {f.cache_b}\n"
            "active_file 0\nunevictable 0\nslab_reclaimable 262144\nslab_unreclaimable 393216\n"
            "slab 655360\npgfault 10532\npgmajfault 0\n")


def write_v2_unit(directory: Path, f: UnitFigures, leaf: str | None = None) -> None:
    """A v2 cgroup directory; processes go into `leaf` (a sub-path like step_0/user/task_0) if given."""
    directory.mkdir(parents=True, exist_ok=True)
    usage_us = round(f.cpu_s * 1e6)
    (directory / "cpu.stat").write_text(
        f"usage_usec {usage_us}\nuser_usec {round(f.cpu_user_s * 1e6)}\n"
        f"system_usec {round(f.cpu_system_s * 1e6)}\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
        "nr_bursts 0\nburst_usec 0\n")
    (directory / "memory.current").write_text(f"{f.memory_b}\n")
    (directory / "memory.peak").write_text(f"{f.memory_peak_b}\n")
    (directory / "memory.max").write_text(f"{f.memory_limit_b}\n" if f.memory_limit_b else "max\n")
    (directory / "memory.stat").write_text(v2_memory_stat(f))
    (directory / "memory.events").write_text(
        f"low 0\nhigh 0\nmax {f.fail_count}\noom {f.oom_kills}\noom_kill {f.oom_kills}\noom_group_kill 0\n")
    (directory / "cpuset.cpus.effective").write_text(f"{f.cpus}\n")
    (directory / "cgroup.events").write_text(f"populated {1 if f.pids else 0}\nfrozen 0\n")
    procs = "".join(f"{p}\n" for p in f.pids)
    if leaf:
        (directory / "cgroup.procs").write_text("")
        _write(directory / leaf / "cgroup.procs", procs)
        _write(directory / leaf / "cgroup.events", f"populated {1 if f.pids else 0}\nfrozen 0\n")
    else:
        (directory / "cgroup.procs").write_text(procs)


def v1_memory_stat(f: UnitFigures) -> str:
    own = (f"cache {f.cache_b}\nrss {f.rss_b}\nrss_huge 0\nshmem 0\nmapped_file {f.cache_b // 4}\n"
           "dirty 0\nwriteback 0\npgpgin 4406\npgpgout 1271\npgfault 10532\npgmajfault 0\n"
           f"inactive_anon {f.rss_b}\nactive_anon 0\ninactive_file {f.cache_b}\nactive_file 0\n"
           "unevictable 0\n")
    limit = f.memory_limit_b or V1_UNLIMITED
    total = own.splitlines()
    return (own + f"hierarchical_memory_limit {limit}\n"
            + "".join(f"total_{line}\n" for line in total))


def write_v1_unit(roots: Mapping[str, Path], relative: str, f: UnitFigures, leaf: str | None = None) -> None:
    """One unit in the v1 cpuacct, memory and cpuset hierarchies (`roots`: controller → mount dir)."""
    procs = "".join(f"{p}\n" for p in f.pids)
    for controller, root in roots.items():
        directory = root / relative
        directory.mkdir(parents=True, exist_ok=True)
        if leaf:
            (directory / "cgroup.procs").write_text("")
            (directory / "tasks").write_text("")
            _write(directory / leaf / "cgroup.procs", procs)
            _write(directory / leaf / "tasks", procs)
        else:
            (directory / "cgroup.procs").write_text(procs)
            (directory / "tasks").write_text(procs)
        if controller == "cpuacct":
            (directory / "cpuacct.usage").write_text(f"{round(f.cpu_s * 1e9)}\n")
            (directory / "cpuacct.stat").write_text(
                f"user {round(f.cpu_user_s * 100)}\nsystem {round(f.cpu_system_s * 100)}\n")
        elif controller == "memory":
            (directory / "memory.usage_in_bytes").write_text(f"{f.memory_b}\n")
            (directory / "memory.max_usage_in_bytes").write_text(f"{f.memory_peak_b}\n")
            (directory / "memory.limit_in_bytes").write_text(f"{f.memory_limit_b or V1_UNLIMITED}\n")
            (directory / "memory.failcnt").write_text(f"{f.fail_count}\n")
            (directory / "memory.stat").write_text(v1_memory_stat(f))
            (directory / "memory.oom_control").write_text(
                f"oom_kill_disable 0\nunder_oom 0\noom_kill {f.oom_kills}\n")
        elif controller == "cpuset":
            (directory / "cpuset.cpus").write_text(f"{f.cpus}\n")
            (directory / "cpuset.mems").write_text("0\n")


def proc_stat_text(ticks: Mapping[str, int], cpus: int) -> str:
    """/proc/stat with the aggregate line holding `ticks` (USER_HZ) and `cpus` per-CPU lines."""
    order = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
    values = [int(ticks.get(m, 0)) for m in order]
    lines = ["cpu  " + " ".join(map(str, values))]
    for index in range(cpus):
        lines.append(f"cpu{index} " + " ".join(str(v // cpus) for v in values))
    lines += ["intr 1000 0 0", "ctxt 123456", "btime 1700000000", "processes 4242", "procs_running 3",
              "procs_blocked 0", "softirq 1000 0 0 0 0 0 0 0 0 0 0"]
    return "\n".join(lines) + "\n"


def meminfo_text(total_b: int, free_b: int, available_b: int, cached_b: int = 0) -> str:
    kb = 1024
    return (f"MemTotal:       {total_b // kb:>8} kB\nMemFree:        {free_b // kb:>8} kB\n"
            f"MemAvailable:   {available_b // kb:>8} kB\nBuffers:        {65536:>8} kB\n"
            f"Cached:         {cached_b // kb:>8} kB\nSwapCached:            0 kB\n"
            "Active:          1048576 kB\nInactive:        2097152 kB\n")


def write_process(proc_root: Path, pid: int, uid: int, name: str = "python3",
                  environ: Iterable[tuple[str, str]] = ()) -> None:
    directory = proc_root / str(pid)
    _write(directory / "status",
           f"Name:\t{name}\nUmask:\t0022\nState:\tR (running)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n"
           f"PPid:\t1\nTracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
           "FDSize:\t64\nThreads:\t1\n")
    (directory / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ))


def write_rapl_zone(root: Path, zone_id: str, name: str, energy_uj: int,
                    max_range_uj: int = 262143328850) -> None:
    directory = root / zone_id
    _write(directory / "name", f"{name}\n")
    (directory / "energy_uj").write_text(f"{energy_uj}\n")
    (directory / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    (directory / "enabled").write_text("1\n")


def build_v2_slurm_tree(base: Path, jobs: int, *, cpus: int = 64, cpu_s: float = 10.0,
                        start_job: int = 1000) -> Path:
    """`jobs` running Slurm jobs under system.slice/slurmstepd.scope in a pure v2 tree at base, with
    mountinfo, proc (stat, meminfo, one process per job) and an empty powercap directory."""
    _write(base / "mountinfo", V2_MOUNTINFO)
    cgroup = base / "cgroup"
    scope = cgroup / "system.slice" / "slurmstepd.scope"
    proc = base / "proc"
    for index in range(jobs):
        job = start_job + index
        pid = 100000 + index
        figures = UnitFigures(cpu_user_s=cpu_s * 0.9, cpu_system_s=cpu_s * 0.1, memory_b=2**30,
                              memory_peak_b=2**31, memory_limit_b=2**33, rss_b=2**29, cache_b=2**28,
                              cpus=f"{index % cpus}", pids=[pid])
        write_v2_unit(scope / f"job_{job}", figures, leaf="step_0/user/task_0")
        write_process(proc, pid, 1000 + index % 50, environ=[("SLURM_JOB_ID", str(job)),
                                                            ("SLURM_JOB_ACCOUNT", f"proj{index % 7}")])
    _write(proc / "stat", proc_stat_text({"user": 100000, "system": 10000, "idle": 500000}, cpus))
    _write(proc / "meminfo", meminfo_text(2**40, 2**39, 2**39 + 2**37))
    (base / "powercap").mkdir(exist_ok=True)
    return base


def build_v1_slurm_tree(base: Path, jobs: int, *, cpus: int = 64, cpu_s: float = 10.0,
                        start_job: int = 1000) -> Path:
    """The same jobs in the v1 layout slurm/uid_<U>/job_<N> (cpuacct, memory, cpuset)."""
    _write(base / "mountinfo", V1_MOUNTINFO)
    cgroup = base / "cgroup"
    roots = {"cpuacct": cgroup / "cpu,cpuacct", "memory": cgroup / "memory", "cpuset": cgroup / "cpuset"}
    proc = base / "proc"
    for index in range(jobs):
        job = start_job + index
        pid = 100000 + index
        uid = 1000 + index % 50
        figures = UnitFigures(cpu_user_s=cpu_s * 0.9, cpu_system_s=cpu_s * 0.1, memory_b=2**30,
                              memory_peak_b=2**31, memory_limit_b=2**33, rss_b=2**29, cache_b=2**28,
                              cpus=f"{index % cpus}", pids=[pid])
        write_v1_unit(roots, f"slurm/uid_{uid}/job_{job}", figures, leaf="step_0/task_0")
        write_process(proc, pid, uid, environ=[("SLURM_JOB_ID", str(job)),
                                               ("SLURM_JOB_ACCOUNT", f"proj{index % 7}")])
    _write(proc / "stat", proc_stat_text({"user": 100000, "system": 10000, "idle": 500000}, cpus))
    _write(proc / "meminfo", meminfo_text(2**40, 2**39, 2**39 + 2**37))
    (base / "powercap").mkdir(exist_ok=True)
    return base
