"""The `wattwise experiment` command (kept apart from cli.py so that cli.py stays short to import)."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from typing import Annotated

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console
from wattwise.errors import ConfigError


def _signal(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    value = getattr(signal, name, None)
    if not isinstance(value, signal.Signals):
        raise ConfigError(f"--stop-signal: unknown signal {text!r}; use e.g. INT, TERM, USR1 or a number")
    return int(value)


def experiment_command(
    command: Annotated[list[str] | None, typer.Argument(help="The command to measure, after --.",
                                                         show_default=False)] = None,
    runs: Annotated[int, typer.Option("--runs", "-n", help="Repetitions of each variant.")] = 3,
    variants: Annotated[str, typer.Option(
        "--variants", help="Comma-separated: full, after-checkpoint, before-checkpoint, startup, idle.")
    ] = "full,after-checkpoint,before-checkpoint,startup,idle",
    epoch: Annotated[int, typer.Option("--epoch", "-k", help="Stop around the k-th checkpoint.")] = 1,
    rest: Annotated[str, typer.Option("--rest", help="Unmeasured rest between recordings.")] = "30s",
    before: Annotated[str, typer.Option("--before", "-b", help="Idle window measured before each "
                                        "run.")] = "30s",
    after: Annotated[str, typer.Option("--after", "-a", help="Idle window measured after each run.")] = "30s",
    idle: Annotated[str, typer.Option("--idle", help="Length of the idle variant (between its "
                                      "windows).")] = "30s",
    resume_command: Annotated[str | None, typer.Option(
        "--resume-command", help="Command that resumes from the checkpoint (shell-quoted). Default: the "
        "command again.", show_default=False)] = None,
    phase_map: Annotated[Path | None, typer.Option(
        "--phase-map", "-m", help="Phase map YAML (which events start which phases; where to stop). "
        "Default: the shipped map for ML training logs.", show_default=False)] = None,
    stdout_events: Annotated[bool, typer.Option(
        "--stdout-events", help="Every stdout line is an event (timed on arrival), besides note lines "
        "'<unix time> <label>' and lines in $WATTWISE_EVENTS_FILE.")] = False,
    stop_signal: Annotated[str, typer.Option("--stop-signal", help="Signal that stops the program.")] = "INT",
    timeout: Annotated[str | None, typer.Option("--timeout", help="Kill a program that runs longer.",
                                                show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write each recording as a pinpoint-layout folder "
        "(OUT/VARIANT/rep-N/measurements.csv, events.csv) and campaign.json here.",
        show_default=False)] = None,
    providers: Annotated[str | None, typer.Option(
        "--providers", help="Comma-separated machine providers to sample (default: every available one).",
        show_default=False)] = None,
    interval: Annotated[str, typer.Option("--interval", help="Sampling interval.")] = "100ms",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Measurement campaign: run a command N times, in variants, with before/after windows and rests.

    Variants: full run; stop right after the k-th checkpoint then resume (after-checkpoint); stop right
    before it then resume (before-checkpoint); startup only; idle baseline. Reports energy per variant as
    mean ± std and each stop/resume variant's overhead against the full run. Each recording is also a
    wattwise run in the database (usable as run:ID) and, with -o, a pinpoint-layout folder.

    The program tells its progress by printing note lines '<unix time> <label>' (e.g.
    '1700000000.5 Epoch 1.0. Saved. Steps: 12'), by appending '<unix time>, <label>' lines to the file
    named by $WATTWISE_EVENTS_FILE, or (with --stdout-events) by plain stdout lines. It gets
    $WATTWISE_VARIANT, $WATTWISE_REP and $WATTWISE_RESUME (1: resume from your checkpoint, 0: start
    afresh) to keep each recording's checkpoints apart.

    Example:

      wattwise experiment -n 5 --before 30s --after 30s --rest 60s -o campaign -- python train.py

      wattwise model fit campaign/full --before 30s --after 30s -o model.json
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from wattwise.jobmodel.experiment import CampaignOptions, SamplerMeter, run_campaign
    from wattwise.jobmodel.phasemap import load_phasemap
    from wattwise.store import open_store
    from wattwise.units import parse_duration_s

    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    options = CampaignOptions(
        argv=list(command or []),
        resume_argv=shlex.split(resume_command) if resume_command else None,
        runs=runs, variants=chosen, epoch=epoch, rest_s=parse_duration_s(rest),
        before_s=parse_duration_s(before), after_s=parse_duration_s(after), idle_s=parse_duration_s(idle),
        stop_signal=_signal(stop_signal), stdout_events=stdout_events,
        timeout_s=parse_duration_s(timeout) if timeout else None, out_dir=output,
    )
    options.check()
    phasemap = load_phasemap(phase_map)
    store = open_store(db)
    try:
        names = [p.strip() for p in providers.split(",")] if providers else None
        meter = SamplerMeter(store, providers=names, interval_s=parse_duration_s(interval))
        total = options.runs * len(options.variants)
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=True) as progress:
            task = progress.add_task("campaign", total=total)
            result = run_campaign(
                options, phasemap, meter,
                progress=lambda text: progress.update(task, description=text),
                on_recording=lambda _rec: progress.advance(task),
            )
    finally:
        store.close()
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Energy per variant ({options.runs} run(s) each)", title_justify="left")
    for column in ("variant", "n", "energy (mean ± std)", "duration (mean ± std)", "overhead vs full",
                   "above idle"):
        table.add_column(column)
    for s in result.summaries:
        overhead = "–"
        if s.overhead_j is not None:
            overhead = f"{s.overhead_j:+.1f} ± {s.overhead_std_j or 0:.1f} J"
            if s.overhead_rel is not None:
                overhead += f" ({s.overhead_rel:+.1%})"
        above = f"{s.above_idle_mean_j:.1f} J" if s.above_idle_mean_j is not None else "–"
        table.add_row(s.variant, str(s.n), f"{s.energy_mean_j:.1f} ± {s.energy_std_j:.1f} J",
                      f"{s.duration_mean_s:.2f} ± {s.duration_std_s:.2f} s", overhead, above)
    console.print(table)
    if result.idle_power_w is not None:
        console.print(f"idle power: {result.idle_power_w:.3g} W", highlight=False)
    runs_ids = [r.run_id for r in result.recordings if r.run_id is not None]
    if runs_ids:
        console.print(f"stored as runs {runs_ids[0]}–{runs_ids[-1]}", highlight=False)
    if output is not None:
        console.print(f"wrote {output}/<variant>/rep-N and {output}/campaign.json", highlight=False)
