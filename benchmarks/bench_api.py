"""API latency of a run page's data for a run with 1,000,000 samples (target: p95 < 200 ms).

A run page loads: the run with its phase summary (/api/runs/ID), per-metric phase statistics
(/api/runs/ID/phases), the downsampled measurements (/api/runs/ID/measurements?points=800) and the notes.
The app runs in uvicorn on a loopback port; requests go through httpx. Figures:

- cold: the first load after the run finished (builds the bucket and result caches);
- warm: repeated loads (p50/p95 per request and per page);
- restarted: a new app on the same database (in-process memory empty, database caches present);
- zoom: measurements for random windows (an index range scan of raw samples where finer than the cache).

Usage: .venv/bin/python benchmarks/bench_api.py [--samples N] [--db URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.web.background import BackgroundServer

TARGET_P95_MS = 200.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()

    import httpx

    from wattwise.analysis.synthetic import large_run
    from wattwise.store import Store
    from wattwise.web import series
    from wattwise.web.app import create_app

    tmp = tempfile.TemporaryDirectory(prefix="wattwise-bench-api-")
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    store = Store(url)
    t0 = time.perf_counter()
    run_id = large_run(store, samples=args.samples, metrics=4)
    print(f"database: {store.engine.dialect.name}; run {run_id}: {store.sample_count(run_id):,} samples "
          f"in 4 metrics, written in {time.perf_counter() - t0:.1f} s")
    page = [
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}/phases",
        f"/api/runs/{run_id}/measurements?points=800",
        f"/api/runs/{run_id}/notes",
    ]

    def load_page(client: httpx.Client) -> tuple[float, dict[str, float]]:
        each = {}
        start = time.perf_counter()
        for path in page:
            t = time.perf_counter()
            response = client.get(path)
            response.raise_for_status()
            each[path] = (time.perf_counter() - t) * 1000
        return (time.perf_counter() - start) * 1000, each

    ok = True
    with BackgroundServer(create_app(store=store)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        cold, cold_each = load_page(client)
        parts = ", ".join(f"{p}: {v:.0f} ms" for p, v in cold_each.items())
        print(f"cold page load (builds the caches): {cold:.0f} ms ({parts})")
        pages: list[float] = []
        per_request: dict[str, list[float]] = {p: [] for p in page}
        for _ in range(args.repeat):
            total, each = load_page(client)
            pages.append(total)
            for p, v in each.items():
                per_request[p].append(v)
        for p, values in per_request.items():
            print(f"  warm {p:45s} p50 {statistics.median(values):6.1f} ms  p95 {_percentile(values, 95):6.1f} ms")
        warm_requests = [v for values in per_request.values() for v in values]
        p50, p95 = statistics.median(pages), _percentile(pages, 95)
        print(f"warm page load (4 requests): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        ok &= report("api_run_page_request_p95_warm", _percentile(warm_requests, 95), "ms", TARGET_P95_MS, False)
        ok &= report("api_run_page_p95_warm", _percentile(pages, 95), "ms", TARGET_P95_MS, False)

        rng = random.Random(1)
        phases = store.phases(run_id)
        t_start, t_end = phases[0].start_us, phases[-1].end_us
        zooms = []
        for _ in range(args.repeat):
            width = int((t_end - t_start) * rng.choice([0.5, 0.1, 0.01, 0.001]))
            a = rng.randint(t_start, t_end - width)
            t = time.perf_counter()
            client.get(f"/api/runs/{run_id}/measurements", params={"start_us": a, "end_us": a + width,
                                                                     "points": 800}).raise_for_status()
            zooms.append((time.perf_counter() - t) * 1000)
        print(f"zoomed measurements (random windows 0.1 %–50 %): p50 {statistics.median(zooms):.1f} ms, "
              f"p95 {_percentile(zooms, 95):.1f} ms")
        ok &= report("api_zoom_p95", _percentile(zooms, 95), "ms", TARGET_P95_MS, False)

    series._memory.items.clear()  # a restarted server: nothing in memory, caches in the database
    with BackgroundServer(create_app(store=store)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        first, _ = load_page(client)
        restarted = [load_page(client)[0] for _ in range(args.repeat // 2)]
        print(f"restarted server: first page load {first:.0f} ms, then p95 {_percentile(restarted, 95):.1f} ms")
        ok &= report("api_run_page_first_after_restart", first, "ms", TARGET_P95_MS, False)

    # `wattwise serve` warms the caches of newly finished runs in the background: a person opening the
    # page of a run that finished a few seconds ago gets the warm figures
    from wattwise.web.warm import Warmer

    second = large_run(store, samples=args.samples, metrics=4, name="large-2")
    t = time.perf_counter()
    warmer = Warmer(store)
    warmer.step()
    warm_s = time.perf_counter() - t
    page = [p.replace(f"/runs/{run_id}", f"/runs/{second}") for p in page]
    with BackgroundServer(create_app(store=store)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        first, _ = load_page(client)
    print(f"background warmer: {warm_s:.1f} s per finished run of {args.samples:,} samples; "
          f"first page load after it: {first:.0f} ms")
    ok &= report("api_run_page_first_after_warmer", first, "ms", TARGET_P95_MS, False)
    store.close()
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
