from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wattwise.providers.cgroup import (
    CgroupMounts,
    CgroupProvider,
    UnitCgroup,
    cgroup_paths_of_pid,
    create_unit_cgroup,
    parse_cpuset,
)

# the layout of this kind of machine: v1 controllers mounted one by one, v2 at /sys/fs/cgroup/unified
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# a common distribution layout: cpu and cpuacct co-mounted
COMOUNTED = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
# pure v2, mounted inside a container with a non-root mount
PURE_V2 = "29 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_mountinfo_hybrid_layout() -> None:
    mounts = CgroupMounts.parse(HYBRID)
    assert mounts.v1["cpuacct"].mount_point == Path("/sys/fs/cgroup/cpuacct")
    assert mounts.v1["memory"].mount_point == Path("/sys/fs/cgroup/memory")
    assert "name=systemd" in mounts.v1
    assert mounts.v2 is not None and mounts.v2.mount_point == Path("/sys/fs/cgroup/unified")
    assert mounts.v1_dir("memory", "/a/b") == Path("/sys/fs/cgroup/memory/a/b")


def test_mountinfo_comounted_and_container_root() -> None:
    mounts = CgroupMounts.parse(COMOUNTED)
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"]
    assert mounts.v1["cpu"].mount_point == Path("/sys/fs/cgroup/cpu,cpuacct")
    v2 = CgroupMounts.parse(PURE_V2)
    assert v2.v1 == {}
    # /proc/<pid>/cgroup shows paths from the hierarchy root: the mounted part is stripped
    assert v2.v2_dir("/kubepods/pod1/ctr") == Path("/sys/fs/cgroup/ctr")


def test_parse_cpuset() -> None:
    assert parse_cpuset("0-3,8,10-11\n") == 7
    assert parse_cpuset("0") == 1


def test_unit_read_v1_fixture(tmp_path: Path) -> None:
    acct = tmp_path / "cpuacct" / "job"
    memory = tmp_path / "memory" / "job"
    acct.mkdir(parents=True)
    memory.mkdir(parents=True)
    (acct / "cpuacct.usage").write_text("2500000000\n")
    (acct / "cpuacct.stat").write_text("user 150\nsystem 50\n")
    (memory / "memory.usage_in_bytes").write_text("1048576\n")
    (memory / "memory.max_usage_in_bytes").write_text("2097152\n")
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (memory / "memory.failcnt").write_text("3\n")
    (memory / "memory.stat").write_text("cache 4096\nrss 8192\ntotal_cache 4096\ntotal_rss 8192\n")
    usage = UnitCgroup("job", {"cpuacct": acct, "memory": memory}).read()
    assert usage.cpu_time_s == pytest.approx(2.5)
    assert usage.memory_b == 1048576 and usage.memory_peak_b == 2097152
    assert usage.memory_limit_b is None  # "unlimited"
    assert usage.memory_fail_count == 3 and usage.memory_rss_b == 8192 and usage.memory_cache_b == 4096


def test_unit_read_v2_fixture(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    (tmp_path / "memory.current").write_text("4096\n")
    (tmp_path / "memory.peak").write_text("8192\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
    (tmp_path / "cpuset.cpus.effective").write_text("0-1\n")
    usage = UnitCgroup("job", v2=tmp_path).read()
    assert usage.cpu_time_s == pytest.approx(1.5)
    assert usage.cpu_user_s == pytest.approx(1.0) and usage.cpu_system_s == pytest.approx(0.5)
    assert usage.memory_b == 4096 and usage.memory_peak_b == 8192 and usage.memory_limit_b is None
    assert usage.oom_kill_count == 1 and usage.cpu_count == 2


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")


@pytest.mark.cgroups
@needs_root
def test_real_cgroup_attributes_cpu_of_a_busy_process() -> None:
    created = create_unit_cgroup("burner", f"test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        procs = [str(p) for p in created.procs_files]

        def enter() -> None:
            for path in procs:
                with open(path, "w") as handle:
                    handle.write(str(os.getpid()))

        provider = CgroupProvider(created.unit)
        provider.open()
        burner = subprocess.Popen(
            [sys.executable, "-c", "import time\nwhile time.process_time() < 0.6: pass"],
            preexec_fn=enter,
        )
        # the process is really in the cgroup (v1 cpuacct, and v2 when mounted)
        time.sleep(0.2)
        paths = cgroup_paths_of_pid(burner.pid)
        assert paths["cpuacct"].endswith(created.unit.v1["cpuacct"].name)
        assert burner.pid in created.unit.pids()
        burner.wait()
        cpu_s, memory_b = provider.read()
        assert cpu_s is not None and 0.6 <= cpu_s < 1.5  # its own 0.6 s of CPU plus interpreter start
        assert memory_b is not None
        # the hierarchy root is found in every mounted hierarchy
        assert UnitCgroup.of_path("x", "/", CgroupMounts.from_mountinfo()).exists()
    finally:
        created.kill_all()
        created.remove()
    assert not created.unit.exists()
