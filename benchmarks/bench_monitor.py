"""Exporter scrape time with 1,000 Slurm jobs in a fixture tree (target: < 100 ms per scrape).

Trees from wattwise.monitor.synth in a temporary directory, in the cgroup v2 layout
(system.slice/slurmstepd.scope/job_N) and the v1 layout (slurm/uid_U/job_N in cpu,cpuacct, memory,
cpuset). The counters do not move between scrapes, which is the worst case: every unit then gets its
liveness checked (v2 cgroup.events, v1 the cgroup.procs where its process was last seen). A scrape is
MonitorExporter.scrape(): walk, reads, attribution and the exposition text. The first scrape after
start (which also resolves every job's user and project) is reported separately, and so are the CPU
time of a scrape and the load average: on a busy machine wall time is mostly waiting for a CPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.carbon.live import CachedIntensity, StaticSource
from wattwise.monitor import synth
from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
from wattwise.monitor.metadata import OwnerResolver, UserNames
from wattwise.providers.estimate import PowerCurve

UNITS = 1000
SCRAPES = 30
TARGET_MS = 100.0


def measure(layout: str, base: Path) -> tuple[float, float, float, float, int]:
    builder = synth.build_v2_slurm_tree if layout == "v2" else synth.build_v1_slurm_tree
    builder(base, UNITS)
    (base / "passwd").write_text("".join(f"user{uid}:x:{uid}:{uid}::/home:/bin/sh\n" for uid in range(1000, 1050)))
    clock = [1_700_000_000.0]
    config = ExporterConfig(mountinfo=base / "mountinfo", cgroup_root=base / "cgroup",
                            powercap_root=base / "powercap", proc_root=base / "proc", hostname="bench")
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("FR")),
                               owners=OwnerResolver(base / "proc", names=UserNames(base / "passwd")),
                               power_curve=PowerCurve.from_tdp(280.0, "bench"), clock=lambda: clock[0])
    started = time.perf_counter()
    exporter.open()
    clock[0] += 15
    text = exporter.scrape()
    first_ms = (time.perf_counter() - started) * 1e3
    units = text.count("wattwise_unit_energy_joules_total{")
    times = []
    cpu_times = []
    for _ in range(SCRAPES):
        clock[0] += 15
        started, cpu_started = time.perf_counter(), time.process_time()
        exporter.scrape()
        times.append((time.perf_counter() - started) * 1e3)
        cpu_times.append((time.process_time() - cpu_started) * 1e3)
    times.sort()
    return first_ms, statistics.median(times), times[int(0.95 * (len(times) - 1))], statistics.median(cpu_times), units


def main() -> int:
    ok = True
    for layout in ("v2", "v1"):
        with tempfile.TemporaryDirectory(prefix=f"wattwise-bench-{layout}-") as directory:
            first_ms, median_ms, p95_ms, cpu_ms, units = measure(layout, Path(directory))
        print(f"cgroup {layout}: {units} units exported; start + first scrape {first_ms:.1f} ms; "
              f"scrape median {median_ms:.1f} ms (CPU time {cpu_ms:.1f} ms), p95 {p95_ms:.1f} ms over {SCRAPES} "
              f"scrapes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        ok &= report(f"monitor scrape, {UNITS} units, cgroup {layout} (median)", median_ms, "ms", TARGET_MS,
                     higher_is_better=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
