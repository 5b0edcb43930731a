"""Foundation benchmarks: sampler overhead and sample ingest throughput.

- Sampler overhead: CPU seconds used by the sampling process per second measured, with every available
  machine provider plus a cgroup provider, at 100 ms and 10 ms (in-process, the sampler alone).
- `wattwise measure` overhead next to CodeCarbon (`peers_codecarbon.py`, when the `bench` extra is installed):
  the whole measuring process in the steady state, at 100 ms (target ≤ 0.5 % of one core) and at 1 s (target:
  below CodeCarbon's tracker at 1 s, as a ratio measured in the same run).
- Ingest: samples/s written with Store.add_samples into SQLite and PostgreSQL (targets: ≥ 200k/s and
  ≥ 500k/s), 1,000,000 samples in batches of 100,000 (the sampler writes smaller batches every second);
  the median of 3 repetitions into fresh runs, since the server's own timing varies by ±30 % here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.measure.sampler import Sampler
from wattwise.providers import default_machine_providers
from wattwise.providers.cgroup import CgroupMounts, CgroupProvider, UnitCgroup
from wattwise.store import Store

MEASURE_S = float(os.environ.get("WATTWISE_BENCH_SAMPLER_S", "10"))
PG_ADMIN = os.environ.get("WATTWISE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def sampler_overhead(interval_s: float, directory: Path) -> tuple[float, int, list[str]]:
    store = Store(f"sqlite:///{directory / f'overhead-{interval_s}.db'}")
    run_id = store.create_run("overhead")
    providers, _ = default_machine_providers()
    sampler = Sampler(store, run_id)
    for provider in providers:
        sampler.attach(provider, interval_s if provider.default_interval_s < 1 else None)
    unit = UnitCgroup.of_pid("self", os.getpid(), CgroupMounts.from_mountinfo())
    sampler.attach(CgroupProvider(unit), interval_s, label="self")
    cpu_before = time.process_time()
    wall_before = time.monotonic()
    sampler.start()
    time.sleep(MEASURE_S)
    sampler.stop()
    cpu_s = time.process_time() - cpu_before
    wall_s = time.monotonic() - wall_before
    return cpu_s / wall_s, sampler.samples_written, sampler.providers


def ingest(url: str, total: int = 1_000_000, batch: int = 100_000, repeat: int = 3) -> float:
    import statistics

    rates = [ingest_once(url, total, batch) for _ in range(repeat)]
    print(f"  ingest into {url.split(':', 1)[0]}: " + ", ".join(f"{r:,.0f}" for r in rates) + " samples/s")
    return statistics.median(rates)


def ingest_once(url: str, total: int, batch: int) -> float:
    from wattwise.providers.base import Kind, MetricSpec

    store = Store(url)
    run_id = store.create_run("ingest")
    metric_ids = [
        store.add_metric(run_id, MetricSpec(f"m{i}_w", "W", Kind.GAUGE), "bench") for i in range(10)
    ]
    rows = [
        (metric_ids[i % 10], 1_700_000_000_000_000 + i * 1000, float(i % 977) * 0.5) for i in range(total)
    ]
    started = time.perf_counter()
    for offset in range(0, total, batch):
        store.add_samples(rows[offset : offset + batch])
    elapsed = time.perf_counter() - started
    assert store.sample_count(run_id) == total
    store.close()
    return total / elapsed


def measure_next_to_codecarbon() -> bool:
    from peers_codecarbon import codecarbon_comparison

    results = codecarbon_comparison(float(os.environ.get("WATTWISE_BENCH_PEERS_S", "40")))
    if not results:
        print("TARGET-FREE measure_overhead: CodeCarbon not installed, the comparison was skipped")
        return True
    share = results["wattwise_100ms"]["overhead_share"] * 100
    ok = report("measure_overhead_100ms", share, "% of one core", 0.5, higher_is_better=False)
    ratio = results["wattwise_1s"]["overhead_share"] / max(results["codecarbon_1s"]["overhead_share"], 1e-9)
    ok &= report("measure_1s_vs_codecarbon_1s", ratio, "× CodeCarbon's CPU", 1.0, higher_is_better=False)
    return ok


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for interval_s in (0.1, 0.01):
            share, samples, providers = sampler_overhead(interval_s, directory)
            print(
                f"sampler at {interval_s * 1000:g} ms for {MEASURE_S:g} s: {samples} samples from "
                f"{', '.join(providers)}; {share * 100:.3f} % of one core"
            )
            if interval_s == 0.1:
                ok &= report(
                    "sampler_overhead_100ms", share * 100, "% of one core", 1.0, higher_is_better=False
                )
            else:
                print(f"TARGET-FREE sampler_overhead_10ms: {share * 100:.3f} % of one core")
        ok &= measure_next_to_codecarbon()
        rate = ingest(f"sqlite:///{directory / 'ingest.db'}")
        ok &= report("ingest_sqlite", rate, "samples/s", 200_000, higher_is_better=True)
    try:
        import psycopg

        name = f"wattwise_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            rate = ingest(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
            ok &= report("ingest_postgresql", rate, "samples/s", 500_000, higher_is_better=True)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:
        print(f"ingest_postgresql: skipped ({exc})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
