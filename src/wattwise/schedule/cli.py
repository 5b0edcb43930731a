"""Commands of wattwise.schedule: `wattwise simulate` and `wattwise sweep`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

POLICY_HELP = (
    "agnostic (start at arrival), threshold (work while below a percentile of the next 24 h), carbon-time "
    "(best saving per unit of delay), oracle (best uninterrupted run), wait-awhile (cheapest slots, believes "
    "suspend & resume are free), suspend-resume (optimal, every resume repeats the startup)"
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("simulate")(simulate_command)
    app.command("sweep")(sweep_command)


def simulate_command(
    jobs: Annotated[Path, typer.Option("--jobs", help="Job trace: GAIA CSV 'arrival_time,length,cpus' or "
                                       "Carbs 'arrival_time|length|cpus|name|args'.", show_default=False)],
    carbon: Annotated[Path, typer.Option("--carbon", help="Carbon trace: Electricity Maps CSV export or "
                                         "'timestamp,g_per_kwh' CSV.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created).", show_default=False)],
    policy: Annotated[str, typer.Option("--policy", help=POLICY_HELP)] = "suspend-resume",
    compare_with: Annotated[list[str] | None, typer.Option("--compare-with", help="Also report the saving "
                                                           "against this policy (repeatable), besides the "
                                                           "carbon-agnostic start.", show_default=False)] = None,
    signal: Annotated[str | None, typer.Option("--signal", help="Intensity column of the carbon trace to decide "
                                               "and bill on, e.g. moer (marginal); default: the format's "
                                               "average column.", show_default=False)] = None,
    wait_hours: Annotated[float, typer.Option("--wait-hours", help="Waiting time per job, unless the trace "
                                              "has a waiting_time column: deadline = arrival + startup + "
                                              "length + wait.")] = 24.0,
    model: Annotated[Path | None, typer.Option("--model", help="Job model (JSON/YAML) for rows without their "
                                               "own model: its startup, then its work phases repeated to "
                                               "the job's length.")] = None,
    resolution: Annotated[str, typer.Option("--resolution", help="Time slot, e.g. 60s, 5min.")] = "60s",
    start: Annotated[str | None, typer.Option("--start", help="Time of job time 0 (ISO 8601 or Unix s); "
                                              "default: the start of the carbon trace.")] = None,
    max_resumes: Annotated[int | None, typer.Option("--max-resumes", help="suspend-resume: at most this many "
                                                    "resumes per job.")] = None,
    checkpoint_only: Annotated[bool, typer.Option("--checkpoint-only", help="suspend-resume, wait-awhile: "
                                                  "suspend only right after a checkpoint phase.")] = False,
    capacity: Annotated[int | None, typer.Option("--capacity", help="Finite cluster of this many CPUs "
                                                 "(default: infinite).")] = None,
    queue: Annotated[str, typer.Option("--queue", help="With --capacity: backfill (a job may use capacity left "
                                       "free before earlier jobs' starts) or fifo (jobs start in arrival "
                                       "order).")] = "backfill",
    forecast_error: Annotated[float, typer.Option("--forecast-error", help="Relative error (std. dev.) of "
                                                  "the forecast the policies decide on; 0 = perfect.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the forecast error.")] = 0,
    forecast_model: Annotated[str, typer.Option("--forecast-model", help="multiplicative (each trace sample × "
                                                "(1 + e·N)), additive (LWA: + e·mean·N per slot), ar1 (error "
                                                "growing with lead time), issued (--forecast-file).")]
    = "multiplicative",
    forecast_file: Annotated[Path | None, typer.Option("--forecast-file", help="Issued forecasts: CSV "
                                                       "issue_time,target_time,g_per_kwh; the latest issue "
                                                       "before each decision is used.")] = None,
    forecast_phi: Annotated[float, typer.Option("--forecast-phi", help="ar1: correlation of the error "
                                                "between neighbouring lead times.")] = 0.9,
    threshold_percentile: Annotated[float, typer.Option("--threshold-percentile",
                                                        help="threshold: percentile of the next 24 h.")] = 30.0,
    cpu_power: Annotated[float, typer.Option("--cpu-power", help="Watts per CPU of jobs without a model.")] = 10.0,
    averaged: Annotated[bool, typer.Option("--averaged", help="Replace every job by its constant-power "
                                           "average without startup (mocked-constant-from-phases).")] = False,
    time_unit: Annotated[str, typer.Option("--time-unit", help="Unit of the job trace's times: s, min or h "
                                           "(GAIA's PAI traces are in s, its Azure trace in h).")] = "s",
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N jobs of the trace.")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    """Simulate a carbon-aware scheduling policy over a job trace and a carbon trace.

    Writes DIR/jobs.csv (one row per job), DIR/summary.json (totals, savings against agnostic) and plots:
    DIR/schedule.png (the schedule over the carbon curve) and DIR/savings_by_length.png.

    Examples:

      wattwise simulate --jobs data/jobs/alibaba-pai-1k.csv --carbon data/carbon/DE-2024-hourly-electricitymaps.csv
      --policy suspend-resume --wait-hours 24 --out out/pai

      wattwise simulate --jobs jobs.csv --carbon trace.csv --policy agnostic --out out/baseline
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wattwise.carbon.trace import parse_time_s, read_trace
    from wattwise.clitools import console, err_console
    from wattwise.errors import ConfigError
    from wattwise.jobmodel import load_model
    from wattwise.schedule import output
    from wattwise.schedule.jobs import read_jobs
    from wattwise.schedule.simulate import Options, simulate
    from wattwise.units import parse_duration_s

    resolution_s = parse_duration_s(resolution)
    origin_s = None
    if start is not None:
        try:
            origin_s = parse_time_s(start)
        except ValueError as exc:
            raise ConfigError(f"--start: {exc}") from None
    if wait_hours < 0:
        raise ConfigError(f"--wait-hours must be ≥ 0, got {wait_hours}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be ≥ 1, got {limit}")
    options = Options(policy=policy, wait_s=wait_hours * 3600.0, resolution_s=resolution_s,
                      max_resumes=max_resumes, checkpoint_only=checkpoint_only, capacity=capacity, queue=queue,
                      compare_with=tuple(compare_with or ()),
                      forecast_error=forecast_error, seed=seed, threshold_percentile=threshold_percentile,
                      origin_s=origin_s, forecast_model=forecast_model, forecast_phi=forecast_phi,
                      forecast_file=str(forecast_file) if forecast_file else None)
    trace = read_trace(carbon, signal)
    default_model = load_model(model) if model is not None else None
    job_list = read_jobs(jobs, default_model=default_model, cpu_power_w=cpu_power, averaged=averaged,
                         time_unit=time_unit)
    if limit is not None:
        job_list = job_list[:limit]
    with Progress(TextColumn(f"[bold]{policy}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("jobs", total=len(job_list))
        sim = simulate(job_list, trace, options, progress=lambda n: bar.update(task, completed=n))
    out.mkdir(parents=True, exist_ok=True)
    output.write_jobs_csv(sim.results, out / "jobs.csv")
    extra: dict[str, Any] = {"jobs_file": str(jobs), "carbon_file": str(carbon),
                             "model_file": str(model) if model else None}
    gaps = [g for g in trace.gaps() if g[0] < sim.origin_s + max(r.deadline_s for r in sim.results)
            and g[1] > sim.origin_s + min(r.arrival_s for r in sim.results)]
    if gaps:
        extra["trace_gaps_s"] = gaps
        err_console.print(f"[yellow]warning:[/] the carbon trace has {len(gaps)} gap(s) in the simulated span; "
                          "the last value before a gap is held across it")
    data = output.write_summary(sim, out / "summary.json", extra)
    written = ["jobs.csv", "summary.json"]
    if plots:
        output.plot_schedule(sim, job_list, out / "schedule.png")
        output.plot_savings_by_length(sim, out / "savings_by_length.png")
        written += ["schedule.png", "savings_by_length.png"]
    _print_summary(console, data)
    console.print(f"wrote {', '.join(str(out / w) for w in written)}")


def _print_summary(console: Console, data: dict[str, Any]) -> None:
    from rich.table import Table

    from wattwise.units import format_duration, format_si

    totals, base, saved = data["totals"], data["agnostic"], data["savings"]
    table = Table(title=f"{data['policy']}: {totals['jobs']} jobs", show_header=True)
    table.add_column("")
    table.add_column(data["policy"], justify="right")
    table.add_column("agnostic", justify="right")
    table.add_row("carbon", format_si(totals["carbon_g"], "g"), format_si(base["carbon_g"], "g"))
    table.add_row("energy", format_si(totals["energy_j"], "J"), format_si(base["energy_j"], "J"))
    table.add_row("carbon saved (against agnostic)", f"{saved['carbon_pct']:.2f} %", "")
    for name, other in data.get("against", {}).items():
        table.add_row(f"carbon saved against {name}", f"{other['saving_pct']:.2f} %", "")
    table.add_row("mean waiting", format_duration(totals["waiting_s_mean"]), "")
    table.add_row("interruptions", str(totals["interruptions"]), "0")
    table.add_row("deadlines missed", str(totals["deadlines_missed"]), "")
    table.add_row("simulation time", format_duration(data["elapsed_s"]), "")
    console.print(table)


def sweep_command(
    grid_file: Annotated[Path, typer.Argument(help="Grid file (YAML); see docs/scheduling.md.",
                                              metavar="GRID.yml", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created).", show_default=False)],
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes (default: one per "
                                                "CPU).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Address of a running Dask scheduler, "
                                                  "e.g. tcp://head:8786: run the cells on that cluster.",
                                                  show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in DIR: cells already saved "
                                         "there are not run again.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    """Run the cartesian product of a grid (zones, months, policies, job lengths, waiting times, phase
    patterns, startups, ...) on Dask: local worker processes by default, or an existing cluster with
    --scheduler. Each finished cell is saved at once in DIR/cells/ (Parquet), so an interrupted sweep
    continues with --resume. Writes DIR/results.csv, DIR/results.parquet and DIR/saving_by_*.png.

    Examples:

      wattwise sweep examples/thesis-grid.yml --out out/thesis

      wattwise sweep examples/thesis-grid.yml --out out/thesis --resume

      wattwise sweep big-grid.yml --out out/big --scheduler tcp://head-node:8786
    """
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from wattwise.clitools import console, err_console
    from wattwise.errors import ConfigError
    from wattwise.schedule.runner import run
    from wattwise.schedule.sweep import load_grid, plot_sweep, write_parquet, write_results

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if workers is not None and scheduler is not None:
        raise ConfigError("--workers and --scheduler exclude each other (the cluster has its own workers)")
    grid = load_grid(grid_file)
    started = time.perf_counter()
    where = scheduler or f"{workers or 'all'} local worker(s)"
    interrupted = False
    with Progress(TextColumn("[bold]sweep[/]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("cells", total=None, rate="")

        def update(done: int, total: int) -> None:
            spent = time.perf_counter() - started
            rate = f"{done / spent:.1f} cells/s" if done and spent > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        try:
            rows = run(grid, workers=workers, scheduler=scheduler, out=out, resume=resume, progress=update)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        err_console.print(f"[yellow]interrupted:[/] the finished cells are saved in {out / 'cells'}; continue "
                          f"with: wattwise sweep {grid_file} --out {out} --resume")
        raise typer.Exit(130)
    elapsed = time.perf_counter() - started
    write_results(rows, out / "results.csv")
    write_parquet(rows, out / "results.parquet")
    written = [out / "results.csv", out / "results.parquet"]
    if plots:
        written += plot_sweep(grid, rows, out)
    optimal = sum(1 for r in rows if r["optimal"])
    console.print(f"{len(rows)} configurations ({optimal} solved to optimality) in {elapsed:.1f} s on {where}")
    console.print(f"wrote {', '.join(str(p) for p in written)}")
