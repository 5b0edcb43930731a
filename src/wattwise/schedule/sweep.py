"""Parameter sweeps: the cartesian product of a grid of simulation settings, run in parallel processes.

A grid file (YAML)::

    carbon: ../data/carbon/DE-2024-hourly-electricitymaps.csv   # relative to the grid file
    start: 2024-07-01T00:00:00Z     # job time 0 (default: the start of the carbon trace)
    resolution: 60s
    arrivals_h: {every: 24, count: 31}   # or a list of hours after start; default [0]
    # jobs: some-trace.csv          # instead of synthetic jobs: a job trace (length_h is then not used)
    # jobs_time_unit: s             # unit of its times: s (default), min or h
    phases:                          # named work patterns, chosen by the `phases` dimension
      alt-30min: [{name: high, duration_s: 1800, power_w: 200}, {name: low, duration_s: 1800, power_w: 100}]
    grid:                            # every key a value or a list of values
      policy: [suspend-resume, oracle]
      length_h: [1, 2, 4, 8, 16]
      wait_h: [6, 12, 24, 48, 96]
      phases: [alt-30min]
      startup_min: [0, 5, 10, 30]
      startup_w: [100, 200]
      averaged: [false, true]

Grid keys: ``policy``, ``length_h``, ``wait_h``, ``phases``, ``startup_min``, ``startup_w``, ``averaged``,
``max_resumes``, ``checkpoint_only``, ``capacity``, ``forecast_error``, ``seed``, ``threshold_percentile``.
A synthetic job of a configuration is: startup (``startup_min`` at ``startup_w``, none when 0) then the
``phases`` pattern repeated to ``length_h``; ``averaged`` replaces it by its constant-power average without
startup (the Carbs ``mocked-constant-from-phases``). One job arrives at each ``arrivals_h``; they are
independent (infinite capacity unless ``capacity`` is set). Configurations that describe the same job
(e.g. startup 0 min at any startup power) are simulated once. With ``jobs:``, the trace's constant-power
jobs take the configuration's startup and pattern (repeated to each job's length) when the grid sets
``phases``, ``startup_min`` or ``startup_w``; the ``cpus`` then only matter for ``capacity``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.carbon.trace import CarbonTrace, parse_time_s, read_trace
from wattwise.errors import ConfigError
from wattwise.jobmodel import JobModel, ModelError, Phase, constant_from_phases
from wattwise.schedule import policies
from wattwise.schedule.jobs import TIME_UNITS, Job, make_job, read_jobs
from wattwise.schedule.simulate import POLICIES, Options, simulate, summary
from wattwise.units import parse_duration_s

GRID_KEYS = ("policy", "length_h", "wait_h", "phases", "startup_min", "startup_w", "averaged", "max_resumes",
             "checkpoint_only", "capacity", "queue", "forecast_error", "forecast_model", "seed",
             "threshold_percentile")
TOP_KEYS = ("carbon", "signals", "start", "months", "conventions", "resolution", "arrivals_h", "jobs", "jobs_time_unit",
            "phases", "grid", "description")
DEFAULT_PHASES = {"constant-100W": [{"name": "work", "duration_s": 3600, "power_w": 100}]}
_DEFAULTS: dict[str, Any] = {"policy": "suspend-resume", "length_h": 1, "wait_h": 24, "phases": None,
                             "startup_min": 0, "startup_w": 0, "averaged": False, "max_resumes": None,
                             "checkpoint_only": False, "capacity": None, "queue": "backfill", "forecast_error": 0.0,
                             "forecast_model": "multiplicative", "seed": 0,
                             "threshold_percentile": 30.0}
#: how synthetic jobs are built. wattwise: the startup comes on top of ``length_h`` (every (re)start repeats
#: it), an averaged job is constant power without a startup (Carbs' mocked-constant-from-phases). thesis: as
#: the Carbs thesis evaluation, the startup counts inside ``length_h`` and an averaged job keeps its startup,
#: at the average power of the whole job.
CONVENTIONS = ("wattwise", "thesis")
#: policies whose schedule is the exact optimum of their model (with a perfect forecast)
EXACT_POLICIES = tuple(name for name in POLICIES if policies.is_exact(name))


@dataclass
class Grid:
    source: Path
    #: carbon traces by zone name (one file: its zone, or the file name)
    carbons: dict[str, Path]
    start_s: float | None
    resolution_s: float
    arrivals_h: list[float]
    jobs_path: Path | None
    phases: dict[str, JobModel]
    axes: dict[str, list[Any]]
    varying: list[str] = field(default_factory=list)
    #: the grid sets phases or a startup: with a job trace, they replace its constant-power jobs
    pattern_given: bool = False
    jobs_time_unit: str = "s"
    #: months (``YYYY-MM``) to run each configuration in; job time 0 = the month's first day, 00:00 UTC
    months: list[str] = field(default_factory=list)
    #: how a synthetic job is built from length, startup and averaging (CONVENTIONS)
    conventions: str = "wattwise"
    #: intensity columns to run every configuration on (decided on and billed on that signal); [None] = the
    #: trace's default column
    signals: list[str | None] = field(default_factory=lambda: [None])

    @property
    def carbon(self) -> Path:
        """The first carbon trace (grids with one zone)."""
        return next(iter(self.carbons.values()))

    def configs(self) -> list[dict[str, Any]]:
        """Every configuration: ``zone`` and ``month`` (``None`` without ``months``), then the grid keys."""
        names = ["zone", "signal", "month", *self.axes]
        months: list[str | None] = list(self.months) or [None]
        product = itertools.product(list(self.carbons), self.signals, months, *self.axes.values())
        return [dict(zip(names, values, strict=True)) for values in product]

    def origin_s(self, config: dict[str, Any]) -> float | None:
        """Job time 0 of a configuration: its month's first day, else the grid's ``start``."""
        month = config.get("month")
        return month_start_s(month) if month else self.start_s


def load_grid(path: str | Path) -> Grid:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{place}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file must be a mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}")
    base = path.parent
    if "carbon" not in data:
        raise ConfigError(f"{path}: missing key 'carbon' (a carbon-intensity CSV, relative to the grid file)")
    carbons = _carbons(path, data["carbon"])
    months = _months(path, data.get("months"))
    if months and data.get("start") is not None:
        raise ConfigError(f"{path}: give either 'start' or 'months', not both")
    start_s = None
    if data.get("start") is not None:
        try:
            start_s = parse_time_s(str(data["start"]).replace(" ", "T"))
        except ValueError as exc:
            raise ConfigError(f"{path}: start: {exc}") from None
    resolution_s = parse_duration_s(data.get("resolution", 60))
    if not resolution_s > 0:
        raise ConfigError(f"{path}: resolution must be > 0")
    arrivals = _arrivals(path, data.get("arrivals_h", [0]))
    jobs_path = _relative(base, data["jobs"]) if data.get("jobs") else None
    phases_data = data.get("phases") or DEFAULT_PHASES
    if not isinstance(phases_data, dict):
        raise ConfigError(f"{path}: phases must map pattern names to lists of work phases")
    phases: dict[str, JobModel] = {}
    for name, work in phases_data.items():
        try:
            model = JobModel.from_dict({"work": work} if isinstance(work, list) else work,
                                       source=f"{path}: phases.{name}")
        except ModelError as exc:
            raise ConfigError(str(exc)) from None
        if model.work_s <= 0:
            raise ConfigError(f"{path}: phases.{name}: the work phases last 0 s")
        phases[str(name)] = model
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: grid must be a mapping of parameter → value or list of values")
    axes: dict[str, list[Any]] = {}
    for key in grid:
        if key not in GRID_KEYS:
            raise ConfigError(f"{path}: grid: unknown parameter {key!r}; allowed: {', '.join(GRID_KEYS)}")
    for key in GRID_KEYS:
        value = grid.get(key, _DEFAULTS[key] if key != "phases" else [next(iter(phases))])
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"{path}: grid.{key} is an empty list")
        axes[key] = [_check_value(path, key, v, phases) for v in values]
    varying = [k for k, v in axes.items() if len(v) > 1]
    pattern_given = any(k in grid for k in ("phases", "startup_min", "startup_w"))
    time_unit = str(data.get("jobs_time_unit", "s"))
    if time_unit not in TIME_UNITS:
        raise ConfigError(f"{path}: jobs_time_unit: {time_unit!r} is not one of {', '.join(TIME_UNITS)}")
    conventions = str(data.get("conventions", "wattwise"))
    if conventions not in CONVENTIONS:
        raise ConfigError(f"{path}: conventions: {conventions!r} is not one of {', '.join(CONVENTIONS)}")
    signals = data.get("signals")
    if signals is not None and (not isinstance(signals, list) or not signals
                                or not all(isinstance(v, str) for v in signals)):
        raise ConfigError(f"{path}: signals: give a list of intensity column names, e.g. [carbon_intensity_avg, moer]")
    return Grid(path, carbons, start_s, resolution_s, arrivals, jobs_path, phases, axes, varying, pattern_given,
                time_unit, months, conventions, list(signals) if signals else [None])


def _carbons(path: Path, value: Any) -> dict[str, Path]:
    """``carbon: FILE`` or ``carbon: {ZONE: FILE, ...}`` (paths relative to the grid file)."""
    if isinstance(value, dict):
        if not value:
            raise ConfigError(f"{path}: carbon: the mapping of zones to trace files is empty")
        return {str(zone): _relative(path.parent, file) for zone, file in value.items()}
    if not isinstance(value, str):
        raise ConfigError(f"{path}: carbon: {value!r} is neither a file nor a mapping of zone → file")
    file = _relative(path.parent, value)
    return {file.stem.split("-")[0] if "-" in file.stem else file.stem: file}


def _months(path: Path, value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        text = str(v)
        try:
            month_start_s(text)
        except ValueError:
            raise ConfigError(f"{path}: months: {v!r} is not a month YYYY-MM") from None
        out.append(text)
    if len(set(out)) != len(out):
        raise ConfigError(f"{path}: months: a month is listed twice")
    return out


def month_start_s(month: str) -> float:
    """Unix time of the first day of ``YYYY-MM``, 00:00 UTC."""
    from datetime import UTC, datetime

    try:
        year, mon = month.split("-")
        return datetime(int(year), int(mon), 1, tzinfo=UTC).timestamp()
    except (ValueError, TypeError):
        raise ValueError(f"{month!r} is not a month YYYY-MM") from None


def _relative(base: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _arrivals(path: Path, value: Any) -> list[float]:
    if isinstance(value, dict):
        if set(value) - {"every", "count", "first"}:
            raise ConfigError(f"{path}: arrivals_h: use {{every: hours, count: n[, first: hours]}} or a list")
        try:
            every, count = float(value["every"]), int(value["count"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: arrivals_h needs numbers 'every' (h) and 'count'") from None
        first = float(value.get("first", 0))
        return [first + i * every for i in range(count)]
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ConfigError(f"{path}: arrivals_h: {v!r} is not a number of hours ≥ 0")
        out.append(float(v))
    if not out:
        raise ConfigError(f"{path}: arrivals_h is empty")
    return out


def _check_value(path: Path, key: str, value: Any, phases: dict[str, JobModel]) -> Any:
    where = f"{path}: grid.{key}"
    if key == "policy":
        if value not in POLICIES:
            raise ConfigError(f"{where}: unknown policy {value!r}; allowed: {', '.join(POLICIES)}")
        return value
    if key == "queue":
        if value not in ("backfill", "fifo"):
            raise ConfigError(f"{where}: {value!r} is not one of backfill, fifo")
        return value
    if key == "forecast_model":
        if value not in ("multiplicative", "additive", "ar1"):
            raise ConfigError(f"{where}: {value!r} is not one of multiplicative, additive, ar1")
        return value
    if key == "phases":
        if str(value) not in phases:
            raise ConfigError(f"{where}: unknown pattern {value!r}; defined: {', '.join(phases)}")
        return str(value)
    if key in ("averaged", "checkpoint_only"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not true or false")
        return value
    if key in ("max_resumes", "capacity") and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: {value!r} is not a number ≥ 0")
    if key in ("max_resumes", "capacity", "seed"):
        if value != int(value):
            raise ConfigError(f"{where}: {value!r} is not a whole number")
        return int(value)
    if key == "length_h" and value <= 0:
        raise ConfigError(f"{where}: job length must be > 0 h")
    return float(value)


# -- running ---------------------------------------------------------------------------------------------------
def base_model(grid: Grid, config: dict[str, Any]) -> JobModel:
    """Startup (if any) then the configuration's work pattern."""
    pattern = grid.phases[config["phases"]]
    startup_s = config["startup_min"] * 60.0
    startup = (Phase("startup", startup_s, config["startup_w"]),) if startup_s > 0 else ()
    return JobModel(startup + pattern.startup, pattern.work)


