"""wattwise next to its peers, in one run, as ratios (issue 17 part 4). `python benchmarks/peers.py [PART ...]`
with parts `milp`, `scaling`, `codecarbon` (all by default); `benchmarks/run.py peers` runs it.

- milp: the exact suspend-resume optimum by the dynamic program (wattwise, compiled) and by a MILP as GAIA and
  Carbs formulate it (PuLP + HiGHS, a binary per (slot, work slot) and per start, startup paid per start):
  jobs of 1, 4 and 16 h (alternating 200 W / 100 W, 30 min each, 10 min startup at 100 W) with waiting times
  of 6, 24 and 96 h, at 60 s and 5 min slots, on the Germany trace. Objectives must agree (1e-6 relative).
  The MILP gets at most MILP_LIMIT_S (60 s) of solver time; a model with more than MILP_MAX_BINARIES binaries
  is not built (building it alone exceeds the cap at the build rate measured here): both count as "> 60 s".
- scaling: sweep cells per second on 1 and 2 local workers and on a 2-worker Dask cluster (a `dask scheduler`
  and two `dask worker` processes started here on loopback); the CPU cost of one suspend-resume cell (31
  arrivals, 4 h job) against its window.
- codecarbon: `peers_codecarbon.codecarbon_comparison()` (the measure engineer's part), if that file exists and
  codecarbon is installed (the `bench` extra); skipped with a message otherwise.

Prints the machine and its load before and after, as figures depend on both.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from wattwise.carbon.trace import read_trace  # noqa: E402
from wattwise.jobmodel import JobModel, Phase  # noqa: E402
from wattwise.schedule import solvers  # noqa: E402
from wattwise.schedule.milp import suspend_resume_milp  # noqa: E402
from wattwise.schedule.profile import slot_profile  # noqa: E402
from wattwise.schedule.solvers import Infeasible  # noqa: E402

CARBON = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
MILP_LIMIT_S = 60.0
MILP_MAX_BINARIES = 30_000
MODEL = JobModel((Phase("startup", 600, 100),), (Phase("high", 1800, 200), Phase("low", 1800, 100)))


def machine() -> str:
    load = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")


def milp_vs_dp() -> bool:
    trace = read_trace(CARBON)
    ok = True
    print(f"{'slot':>5} {'job':>4} {'wait':>5} {'T':>6} {'L':>5} {'DP s':>8} {'MILP s':>9} {'ratio':>8}  objectives")
    rates: list[float] = []
    for resolution in (60.0, 300.0):
        for length_h in (1, 4, 16):
            p = slot_profile(MODEL.tiled(length_h * 3600.0), resolution)
            for wait_h in (6, 24, 96):
                T = p.n_slots + round(wait_h * 3600 / resolution)
                c = trace.slots(trace.start_s + 86400, resolution, T)
                solvers.suspend_resume(c[:p.n_slots + 1], p.startup_j, p.work_j)  # compile once
                started = time.process_time()
                plan = solvers.suspend_resume(c, p.startup_j, p.work_j)
                dp_s = time.process_time() - started
                binaries = T * p.n_work + T
                if binaries > MILP_MAX_BINARIES:
                    build = f" (≈ {binaries / max(rates):.0f} s to build)" if rates else ""
                    print(f"{resolution:>4.0f}s {length_h:>3}h {wait_h:>4}h {T:>6} {p.n_work:>5} {dp_s:>8.3f} "
                          f"{'> 60':>9} {'> ' + format(MILP_LIMIT_S / dp_s, '.0f'):>8}  MILP not built: "
                          f"{binaries:,} binaries{build}")
                    continue
                started = time.perf_counter()
                cpu_started = time.process_time()
                try:
                    milp = suspend_resume_milp(c, p.startup_j, p.work_j, time_limit_s=MILP_LIMIT_S)
                except Infeasible as exc:
                    milp_s = time.perf_counter() - started
                    print(f"{resolution:>4.0f}s {length_h:>3}h {wait_h:>4}h {T:>6} {p.n_work:>5} {dp_s:>8.3f} "
                          f"{'> 60':>9} {'> ' + format(MILP_LIMIT_S / dp_s, '.0f'):>8}  MILP stopped: {exc} "
                          f"after {milp_s:.0f} s")
                    continue
                milp_s = time.process_time() - cpu_started
                rates.append(binaries / max(1e-9, time.perf_counter() - started))
                agree = abs(milp.cost_g - plan.cost_g) <= 1e-6 * max(1.0, abs(plan.cost_g))
                ok &= agree
                print(f"{resolution:>4.0f}s {length_h:>3}h {wait_h:>4}h {T:>6} {p.n_work:>5} {dp_s:>8.3f} "
                      f"{milp_s:>9.2f} {milp_s / dp_s:>7.0f}×  {plan.cost_g:.3f} g vs {milp.cost_g:.3f} g "
                      f"{'agree' if agree else 'DIFFER'}")
    print("(CPU seconds of this process; the MILP's includes building the model in PuLP)")
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scaling() -> None:
    from distributed import Client

    from wattwise.schedule.runner import run
    from wattwise.schedule.sweep import load_grid

    grid = load_grid(ROOT / "examples" / "sweep-daily-arrivals.yml")
    # half of the daily grid (one pattern): 800 configurations × 31 arrivals, enough to amortise starting a
    # local cluster (≈ seconds: processes, imports, the compiled program loaded from numba's cache)
    grid.axes.update({"phases": ["alt-60min"]})
    n = len(grid.configs())
    results = {}
    for workers in (1, 2):
        started = time.perf_counter()
        run(grid, workers=workers)
        results[f"{workers} local worker(s)"] = n / (time.perf_counter() - started)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", ":0", "--no-show"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        for i in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                           "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", ":0",
                                           "--local-directory", f"{tmp}/w{i}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            with Client(address, timeout="60s") as client:
                client.wait_for_workers(2, timeout=120)
            started = time.perf_counter()
            run(grid, scheduler=address)
            results["Dask cluster, 2 workers"] = n / (time.perf_counter() - started)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    base = results["1 local worker(s)"]
    for name, rate in results.items():
        print(f"sweep of {n} cells, {name}: {rate:.2f} cells/s ({rate / base:.2f}× one local worker; incl. "
              "starting the local cluster, not the remote one)")
    trace = read_trace(CARBON)
    p = slot_profile(MODEL.tiled(4 * 3600.0), 60.0)
    print("one suspend-resume cell (31 arrivals, 4 h job, 60 s slots), CPU by waiting time:")
    for wait_h in (6, 12, 24, 48, 96):
        T = p.n_slots + wait_h * 60
        C = np.stack([trace.slots(trace.start_s + d * 86400, 60.0, T) for d in range(31)])
        solvers.suspend_resume_many(C[:1, :p.n_slots + 1], p.startup_j, p.work_j)
        started = time.process_time()
        solvers.suspend_resume_many(C, p.startup_j, p.work_j)
        print(f"  wait {wait_h:>3} h ({T:>5} slots): {time.process_time() - started:.3f} s")


def codecarbon() -> None:
    path = HERE / "peers_codecarbon.py"
    if not path.exists():
        print("codecarbon: skipped (benchmarks/peers_codecarbon.py is not there)")
        return
    if importlib.util.find_spec("codecarbon") is None:
        print("codecarbon: skipped (codecarbon is not installed: bash scripts/setup.sh, then "
              "uv sync --extra bench)")
        return
    import peers_codecarbon

    peers_codecarbon.codecarbon_comparison()


PARTS = {"milp": milp_vs_dp, "scaling": scaling, "codecarbon": codecarbon}


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    unknown = [a for a in argv if a not in PARTS]
    if unknown:
        print(f"unknown part(s): {', '.join(unknown)}; available: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    ok = True
    for name in argv or list(PARTS):
        print(f"--- {name} ---", flush=True)
        result = PARTS[name]()
        ok &= result is not False
    print(f"after: {machine()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
