"""`wattwise slurm submit`: carbon-aware job submission to Slurm."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from wattwise.clitools import JsonOption, console

slurm_app = typer.Typer(help="Carbon-aware submission to Slurm.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(slurm_app, name="slurm")


@slurm_app.command("submit", context_settings={"allow_interspersed_args": False})
def submit_command(
    sbatch_args: Annotated[
        list[str], typer.Argument(help="sbatch arguments and script, after `--`.", show_default=False)
    ],
    carbon: Annotated[
        str,
        typer.Option(
            "--carbon",
            "-c",
            help="Carbon-intensity forecast or trace (Electricity "
            "Maps CSV or timestamp,g_per_kwh CSV) covering the wait plus the job.",
        ),
    ],
    wait_hours: Annotated[float, typer.Option("--wait-hours", "-w", help="How long the job may wait.")] = 24.0,
    length: Annotated[str | None, typer.Option("--length", "-l", help="Job length, e.g. 2h (or --model).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Job model file (startup and work phases).")
    ] = None,
    power: Annotated[
        float,
        typer.Option(help="Power (W) of a --length job; it does not change the best start, only the grams reported."),
    ] = 100.0,
    step: Annotated[str, typer.Option(help="Candidate starts every STEP.")] = "5min",
    now: Annotated[
        float | None, typer.Option(help="Plan from this Unix time instead of now (for what-ifs).", hidden=True)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the sbatch command instead of running it.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a batch job to start when the grid is cleanest within the waiting time.

    wattwise finds the start with the least carbon for the job's power profile (a constant --length job or a
    --model with startup and work phases) in \\[now, now + wait] on the forecast, then runs
    `sbatch --begin=<start> ARGS`. Slurm holds the job until then.

    Examples:\n
      wattwise slurm submit --carbon forecast.csv --wait-hours 12 --length 2h -- -p batch train.sbatch\n
      wattwise slurm submit -c de.csv -w 24 --model train.json --dry-run -- --wrap "python train.py"
    """
    from wattwise.carbon.trace import read_trace
    from wattwise.errors import WattwiseError
    from wattwise.executors.planning import plan_start
    from wattwise.executors.slurm import submit
    from wattwise.units import parse_duration_s

    if (length is None) == (model is None):
        raise WattwiseError("give exactly one of --length and --model")
    if model is not None:
        from wattwise.jobmodel import load_model

        segments = load_model(model).segments()
    else:
        segments = [(0.0, parse_duration_s(length or "0"), power)]
    trace = read_trace(carbon)
    plan = plan_start(trace, segments, time.time() if now is None else now, wait_hours * 3600.0, parse_duration_s(step))
    submission = submit(plan, sbatch_args, dry_run=dry_run)
    result = {
        "job_id": submission.job_id,
        "begin": submission.begin,
        "start_s": plan.start_s,
        "carbon_g": plan.carbon_g,
        "immediate_carbon_g": plan.immediate_carbon_g,
        "saving_g": plan.saving_g,
        "saving_ratio": plan.saving_ratio,
        "energy_j": plan.energy_j,
        "sbatch": submission.argv,
        "dry_run": dry_run,
    }
    if as_json:
        print(json.dumps(result))
        return
    what = "would run" if dry_run else f"submitted job {submission.job_id}:"
    console.print(f"{what} {' '.join(submission.argv)}")
    console.print(
        f"start {submission.begin} (local time): {plan.carbon_g:.1f} g CO2e instead of "
        f"{plan.immediate_carbon_g:.1f} g now, saving {plan.saving_ratio:.1%}"
    )