def config_jobs(grid: Grid, config: dict[str, Any], trace_jobs: list[Job] | None) -> list[Job]:
    model = base_model(grid, config)
    if trace_jobs is not None:
        out = []
        for job in trace_jobs:
            if job.kind == "constant" and grid.pattern_given:
                job = make_job(job.id, job.arrival_s, job.length_s, job.cpus, base=model, kind="model",
                               wait_s=job.wait_s)
            if config["averaged"] and (job.model.startup or len(job.model.work) > 1):
                job = Job(job.id, job.arrival_s, job.length_s, job.cpus, constant_from_phases(job.model),
                          "mocked-constant-from-phases", job.wait_s)
            out.append(job)
        return out
    length_s = config["length_h"] * 3600.0
    if grid.conventions == "thesis":
        return [_thesis_job(i, a * 3600.0, length_s, model, config["averaged"])
                for i, a in enumerate(grid.arrivals_h)]
    return [make_job(i, a * 3600.0, length_s, 1, base=model, kind="phases", averaged=config["averaged"])
            for i, a in enumerate(grid.arrivals_h)]


def _thesis_job(job_id: int, arrival_s: float, length_s: float, model: JobModel, averaged: bool) -> Job:
    """The thesis's conventions: the startup counts inside the job's length (work = length - startup), and
    the averaged job keeps its startup, at the average power of the whole job (startup and work)."""
    work_s = length_s - model.startup_s
    if work_s <= 0:
        raise ConfigError(f"a {length_s / 3600:g} h job cannot hold a {model.startup_s / 60:g} min startup "
                          "(the thesis conventions count the startup inside the length)")
    job = make_job(job_id, arrival_s, work_s, 1, base=model, kind="phases")
    if averaged:
        full = job.model
        power = full.energy_j / full.duration_s
        startup = tuple(Phase(p.name, p.duration_s, power) for p in full.startup)
        job = Job(job_id, arrival_s, work_s, 1, JobModel(startup, (Phase("work", work_s, power),)),
                  "constant-from-periodic-phases")
    return job


