"""The exporter on real cgroups of this machine, with real processes burning CPU.

The test makes its own sub-tree `wwtest-<id>` in the real v1 hierarchies (cpuacct, memory, cpuset,
cpu) and in the v2 hierarchy, and a mountinfo file that says those sub-trees are the hierarchies'
mount points. Everything the exporter then reads is the kernel's: cgroup files, /proc/stat,
/proc/meminfo, /proc/<pid>/status. Jobs:

* slurm 101 (v1 layout slurm/uid_<U>/job_101/step_0/task_0, pinned to one CPU by its cpuset): burns;
* slurm 202 (v2 layout system.slice/slurmstepd.scope/job_202/step_0/user/task_0): burns a quarter of
  the time;
* slurm 303 (v2): sleeps; slurm 404 (v2): no process (stale, must not be exported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.monitor.conftest import check_metrics, parse_samples, unit_labels, unit_values

from wattwise.carbon.live import CachedIntensity, StaticSource
from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
from wattwise.monitor.node import NodeReader
from wattwise.providers.cgroup import CgroupMounts
from wattwise.providers.estimate import PowerCurve
from wattwise.providers.procstat import USER_HZ

pytestmark = [pytest.mark.cgroups, pytest.mark.slow]

BURN = "while True: pass"
DUTY = ("import time\nwhile True:\n    end = time.perf_counter() + 0.02\n"
        "    while time.perf_counter() < end: pass\n    time.sleep(0.06)\n")
V1_CONTROLLERS = ("cpuacct", "memory", "cpuset")


def _mounts() -> CgroupMounts:
    return CgroupMounts.from_mountinfo("/proc/self/mountinfo")


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    mounts = _mounts()
    missing = [c for c in V1_CONTROLLERS if c not in mounts.v1]
    if missing or mounts.v2 is None:
        return f"needs v1 {', '.join(V1_CONTROLLERS)} and a v2 hierarchy (missing: {missing or 'v2'})"
    return None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / USER_HZ  # utime + stime


class Tree:
    def __init__(self, tmp_path: Path) -> None:
        self.name = f"wwtest-{uuid.uuid4().hex[:8]}"
        self.mounts = _mounts()
        self.created: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.mountinfo = tmp_path / "mountinfo"
        lines = []
        for number, controller in enumerate(V1_CONTROLLERS, start=100):
            base = self.mounts.v1[controller].mount_point / self.name
            lines.append(f"{number} 31 0:{number} / {base} rw,relatime - cgroup cgroup rw,{controller}")
        assert self.mounts.v2 is not None
        lines.append(f"99 31 0:99 / {self.mounts.v2.mount_point / self.name} rw,relatime - cgroup2 cgroup2 rw")
        self.mountinfo.write_text("\n".join(lines) + "\n")

    def mkdir(self, root: Path, relative: str, cpus: str | None = None) -> Path:
        """Create <root>/<test tree>/<relative> level by level; in the cpuset hierarchy give every level
        its parent's memory nodes and CPUs, and `cpus` from the job level down."""
        path = root / self.name
        for part in ["", *relative.split("/")]:
            path = path / part if part else path
            if not path.exists():
                path.mkdir()
                self.created.append(path)
            if cpus is not None:
                parent = path.parent
                (path / "cpuset.mems").write_text((parent / "cpuset.mems").read_text().strip())
                in_job = "job_" in str(path.relative_to(root / self.name))
                (path / "cpuset.cpus").write_text(cpus if in_job else (parent / "cpuset.cpus").read_text().strip())
        return path

    def start(self, code: str, procs_files: list[Path]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-c", code])
        self.processes.append(process)
        for procs in procs_files:
            procs.write_text(str(process.pid))
        return process

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(timeout=10)
        for path in reversed(self.created):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)  # the kernel frees a cgroup shortly after its last process exits


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    reason = _usable()
    if reason:
        pytest.skip(reason)
    made = Tree(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def test_real_processes_get_the_share_the_kernel_counted(tree: Tree) -> None:
    uid = os.geteuid()
    v1_job = f"slurm/uid_{uid}/job_101"
    cpus = os.cpu_count() or 1
    pinned = str(cpus - 1)
    v1_dirs = {}
    for controller in V1_CONTROLLERS:
        root = tree.mounts.v1[controller].mount_point
        v1_dirs[controller] = tree.mkdir(root, f"{v1_job}/step_0/task_0",
                                         cpus=pinned if controller == "cpuset" else None)
    assert tree.mounts.v2 is not None
    v2_root = tree.mounts.v2.mount_point
    scope = "system.slice/slurmstepd.scope"
    burner = tree.start(BURN, [d / "cgroup.procs" for d in v1_dirs.values()])
    duty = tree.start(DUTY, [tree.mkdir(v2_root, f"{scope}/job_202/step_0/user/task_0") / "cgroup.procs"])
    sleeper = tree.start("import time; time.sleep(600)",
                         [tree.mkdir(v2_root, f"{scope}/job_303/step_0/user/task_0") / "cgroup.procs"])
    tree.mkdir(v2_root, f"{scope}/job_404/step_0/user/task_0")  # no process: stale
    time.sleep(0.5)

    config = ExporterConfig(mountinfo=tree.mountinfo, hostname="real", pue=1.0, min_interval_s=0.5)
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("DE")),
                               node=NodeReader(Path("/proc"), None),
                               power_curve=PowerCurve.from_tdp(100.0, "test"))
    exporter.open()
    time.sleep(0.6)  # the first scrape below then closes an interval and opens the one we check
    before = {p.pid: _cpu_seconds(p.pid) for p in (burner, duty, sleeper)}
    first = exporter.scrape()
    time.sleep(3.0)
    second = exporter.scrape()
    after = {p.pid: _cpu_seconds(p.pid) for p in (burner, duty, sleeper)}
    check_metrics(second)

    labels = unit_labels(second)
    assert sorted(labels) == ["slurm/101", "slurm/202", "slurm/303"]
    assert labels["slurm/101"]["user"] == labels["slurm/202"]["user"] != ""

    cpu_first = unit_values(first, "wattwise_unit_cpu_seconds_total")
    cpu_second = unit_values(second, "wattwise_unit_cpu_seconds_total")
    delta = {u: cpu_second[u] - cpu_first[u] for u in cpu_second}
    # the cgroups' CPU time (cpuacct v1, cpu.stat v2) matches what the kernel counted per process
    for unit, process in (("slurm/101", burner), ("slurm/202", duty), ("slurm/303", sleeper)):
        measured = after[process.pid] - before[process.pid]
        assert delta[unit] == pytest.approx(measured, abs=0.15 + 0.05 * measured), unit
    # no ordering of the burners' CPU time is asserted: on a busy machine the scheduler decides it; what the
    # exporter guarantees is that each cgroup's counter matches the kernel's per-process count (above)
    assert delta["slurm/101"] > 0 and delta["slurm/202"] > 0
    assert unit_values(second, "wattwise_unit_cpus")["slurm/101"] == 1  # the job's cpuset

    def busy(text: str) -> float:
        return sum(v for (name, labels), v in parse_samples(text).items()
                   if name == "wattwise_node_cpu_seconds_total" and dict(labels)["mode"] not in ("idle", "iowait"))

    node_busy = busy(second) - busy(first)
    share = unit_values(second, "wattwise_unit_cpu_share_ratio")
    denominator = max(node_busy, sum(delta.values()))
    for unit in delta:
        assert share[unit] == pytest.approx(delta[unit] / denominator, abs=1e-6), unit
    assert sum(share.values()) <= 1.0 + 1e-9

    samples = parse_samples(second)
    split = {dict(labels)["part"]: v for (name, labels), v in samples.items()
             if name == "wattwise_node_power_split_watts"}
    memory_share = unit_values(second, "wattwise_unit_memory_share_ratio")
    power = unit_values(second, "wattwise_unit_power_watts")
    for unit in delta:  # P_u = PUE · (s_u · P_cpu + m_u · P_mem + P_fixed / N), PUE = 1
        expected = share[unit] * split["cpu"] + memory_share[unit] * split["memory"] + split["fixed"] / 3
        assert power[unit] == pytest.approx(expected, rel=1e-9), unit
    # power follows the CPU shares the kernel's counts gave (equal memory and fixed parts aside)
    by_share = sorted(delta, key=lambda u: share[u] * split["cpu"] + memory_share[u] * split["memory"])
    assert [power[u] for u in by_share] == sorted(power[u] for u in by_share)
    assert all(p > 0 for p in power.values())
    energy = unit_values(second, "wattwise_unit_energy_joules_total")
    assert all(energy[u] > 0 for u in ("slurm/101", "slurm/202"))


