"""Scheduling test bed benchmarks (issue 7).

- oracle over a 100,000-job trace (Alibaba PAI lengths and CPUs resampled, arrivals spread over 80 days of the
  Germany 2024 trace), 24 h windows, 60 s slots: `simulate` including its agnostic baseline (target < 30 s);
  reading the 100,000-row CSV is reported beside it.
- suspend-resume, one 16 h job (alternating 200 W / 100 W phases of 30 min) with a 30 min startup at 100 W and
  a waiting time of 4 days, 60 s slots: the exact optimum (target < 2 s).
- faster cells (issue 17): examples/sweep-daily-arrivals.yml (1,600 configurations × 31 arrivals, all optimal)
  with the suspend-resume program of before (`slots`) and of now, in this run: ratio of the cells' CPU time and
  of the wall time (target ≥ 4×), every figure identical.
- the thesis grid as it was, examples/thesis-grid.yml (2,400 configurations, one arrival, all optimal):
  `run_sweep` on every CPU (target < 600 s).
Also printed, without targets: every policy on the shipped PAI 1k trace.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.carbon.trace import read_trace
from wattwise.jobmodel import JobModel, Phase
from wattwise.schedule.jobs import make_job, read_jobs
from wattwise.schedule.simulate import POLICIES, Options, simulate, summary
from wattwise.schedule.sweep import load_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
CARBON = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
PAI = ROOT / "data" / "jobs" / "alibaba-pai-1k.csv"
GRID = ROOT / "examples" / "thesis-grid.yml"
DAILY_GRID = ROOT / "examples" / "sweep-daily-arrivals.yml"


def oracle_100k(trace) -> bool:
    pai = read_jobs(PAI)
    rng = np.random.default_rng(0)
    n = 100_000
    lengths = rng.choice([j.length_s for j in pai], n) + rng.integers(0, 60, n)
    cpus = rng.choice([j.cpus for j in pai], n)
    arrivals = np.sort(rng.uniform(0, 80 * 86400, n)).round()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs-100k.csv"
        lines = ["arrival_time,length,cpus"] + [f"{a:.0f},{length:.0f},{c}"
                                                for a, length, c in zip(arrivals, lengths, cpus, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        started = time.perf_counter()
        jobs = read_jobs(path)
        read_s = time.perf_counter() - started
    started = time.perf_counter()
    sim = simulate(jobs, trace, Options("oracle", wait_s=86400.0, resolution_s=60.0))
    elapsed = time.perf_counter() - started
    saving = summary(sim)["savings"]["carbon_pct"]
    print(f"oracle, 100,000 jobs, 24 h windows, 60 s: simulate {elapsed:.2f} s (with the agnostic baseline), "
          f"reading the CSV {read_s:.2f} s, saving {saving:.1f} %")
    return report("oracle_100k_jobs_24h_60s", elapsed, "s", 30.0, higher_is_better=False)


def suspend_resume_16h(trace) -> bool:
    model = JobModel((Phase("startup", 1800, 100),),
                     (Phase("high", 1800, 200), Phase("low", 1800, 100)))
    job = make_job(0, 2 * 86400.0, 16 * 3600.0, base=model, kind="phases")
    options = Options("suspend-resume", wait_s=4 * 86400.0, resolution_s=60.0)
    simulate([job], trace, options, baseline=False)  # warm up caches (profile, imports)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sim = simulate([job], trace, options, baseline=False)
        times.append(time.perf_counter() - started)
    r = sim.results[0]
    limited = Options("suspend-resume", wait_s=4 * 86400.0, resolution_s=60.0, max_resumes=3)
    started = time.perf_counter()
    simulate([job], trace, limited, baseline=False)
    limited_s = time.perf_counter() - started
    print(f"suspend-resume, 16 h job, 30 min startup, 4-day wait ({r.deadline_s / 60 - r.arrival_s / 60:.0f} "
          f"slots of 60 s): best of 3 {min(times):.3f} s, {r.interruptions} resumes, {r.carbon_g:.1f} g; "
          f"with at most 3 resumes {limited_s:.3f} s")
    return report("suspend_resume_16h_4d_30min_startup", min(times), "s", 2.0, higher_is_better=False)


def _grid_run(grid, workers: int, algorithm: str) -> tuple[float, float, list[dict]]:
    """Wall time, CPU seconds summed over the cells, and the rows of one sweep with the given DP."""
    os.environ["WATTWISE_DP"] = algorithm  # inherited by the worker processes started below
    try:
        started = time.perf_counter()
        rows = run_sweep(grid, workers=workers)
        elapsed = time.perf_counter() - started
    finally:
        del os.environ["WATTWISE_DP"]
    return elapsed, sum(r["cpu_s"] for r in rows), rows


def faster_cells(path: Path = DAILY_GRID) -> bool:
    """Issue 17 part 2: the sweep grid with the suspend-resume program of today (`progress`, compiled) and
    of before (`slots`, the reference), in this run; the ratio of the CPU time spent in the cells (robust to
    other load on the machine) and of the wall time; every figure identical."""
    grid = load_grid(path)
    workers = os.cpu_count() or 1
    new_wall, new_cpu, new_rows = _grid_run(grid, workers, "progress")
    old_wall, old_cpu, old_rows = _grid_run(grid, workers, "slots")
    strip = ("elapsed_s", "cpu_s")
    same = [{k: v for k, v in r.items() if k not in strip} for r in new_rows] == \
        [{k: v for k, v in r.items() if k not in strip} for r in old_rows]
    optimal = sum(r["optimal"] for r in new_rows)
    print(f"{path.name}: {len(new_rows)} configurations × {len(grid.arrivals_h)} arrivals on {workers} "
          f"processes, {optimal} optimal; cells' CPU {old_cpu:.1f} s (slots, before) → {new_cpu:.1f} s "
          f"(progress, now) = {old_cpu / new_cpu:.1f}×; wall {old_wall:.1f} s → {new_wall:.1f} s = "
          f"{old_wall / new_wall:.1f}×; every figure identical: {same}")
    ok = report("sweep_cells_cpu_speedup", old_cpu / new_cpu, "x", 4.0, higher_is_better=True)
    report("sweep_wall_speedup", old_wall / new_wall, "x", 4.0, higher_is_better=True)
    return ok and same


def thesis_grid() -> bool:
    """The thesis grid as the thesis ran it (examples/thesis-grid.yml)."""
    grid = load_grid(GRID)
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    rows = run_sweep(grid, workers=workers)
    elapsed = time.perf_counter() - started
    optimal = sum(r["optimal"] for r in rows)
    print(f"thesis grid: {len(rows)} configurations × {len(grid.arrivals_h)} arrivals on {workers} processes, "
          f"{optimal} optimal, {elapsed:.1f} s")
    return report("thesis_grid", elapsed, "s", 600.0, higher_is_better=False) and optimal == len(rows)


def pai_policies(trace) -> None:
    jobs = read_jobs(PAI)
    for policy in POLICIES:
        started = time.perf_counter()
        sim = simulate(jobs, trace, Options(policy, wait_s=86400.0))
        elapsed = time.perf_counter() - started
        s = summary(sim)
        print(f"PAI 1k, 24 h wait, {policy:>14}: {elapsed:6.2f} s, saving {s['savings']['carbon_pct']:5.1f} %, "
              f"{s['totals']['interruptions']} interruptions")


def main() -> int:
    trace = read_trace(CARBON)
    ok = suspend_resume_16h(trace)
    ok &= oracle_100k(trace)
    pai_policies(trace)
    ok &= faster_cells()
    ok &= thesis_grid()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