def _options(grid: Grid, config: dict[str, Any]) -> Options:
    return Options(policy=config["policy"], wait_s=config["wait_h"] * 3600.0, resolution_s=grid.resolution_s,
                   max_resumes=config["max_resumes"], checkpoint_only=config["checkpoint_only"],
                   capacity=config["capacity"], forecast_error=config["forecast_error"], seed=config["seed"],
                   forecast_model=config["forecast_model"], queue=config["queue"],
                   threshold_percentile=config["threshold_percentile"], origin_s=grid.origin_s(config))


def _key(grid: Grid, config: dict[str, Any], jobs: list[Job]) -> str:
    options = _options(grid, config)
    models = sorted({json.dumps(j.model.to_dict(), sort_keys=True) for j in jobs})
    if options.policy not in ("threshold",):
        options_key = {**options.__dict__, "threshold_percentile": None}
    else:
        options_key = options.__dict__
    if options.forecast_error == 0 and options.forecast_model != "ar1":
        options_key = {**options_key, "seed": None, "forecast_model": None}
    return json.dumps({"zone": config.get("zone"), "signal": config.get("signal"), "options": options_key,
                       "models": models, "jobs": [(j.arrival_s, j.length_s, j.cpus, j.wait_s) for j in jobs]},
                      sort_keys=True)


