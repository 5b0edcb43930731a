"""Exporter scrape time with 1,000 Slurm jobs in a fixture tree (target: < 100 ms per scrape).

Trees from wattwise.monitor.synth in a temporary directory, in the cgroup v2 layout
(system.slice/slurmstepd.scope/job_N) and the v1 layout (slurm/uid_U/job_N in cpu,cpuacct, memory,
cpuset). The counters do not move between scrapes, which is the worst case: every unit then gets its
liveness checked (v2 cgroup.events, v1 the cgroup.procs where its process was last seen). A scrape is
MonitorExporter.scrape(): walk, reads, attribution and the exposition text. The first scrape after
start (which also resolves every job's user and project) is reported separately, and so are the CPU
time of a scrape and the load average: on a busy machine wall time is mostly waiting for a CPU.

Exposition, side by side (issue 20 item 8): the same 1,000 units' metric families written by the
exporter's own code (wattwise.monitor.exposition) and by prometheus_client (a custom collector yielding
Gauge/CounterMetricFamily objects, exposed with generate_latest and the OpenMetrics generate_latest),
median of alternating runs. The exporter keeps its own writer only while it is at least 2x faster.
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


def _client_families(exporter: MonitorExporter) -> list:
    """The unit and node families of the last scrape as prometheus_client metric families (the contender)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from wattwise.monitor.exporter import UNIT_LABELS

    families = []
    names = [("unit_cpu_seconds", "counter", lambda st: st.usage.cpu_time_s),
             ("unit_cpu_user_seconds", "counter", lambda st: st.usage.cpu_user_s),
             ("unit_cpu_system_seconds", "counter", lambda st: st.usage.cpu_system_s),
             ("unit_cpus", "gauge", lambda st: st.usage.cpu_count),
             ("unit_memory_used_bytes", "gauge", lambda st: st.usage.memory_b),
             ("unit_memory_limit_bytes", "gauge", lambda st: st.usage.memory_limit_b),
             ("unit_memory_rss_bytes", "gauge", lambda st: st.usage.memory_rss_b),
             ("unit_memory_cache_bytes", "gauge", lambda st: st.usage.memory_cache_b),
             ("unit_memory_failures", "counter", lambda st: st.usage.memory_fail_count),
             ("unit_oom_kills", "counter", lambda st: st.usage.oom_kill_count),
             ("unit_cpu_share_ratio", "gauge", lambda st: st.cpu_share),
             ("unit_memory_share_ratio", "gauge", lambda st: st.memory_share),
             ("unit_power_watts", "gauge", lambda st: st.power_w),
             ("unit_energy_joules", "counter", lambda st: st.energy_j),
             ("unit_emissions_grams", "counter", lambda st: st.emissions_g),
             ("unit_start_time_seconds", "gauge", lambda st: st.first_seen_s)]
    states = sorted((k, s) for k, s in exporter._states.items() if s.alive and s.owner is not None)
    labels = [[exporter.config.hostname, s.unit.manager, s.unit.unit_id, s.owner.user, s.owner.project]
              for _, s in states]
    for name, kind, get in names:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = cls("wattwise_" + name, "help text", labels=UNIT_LABELS)
        for (_, state), values in zip(states, labels, strict=True):
            value = get(state)
            if value is not None:
                family.add_metric(values, value)
        families.append(family)
    return families


def exposition_comparison(base: Path) -> tuple[float, float, float, int]:
    """(hand-written ms, prometheus_client text ms, prometheus_client OpenMetrics ms, samples) at UNITS units."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from wattwise.monitor.exposition import render

    synth.build_v2_slurm_tree(base, UNITS)
    clock = [1_700_000_000.0]
    config = ExporterConfig(mountinfo=base / "mountinfo", cgroup_root=base / "cgroup",
                            powercap_root=base / "powercap", proc_root=base / "proc", hostname="bench")
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("FR")),
                               owners=OwnerResolver(base / "proc", names=UserNames(None)),
                               power_curve=PowerCurve.from_tdp(280.0, "bench"), clock=lambda: clock[0])
    exporter.open()
    clock[0] += 15
    exporter.scrape()
    node = exporter.node.read()

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return _client_families(exporter)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    samples = sum(len(f.samples) for f in _client_families(exporter))
    hand, text, openmetrics = [], [], []
    for _ in range(15):
        started = time.perf_counter()
        render(exporter._families(node)[:16])  # the 16 unit families, as the contender writes them
        hand.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        generate_latest(registry)
        text.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        generate_openmetrics(registry)
        openmetrics.append((time.perf_counter() - started) * 1e3)
    return statistics.median(hand), statistics.median(text), statistics.median(openmetrics), samples


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory(prefix="wattwise-bench-expo-") as directory:
        hand_ms, client_ms, om_ms, samples = exposition_comparison(Path(directory))
    print(f"exposition of {UNITS} units ({samples} samples): hand-written {hand_ms:.1f} ms, prometheus_client "
          f"{client_ms:.1f} ms (text 0.0.4) / {om_ms:.1f} ms (OpenMetrics): prometheus_client is "
          f"{client_ms / hand_ms:.1f}x / {om_ms / hand_ms:.1f}x slower")
    ok &= report(f"exposition speed-up of the hand-written writer over prometheus_client, {UNITS} units",
                 client_ms / hand_ms, "x", 2.0, higher_is_better=True)
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
