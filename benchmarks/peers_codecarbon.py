"""wattwise next to CodeCarbon on the same CPU-bound workload: the CPU each measurer uses, and what each reports.

Four runs one after the other, in this one benchmark run:
- `wattwise measure --interval 100ms` and `--interval 1s` (no baseline) around `python -c <burn one core W s>`;
- the in-process tracker (`wattwise.track(interval="1s")`) in the process doing the work, measured exactly as
  CodeCarbon's in-process tracker is (the CPU of every thread but the working one);
- CodeCarbon's `OfflineEmissionsTracker` (machine tracking mode) at `measure_power_secs` 1 s and 15 s, started in
  a Python process that then burns one core for the same W s.

Overhead is measured in the steady state, from 2 s after the workload starts to 2 s before it ends (start-up,
imports and the final summary are left out, on both sides): the CPU time of the whole `wattwise measure`
process (every thread, its children excluded), and for CodeCarbon the CPU time of every thread of the workload's
process except the main thread (the one burning). Both from the kernel's exact per-thread run time (ns): schedstat
of each wattwise thread; `time.process_time() - time.thread_time()` inside CodeCarbon's process.

Called by `benchmarks/peers.py` (`codecarbon_comparison()`), or alone: `.venv/bin/python
benchmarks/peers_codecarbon.py [SECONDS]`. Needs the `bench` extra (codecarbon).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COUNTRY = ("DE", "DEU")  # the same grid for both: wattwise --country DE, CodeCarbon country_iso_code DEU

BURN = "import sys, time\nend = time.time() + float(sys.argv[1])\nx = 0\nwhile time.time() < end:\n    x += 1\n"

#: the workload of both in-process children: one core busy for `seconds`, with the CPU of every other thread of
#: the process (the tracker's) read 2 s after the start and 2 s before the end (exact ns clocks)
WORK_LOOP = """
def cpu_of_other_threads():
    return time.process_time() - time.thread_time()

start = time.monotonic()
end = start + seconds
window = [start + 2.0, end - 2.0]
marks = []
x = 0
while True:
    now = time.monotonic()
    if now >= end:
        break
    if window and now >= window[0]:
        marks.append((now, cpu_of_other_threads()))
        window.pop(0)
    x += 1
"""

CODECARBON_CHILD = textwrap.dedent(
    """
    import json, os, sys, threading, time, logging
    from codecarbon import OfflineEmissionsTracker


    seconds, interval, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    tracker = OfflineEmissionsTracker(country_iso_code="%s", measure_power_secs=interval, save_to_file=False,
                                      log_level="error", tracking_mode="machine")
    tracker.start()
    WORK_LOOP
    tracker.stop()
    data = tracker.final_emissions_data
    (t0, c0), (t1, c1) = marks
    result = {
        "overhead_share": (c1 - c0) / (t1 - t0), "window_s": t1 - t0,
        "energy_j": data.energy_consumed * 3.6e6, "cpu_energy_j": data.cpu_energy * 3.6e6,
        "ram_energy_j": data.ram_energy * 3.6e6, "carbon_g": data.emissions * 1000, "duration_s": data.duration,
        "cpu_power_w": data.cpu_power, "ram_power_w": data.ram_power, "cpu_model": data.cpu_model,
        "cpu_count": data.cpu_count, "ram_total_gb": data.ram_total_size, "tracking_mode": data.tracking_mode,
        "cpu_utilization_percent": data.cpu_utilization_percent,
        "intensity_g_per_kwh": data.emissions * 1000 / data.energy_consumed if data.energy_consumed else None,
    }
    open(out, "w").write(json.dumps(result))
    """
).replace("WORK_LOOP", WORK_LOOP.strip()) % (COUNTRY[1],)


TRACKER_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import wattwise


    seconds, interval, out, db = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    tracker = wattwise.track("peers", db=db, interval=interval, country="%s").start()
    WORK_LOOP
    result = tracker.stop()
    (t0, c0), (t1, c1) = marks
    open(out, "w").write(json.dumps({
        "overhead_share": (c1 - c0) / (t1 - t0), "window_s": t1 - t0, "energy_j": result.machine_energy_j,
        "process_energy_j": result.energy_j, "carbon_g": result.total.carbon_g, "estimated": result.estimated,
    }))
    """
).replace("WORK_LOOP", WORK_LOOP.strip()) % (COUNTRY[0],)