@dataclass(frozen=True, eq=False)
class SweepContext:
    """What every cell needs besides its configuration: the grid, the carbon traces by zone and the job
    trace. Sent to each worker once (scattered), not with every cell."""

    grid: Grid
    traces: dict[tuple[str, str | None], CarbonTrace]
    trace_jobs: list[Job] | None

    @classmethod
    def load(cls, grid: Grid) -> SweepContext:
        traces = {(zone, signal): read_trace(path, signal) for zone, path in grid.carbons.items()
                  for signal in grid.signals}
        jobs = read_jobs(grid.jobs_path, time_unit=grid.jobs_time_unit) if grid.jobs_path is not None else None
        return cls(grid, traces, jobs)

    def key(self, config: dict[str, Any]) -> str:
        """A short stable name of the simulation a configuration describes (equal for duplicates)."""
        text = _key(self.grid, config, config_jobs(self.grid, config, self.trace_jobs))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_cell(context: SweepContext, config: dict[str, Any]) -> dict[str, Any]:
    """The figures of one configuration."""
    trace = context.traces[config["zone"], config.get("signal")]
    return run_config(trace, context.grid, config, context.trace_jobs)


def run_cells(context: SweepContext, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one task function of every sweep, local or on a Dask cluster: the figures of configurations that
    differ only in their waiting time, the longest first, so that each later (shorter) one reads its
    suspend-resume plans from the first one's program (solvers.sharing_deadlines; same plans)."""
    from wattwise.schedule.solvers import sharing_deadlines

    order = sorted(range(len(configs)), key=lambda i: -configs[i]["wait_h"])
    rows: list[dict[str, Any]] = [{} for _ in configs]
    with sharing_deadlines():
        for i in order:
            rows[i] = run_cell(context, configs[i])
    return rows


def wait_group(config: dict[str, Any]) -> str:
    """Configurations with the same group differ at most in their waiting time."""
    return json.dumps({k: v for k, v in config.items() if k != "wait_h"}, sort_keys=True, default=str)


def mean_ci95(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of the mean (``nan`` bounds for fewer than two values)."""
    if not values:
        return math.nan, math.nan, math.nan
    import numpy as np
    from scipy.stats import t

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    return mean, mean - half, mean + half


def run_config(trace: CarbonTrace, grid: Grid, config: dict[str, Any], trace_jobs: list[Job] | None) -> dict[str, Any]:
    """Simulate one configuration; the figures of its results row."""
    jobs = config_jobs(grid, config, trace_jobs)
    started = time.perf_counter()
    cpu_started = time.process_time()
    sim = simulate(jobs, trace, _options(grid, config))
    cpu = time.process_time() - cpu_started
    elapsed = time.perf_counter() - started
    s = summary(sim)
    totals = s["totals"]
    per_job = [100.0 * (r.agnostic_carbon_g - r.carbon_g) / r.agnostic_carbon_g for r in sim.results
               if r.agnostic_carbon_g > 0]
    mean, low, high = mean_ci95(per_job)
    return {
        "jobs": totals["jobs"],
        "carbon_g": totals["carbon_g"],
        "agnostic_carbon_g": s["agnostic"]["carbon_g"],
        "saving_pct": s["savings"]["carbon_pct"],
        "energy_j": totals["energy_j"],
        "agnostic_energy_j": s["agnostic"]["energy_j"],
        "saving_mean_pct": mean,
        "saving_ci95_low_pct": low,
        "saving_ci95_high_pct": high,
        "savings_pct": per_job,
        "capacity_gap_pct": s["capacity"]["gap_to_unlimited_pct"] if "capacity" in s else None,
        "restarts": totals["restarts"],
        "restart_energy_j": totals["restart_energy_j"],
        "restart_carbon_g": totals["restart_carbon_g"],
        "interruptions_per_job": totals["interruptions"] / max(1, totals["jobs"]),
        "deadlines_missed": totals["deadlines_missed"],
        "optimal": config["policy"] in EXACT_POLICIES and config["forecast_error"] == 0
        and config["forecast_model"] != "ar1" and config["capacity"] is None,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
    }


def run_sweep(grid: Grid, *, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """All rows of the sweep, in grid order, on local worker processes (see
    :func:`wattwise.schedule.runner.run` for a Dask cluster, result files and resuming)."""
    from wattwise.schedule.runner import run

    return run(grid, workers=workers, progress=progress)


RESULT_COLUMNS = ("zone", "signal", "month", *GRID_KEYS, "arrivals", "jobs", "carbon_g", "agnostic_carbon_g",
                  "saving_pct", "saving_mean_pct", "saving_ci95_low_pct", "saving_ci95_high_pct", "energy_j",
                  "agnostic_energy_j", "restarts", "restart_energy_j", "restart_carbon_g",
                  "interruptions_per_job", "deadlines_missed", "capacity_gap_pct", "optimal", "elapsed_s", "cpu_s")


def write_results(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
                             for k, v in row.items()})


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """The results table as Parquet (the columns of ``RESULT_COLUMNS``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [row.get(name) for row in rows] for name in (*RESULT_COLUMNS, "savings_pct")}
    pq.write_table(pa.table(columns), path)


def plot_sweep(grid: Grid, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """See :func:`wattwise.schedule.sweepplot.plot_sweep`."""
    from wattwise.schedule.sweepplot import plot_sweep as plot

    return plot(grid, rows, out)
