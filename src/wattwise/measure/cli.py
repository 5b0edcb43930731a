"""`wattwise measure -- CMD`: measure any command's energy."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from wattwise.analysis.present import print_summary
from wattwise.clitools import DbOption, JsonOption, err_console
from wattwise.store import open_store
from wattwise.units import parse_duration_s

__all__ = ["measure", "print_summary", "register"]


def register(app: typer.Typer) -> None:
    app.command(
        "measure",
        # the command starts at the first argument that is not an option of ours (or after `--`); an unknown
        # option before it is a usage error, not the command
        context_settings={"allow_interspersed_args": False},
    )(measure)


def measure(
    command: Annotated[
        list[str], typer.Argument(help="The command and its arguments, after `--`.", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name of the run (default: the command).")
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", "-i", help="Sampling interval of fast providers, 10ms or more.")
    ] = "100ms",
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline", "-b", help="Length of the [BASELINE] phase before the command (0 to skip)."
        ),
    ] = "5s",
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            "-p",
            help="Sample only these providers (repeat the option). Default: every available one; "
            "see `wattwise providers`.",
        ),
    ] = None,
    read_notes_stdout: Annotated[
        bool,
        typer.Option(
            "--read-notes-stdout", help="Turn stdout lines `<unix-time-µs> <text>` into timestamped notes."
        ),
    ] = False,
    intensity: Annotated[
        float | None,
        typer.Option(
            "--intensity",
            help="Grid carbon intensity in gCO2e/kWh (default: --country, $WATTWISE_GRID_INTENSITY, "
            "$WATTWISE_COUNTRY, else the world average).",
        ),
    ] = None,
    country: Annotated[
        str | None, typer.Option("--country", help="ISO country code for the grid intensity, e.g. DE.")
    ] = None,
    pue: Annotated[
        float | None, typer.Option("--pue", help="Power usage effectiveness of the site (≥ 1, default 1).")
    ] = None,
    tdp: Annotated[
        float | None, typer.Option("--tdp", help="CPU TDP in W for the estimated power curve.")
    ] = None,
    power_curve: Annotated[
        str | None,
        typer.Option(
            "--power-curve", help="Calibration CSV `utilization,power_w` replacing the estimated curve."
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Measure a command's energy, power, resource use and carbon.

    A [BASELINE] phase samples the machine with nothing running, then [RUNTIME] runs the command in its own
    cgroup, so that its own CPU time and memory are attributed to it. Every sample is stored; the run can be
    listed, exported and reported afterwards (`wattwise runs`, `wattwise report`).

    Examples:\n
      wattwise measure -- python3 train.py --epochs 2\n
      wattwise measure --name build --baseline 10s --country DE -- make -j2\n
      wattwise measure --json --interval 10ms -- ./bench.sh > result.json
    """
    from wattwise.measure.command import MeasureOptions, measure_command

    options = MeasureOptions(
        name=name,
        interval_s=parse_duration_s(interval),
        baseline_s=parse_duration_s(baseline),
        providers=provider or None,
        read_notes_stdout=read_notes_stdout,
        intensity_g_per_kwh=intensity,
        country=country,
        pue=pue,
        tdp_w=tdp,
        power_curve=power_curve,
    )
    store = open_store(db)
    progress_console = err_console
    if as_json:  # stdout carries exactly one JSON object: the command's output goes to stderr
        saved_stdout = sys.stdout
        sys.stdout = sys.stderr
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(
        *columns, console=progress_console, transient=True, disable=not progress_console.is_terminal
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(phase: str, elapsed_s: float, total_s: float | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total_s)
            bar.update(tasks[phase], completed=elapsed_s if total_s else None)

        try:
            result = measure_command(store, command, options, progress=on_progress)
        finally:
            if as_json:
                sys.stdout = saved_stdout
    summary = dict(result.summary)
    summary["exit_code"] = result.exit_code
    if as_json:
        print(json.dumps(summary, default=float))
    else:
        print_summary(summary)
    if result.error:
        err_console.print(
            f"[bold red]error:[/] {result.error} (run {result.run_id} stored as {result.status})"
        )
        raise typer.Exit(1)