def tracker_run(seconds: float, interval: str, directory: Path) -> dict[str, Any]:
    """`wattwise.track()` inside the process doing the work: the CPU of every thread but the working one, as for
    CodeCarbon's in-process tracker (the same method, the same window)."""
    out = directory / f"tracker-{interval}.json"
    script = directory / "tracker_child.py"
    script.write_text(TRACKER_CHILD)
    subprocess.run([sys.executable, str(script), str(seconds), interval, str(out), str(directory / "tracker.db")],
                   check=True, timeout=seconds + 300, cwd=directory, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _process_cpu_s(pid: int) -> float:
    """CPU time of every thread of `pid` (its children excluded), from each thread's exact run time (schedstat, ns).
    wattwise's threads (sampler, writer, output readers) live as long as the run."""
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total_ns / 1e9


def _children(pid: int) -> list[int]:
    sys.path.insert(0, str(ROOT / "src"))
    from wattwise.measure.process import descendants

    return descendants(pid)


def wattwise_run(seconds: float, interval: str, directory: Path) -> dict[str, Any]:
    """`wattwise measure --interval INTERVAL -- python -c BURN SECONDS`: steady-state CPU of wattwise, and its
    figures (--json)."""
    env = dict(os.environ, WATTWISE_DATA_DIR=str(directory / "data"))
    db = directory / f"wattwise-{interval}.db"
    argv = [str(ROOT / ".venv" / "bin" / "wattwise"), "measure", "--json", "--db", str(db), "--baseline", "0",
            "--interval", interval, "--country", COUNTRY[0], "--", sys.executable, "-c", BURN, str(seconds)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not _children(process.pid):  # the workload has started: the run is in [RUNTIME]
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"wattwise measure did not start the workload ({process.poll()})")
        time.sleep(0.05)
    started = time.monotonic()
    time.sleep(2.0)
    t0, c0 = time.monotonic(), _process_cpu_s(process.pid)
    time.sleep(max(0.5, seconds - 4.0 - (time.monotonic() - started)))
    t1, c1 = time.monotonic(), _process_cpu_s(process.pid)
    out, _ = process.communicate(timeout=600)
    summary = json.loads(out)
    runtime = next(p for p in summary["phases"] if p["name"] == "[RUNTIME]")
    from wattwise.store import Store

    run = Store(f"sqlite:///{db}").get_run(summary["run_id"])
    return {
        "overhead_share": (c1 - c0) / (t1 - t0), "window_s": t1 - t0,
        "energy_j": runtime["energy_j"], "unit_energy_j": runtime.get("unit_energy_j"),
        "carbon_g": runtime["carbon_g"], "duration_s": runtime["duration_s"],
        "mean_power_w": runtime["mean_power_w"], "cpu_utilization_mean": runtime.get("cpu_utilization_mean"),
        "unit_cpu_time_s": runtime.get("unit_cpu_time_s"), "energy_source": runtime.get("energy_source"),
        "power_curve": (run.settings or {}).get("power_curve"), "estimated": summary.get("estimated"),
        "intensity_g_per_kwh": summary.get("intensity_g_per_kwh"),
    }


def codecarbon_run(seconds: float, interval_s: float, directory: Path) -> dict[str, Any]:
    out = directory / f"codecarbon-{interval_s:g}.json"
    script = directory / "codecarbon_child.py"
    script.write_text(CODECARBON_CHILD)
    subprocess.run([sys.executable, str(script), str(seconds), str(interval_s), str(out)], check=True,
                   timeout=seconds + 300, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _f(value: Any, spec: str = ".1f") -> str:
    """A figure, or '–' where the measurer gave none (e.g. no power source was available)."""
    return "–" if value is None else format(value, spec)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} CPUs"


def codecarbon_comparison(seconds: float = 40.0) -> dict[str, Any]:
    """Run all four, print the figures and ratios, return them."""
    try:
        import codecarbon
    except ImportError:
        print("codecarbon is not installed: `bash -c 'source scripts/uv-bootstrap.sh; .uv/bin/uv sync --locked "
              "--inexact --extra postgres --extra dev --extra bench'`")
        return {}
    print(f"workload: one core busy for {seconds:g} s (python loop); CodeCarbon {codecarbon.__version__}; "
          f"{_load()} before")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wattwise-peers-") as tmp:
        directory = Path(tmp)
        for name, run in (
            ("wattwise_100ms", lambda: wattwise_run(seconds, "100ms", directory)),
            ("wattwise_1s", lambda: wattwise_run(seconds, "1s", directory)),
            ("tracker_1s", lambda: tracker_run(seconds, "1s", directory)),
            ("codecarbon_1s", lambda: codecarbon_run(seconds, 1.0, directory)),
            ("codecarbon_15s", lambda: codecarbon_run(seconds, 15.0, directory)),
        ):
            results[name] = run()
            r = results[name]
            print(f"  {name:15s} overhead {r['overhead_share'] * 100:6.3f} % of one core "
                  f"(over {r['window_s']:.1f} s); energy {_f(r['energy_j'])} J, carbon {_f(r['carbon_g'], '.3f')} g")
    print(f"after: {_load()}")
    cc1 = results["codecarbon_1s"]["overhead_share"]
    cc15 = results["codecarbon_15s"]["overhead_share"]
    for ours in ("wattwise_100ms", "wattwise_1s", "tracker_1s"):
        share = results[ours]["overhead_share"]
        for theirs, value in (("codecarbon_1s", cc1), ("codecarbon_15s", cc15)):
            ratio = share / value if value > 0 else float("inf")
            print(f"RATIO {ours}/{theirs} CPU overhead: {ratio:.3f}")
    w, c = results["wattwise_1s"], results["codecarbon_1s"]
    print("What each reports for the same workload (≈: both are estimates here, no power sensor):")
    print(f"  wattwise   ≈{_f(w['energy_j'], '.0f')} J machine energy ({w['energy_source']}), mean "
          f"≈{_f(w['mean_power_w'])} W at {(w['cpu_utilization_mean'] or 0) * 100:.0f} % machine CPU "
          f"({w['power_curve']}); the command's share ≈{_f(w['unit_energy_j'], '.0f')} J "
          f"({_f(w['unit_cpu_time_s'])} CPU s); carbon ≈{_f(w['carbon_g'], '.3f')} g at "
          f"{_f(w['intensity_g_per_kwh'], 'g')} g/kWh")
    print(f"  CodeCarbon ≈{c['energy_j']:.0f} J = CPU ≈{c['cpu_energy_j']:.0f} J (≈{c['cpu_power_w']:.1f} W, "
          f"{c['cpu_model']}, {c['cpu_count']:g} threads, {c['cpu_utilization_percent']:.0f} % load) + RAM "
          f"≈{c['ram_energy_j']:.0f} J (≈{c['ram_power_w']:.1f} W for {c['ram_total_gb']:.1f} GB); carbon "
          f"≈{c['carbon_g']:.3f} g at {c['intensity_g_per_kwh'] or 0:.0f} g/kWh")
    print("  Difference: wattwise puts the whole machine's CPU utilization through its load→power curve (named "
          "above) and counts no RAM term, and gives the command its CPU share of that; CodeCarbon's machine mode "
          "takes its TDP figure × (0.1 + 0.9·load³) for the CPU plus a constant RAM power from the installed "
          "memory, whatever the workload uses.")
    return results


if __name__ == "__main__":
    codecarbon_comparison(float(sys.argv[1]) if len(sys.argv) > 1 else 40.0)