def _slurm_env() -> dict[str, str] | None:
    import shutil

    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return None
    env = dict(os.environ)
    default = Path(os.environ.get("WATTWISE_TEST_SLURM_DIR", "/var/lib/wattwise-test/slurm")) / "slurm.conf"
    if "SLURM_CONF" not in env and default.exists():
        env["SLURM_CONF"] = str(default)
    try:
        done = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return env if done.returncode == 0 and "UP" in done.stdout else None


@pytest.mark.slurm
def test_real_slurm_job_in_the_v2_layout(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job of the running Slurm (scripts/services.d/slurm.sh), its processes moved into the layout of
    Slurm's cgroup/v2 plugin; user and account come from the real scontrol."""
    env = _slurm_env()
    if env is None:
        pytest.skip("no running Slurm (scripts/services.d/slurm.sh) with sbatch and scontrol")
    for key in ("SLURM_CONF",):
        if key in env:
            monkeypatch.setenv(key, env[key])
    job = subprocess.run(["sbatch", "--parsable", "-A", "physics", "-o", "/dev/null", "--wrap",
                          "timeout 60 sh -c 'while :; do :; done'"], env=env, capture_output=True, text=True,
                         timeout=30, check=True).stdout.strip().split(";")[0]
    try:
        pids: list[str] = []
        for _ in range(100):  # wait for the burning shell, so that every process of the job is listed
            listed = subprocess.run(["scontrol", "listpids", job], env=env, capture_output=True, text=True,
                                    timeout=10).stdout.split("\n")[1:]
            pids = [line.split()[0] for line in listed if line.strip()]
            comms = set()
            for pid in pids:
                try:
                    comms.add(Path(f"/proc/{pid}/comm").read_text().strip())
                except OSError:
                    pass
            if "sh" in comms:
                break
            time.sleep(0.1)
        assert pids, f"job {job} did not start"
        assert tree.mounts.v2 is not None
        task = tree.mkdir(tree.mounts.v2.mount_point, f"system.slice/slurmstepd.scope/job_{job}/step_batch/user/task_0")
        for pid in pids:
            try:
                (task / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # a process that already exited
        config = ExporterConfig(mountinfo=tree.mountinfo, hostname="real", managers=frozenset({"slurm"}),
                                min_interval_s=0.5)
        from wattwise.monitor.metadata import OwnerResolver

        exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("DE")),
                                   node=NodeReader(Path("/proc"), None), owners=OwnerResolver(scontrol=["scontrol"]),
                                   power_curve=PowerCurve.from_tdp(100.0, "test"))
        exporter.open()
        time.sleep(1.0)
        first = exporter.scrape()
        time.sleep(1.0)
        text = exporter.scrape()
        labels = unit_labels(text)
        assert f"slurm/{job}" in labels, (pids, (task / "cgroup.procs").read_text())
        assert labels[f"slurm/{job}"]["project"] == "physics"  # Account= from scontrol
        assert labels[f"slurm/{job}"]["user"] == "root"
        # the job burns a CPU: its counter grew between the two scrapes (how much depends on the machine's load)
        cpu_first = unit_values(first, "wattwise_unit_cpu_seconds_total")[f"slurm/{job}"]
        assert unit_values(text, "wattwise_unit_cpu_seconds_total")[f"slurm/{job}"] > cpu_first
        assert unit_values(text, "wattwise_unit_power_watts")[f"slurm/{job}"] > 0
    finally:
        subprocess.run(["scancel", job], env=env, capture_output=True, timeout=30)
        for _ in range(100):
            state = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True,
                                   text=True, timeout=10).stdout
            if "JobState=RUNNING" not in state and "JobState=COMPLETING" not in state:
                break
            time.sleep(0.1)
