"""Commands of wattwise.jobmodel: `wattwise model ...` (fit, cv, plot, show...) and `wattwise experiment`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console
from wattwise.errors import ConfigError
from wattwise.jobmodel._help import helptext, unwrap

if TYPE_CHECKING:
    from wattwise.jobmodel.fit import Baseline
    from wattwise.jobmodel.pinpoint import PowerRun

model_app = typer.Typer(
    name="model",
    help=(
        "Job power models: a job is startup phases (repeated at every resume) then work phases, each at "
        "constant power. Fit them from measured runs, check them by cross-validation, plot them.\n\n"
        "A run is a folder in the pinpoint layout (measurements.csv + events.csv), a folder holding such "
        "folders, or a wattwise run id (run:12 or 12, read from --db).\n\n"
        "Examples:\n\n"
        "  wattwise model fit runs/run-1 runs/run-2 runs/run-3 --before 30s --after 30s -o model.json\n\n"
        "  wattwise model cv runs/ --before 30s --after 30s --json\n\n"
        "  wattwise model plot runs/run-1 --model model.json -o run-1.png\n\n"
        "  wattwise model show model.json"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

RunsArg = Annotated[
    list[str],
    typer.Argument(
        help="Runs: pinpoint-layout folders (measurements.csv, events.csv), folders of such folders, "
        "or wattwise run ids (run:ID or ID) from the database.",
        show_default=False,
    ),
]
PhaseMapOption = Annotated[
    Path | None,
    typer.Option("--phase-map", "-m", help="Phase map YAML (label regex → phase). Default: the shipped map "
                 "for ML training logs; print it with `wattwise model phasemap`.", show_default=False),
]
BeforeOption = Annotated[
    str | None,
    typer.Option("--before", "-b", help="Length of the meter's window recorded before the program "
                 "(e.g. 30s): the program was launched at recording start + this. The job then counts "
                 "from the launch.", show_default=False),
]
AfterOption = Annotated[
    str | None,
    typer.Option("--after", "-a", help="Length of the meter's window recorded after the program (e.g. 30s): "
                 "the program ended at recording end − this.", show_default=False),
]
BaselineOption = Annotated[
    str | None,
    typer.Option("--baseline", help="Subtract a baseline power: a number in W, or 'windows' = each run's "
                 "mean power in its before/after windows (needs --before/--after).", show_default=False),
]
IgnoreUnknownOption = Annotated[
    bool, typer.Option("--ignore-unknown", help="Skip events whose label matches no rule of the phase map "
                       "(default: error).")
]


def _parse_window(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    from wattwise.units import parse_duration_s

    try:
        return parse_duration_s(text)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _parse_baseline(text: str | None) -> Baseline:
    if text is None:
        return None
    if text.strip().lower() == "windows":
        return "windows"
    try:
        value = float(text.strip().removesuffix("W").removesuffix("w"))
    except ValueError:
        raise ConfigError(f"--baseline: use a power in W (e.g. 12.5) or 'windows', got {text!r}") from None
    if value < 0:
        raise ConfigError(f"--baseline must not be negative, got {text!r}")
    return value


def _expand(spec: str) -> list[str]:
    path = Path(spec)
    if path.is_dir() and not (path / "measurements.csv").exists():
        children = sorted(p for p in path.iterdir() if (p / "measurements.csv").exists())
        if children:
            return [str(p) for p in children]
    return [spec]


def _is_run_id(spec: str) -> bool:
    if spec.startswith("run:"):
        return True
    return spec.isdigit() and not Path(spec).exists()


def load_runs(specs: list[str], before: str | None, after: str | None,
              db: str | None = None) -> list[PowerRun]:
    """Read the runs named on the command line, with a progress bar."""
    from rich.progress import Progress

    from wattwise.jobmodel.pinpoint import read_pinpoint

    before_s = _parse_window(before, "--before")
    after_s = _parse_window(after, "--after")
    expanded = [item for spec in specs for item in _expand(spec)]
    if not expanded:
        raise ConfigError("give at least one run (a pinpoint folder or a run id)")
    runs: list[PowerRun] = []
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("reading runs", total=len(expanded))
        for spec in expanded:
            if _is_run_id(spec):
                from wattwise.jobmodel.storerun import read_store_run

                runs.append(read_store_run(spec, db, before_s=before_s, after_s=after_s))
            else:
                runs.append(read_pinpoint(spec, before_s=before_s, after_s=after_s, name=spec))
            progress.advance(task)
    return runs


#: pinpoint-layout power is in whole mW: figures are not printed finer than that (no `± 2.5e-15 W`)
POWER_RESOLUTION_W = 0.001
TIME_RESOLUTION_S = 0.001


def _rounded(value: float, resolution: float, digits: int) -> str:
    """`value` rounded to the measurement's resolution, then to `digits` significant digits."""
    value = round(value / resolution) * resolution + 0.0  # + 0.0: no "-0"
    return f"{value:.{digits}g}"


def _print_model(model: Any, title: str) -> None:
    from rich.table import Table

    from wattwise.units import format_duration, format_si

    table = Table(title=title, title_justify="left")
    for column in ("#", "section", "phase", "duration", "power", "energy", "checkpoint"):
        right = column in ("#", "duration", "power", "energy")
        table.add_column(column, justify="right" if right else "left")
    for i, phase in enumerate(model.phases, start=1):
        section = "startup" if i <= len(model.startup) else "work"
        table.add_row(str(i), section, phase.name, format_duration(phase.duration_s),
                      f"≈{_rounded(phase.power_w, POWER_RESOLUTION_W, 3)} W", "≈" + format_si(phase.energy_j, "J"),
                      "yes" if phase.is_checkpoint else "")
    console.print(table)
    console.print(
        f"startup {format_duration(model.startup_s)}, ≈{format_si(model.startup_energy_j, 'J')} "
        f"(= resume cost); work {format_duration(model.work_s)}, ≈{format_si(model.work_energy_j, 'J')}; "
        f"total {format_duration(model.duration_s)}, ≈{format_si(model.energy_j, 'J')}, "
        f"mean ≈{_rounded(model.mean_power_w, POWER_RESOLUTION_W, 3)} W; "
        f"{len(model.checkpoint_ends_s)} checkpoint(s). ≈: a model's figures are estimates.",
        highlight=False,
    )


@model_app.command("fit")
@helptext
def fit_command(
    runs: Annotated[list[str] | None, typer.Argument(
        help="Runs: pinpoint-layout folders (measurements.csv, events.csv), folders of such folders, or wattwise "
        "run ids (run:ID or ID) from the database. Not with --plan.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the model here (.json, .yml, "
                                               ".yaml).", show_default=False)] = None,
    plan: Annotated[int | None, typer.Option("--plan", help="Refit --model from the measured segments of this "
                                             "Slurm plan (slurm submit --measure).", show_default=False)] = None,
    template: Annotated[Path | None, typer.Option("--model", help="With --plan: the model the plan was made "
                                                  "with (its phases are kept).", show_default=False)] = None,
    phase_map: PhaseMapOption = None,
    before: BeforeOption = None,
    after: AfterOption = None,
    baseline: BaselineOption = None,
    ignore_unknown: IgnoreUnknownOption = False,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the fit report (phases with "
                                               "spread across runs, per-run energies) as JSON here.",
                                               show_default=False)] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Fit a job model from runs of the same job.

    Each run is cut into phases at its events (the phase map says which event starts which phase). Phase
    duration = mean over runs; phase power = mean of the samples inside the phase. Also reports, per
    run, the measured energy between its first and last event and over the whole job.

    Example:

      wattwise model fit runs/run-1 runs/run-2 --before 30s --after 30s -o model.json\n
      wattwise model fit --plan 3 --model model.json -o refit.json
    """
    from wattwise.jobmodel.fit import fit_runs
    from wattwise.jobmodel.model import save_model
    from wattwise.jobmodel.phasemap import load_phasemap

    if plan is not None or template is not None or not runs:
        from wattwise.jobmodel.plan_cli import fit_plan

        fit_plan(plan, template, runs, output, as_json, db)
        return
    phasemap = load_phasemap(phase_map)
    loaded = load_runs(runs, before, after, db)
    result = fit_runs(loaded, phasemap, baseline=_parse_baseline(baseline), ignore_unknown=ignore_unknown)
    if output is not None:
        save_model(result.model, output)
    if report is not None:
        report.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    from wattwise.units import format_duration, format_si

    table = Table(title=f"Fitted model from {len(loaded)} run(s)", title_justify="left")
    for column in ("#", "section", "phase", "duration", "± (runs)", "power", "± (runs)", "samples", "ckpt"):
        table.add_column(column)
    for i, p in enumerate(result.phases, start=1):
        table.add_row(str(i), p.section, p.name, format_duration(p.duration_s),
                      f"{_rounded(p.duration_std_s, TIME_RESOLUTION_S, 3)} s",
                      f"≈{_rounded(p.power_w, POWER_RESOLUTION_W, 4)} W",
                      f"{_rounded(p.power_std_w, POWER_RESOLUTION_W, 2)} W", str(p.samples),
                      "yes" if p.is_checkpoint else "")
    console.print(table)
    runs_table = Table(title="Runs", title_justify="left")
    for column in ("run", "job duration", "energy first→last event", "job energy", "baseline"):
        runs_table.add_column(column)
    for r in result.runs:
        runs_table.add_row(r.run, format_duration(r.duration_s), f"{r.energy_events_j:.1f} J",
                           f"{r.energy_job_j:.1f} J",
                           f"{_rounded(r.baseline_w, POWER_RESOLUTION_W, 3)} W" if r.baseline_w else "–")
    console.print(runs_table)
    model = result.model
    console.print(
        f"model: ≈{format_duration(model.duration_s)}, ≈{format_si(model.energy_j, 'J')}; resume cost "
        f"≈{format_duration(model.resume_cost_s)}, ≈{format_si(model.resume_cost_j, 'J')} "
        "(≈: a model's figures are estimates fitted from the runs)", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    if output is not None:
        console.print(f"wrote {output}", highlight=False)


@model_app.command("cv")
@helptext
def cv_command(
    runs: RunsArg,
    phase_map: PhaseMapOption = None,
    before: BeforeOption = None,
    after: AfterOption = None,
    baseline: BaselineOption = None,
    ignore_unknown: IgnoreUnknownOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Leave-one-out cross-validation across runs.

    For each run: fit on the others, then compare with it: measured vs predicted job energy, and the RMSE
    of the model's power against the run's samples. --json prints
    {"folds": [{"run", "measured_energy_j", "predicted_energy_j", "power_rmse_w"}...],
    "mean_abs_energy_error_j", "mean_power_rmse_w"}.

    Example:

      wattwise model cv runs/run-1 runs/run-2 runs/run-3 --before 30s --after 30s --json
    """
    from rich.progress import Progress

    from wattwise.jobmodel.cv import cross_validate_segments
    from wattwise.jobmodel.fit import segment_runs
    from wattwise.jobmodel.phasemap import load_phasemap

    phasemap = load_phasemap(phase_map)
    loaded = load_runs(runs, before, after, db)
    segments = segment_runs(loaded, phasemap, baseline=_parse_baseline(baseline),
                            ignore_unknown=ignore_unknown)
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("leave-one-out", total=len(segments))
        result = cross_validate_segments(segments, progress=lambda: progress.advance(task))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Leave-one-out over {len(segments)} runs", title_justify="left")
    for column in ("held-out run", "measured energy", "predicted energy", "error", "power RMSE",
                   "flat-model RMSE"):
        table.add_column(column)
    for f in result.folds:
        error = f.predicted_energy_j - f.measured_energy_j
        rel = f" ({error / f.measured_energy_j:+.1%})" if f.measured_energy_j else ""
        table.add_row(f.run, f"{f.measured_energy_j:.1f} J", f"≈{f.predicted_energy_j:.1f} J",
                      f"{error:+.1f} J{rel}", f"{_rounded(f.power_rmse_w, POWER_RESOLUTION_W, 3)} W",
                      f"{_rounded(f.constant_power_rmse_w, POWER_RESOLUTION_W, 3)} W")
    console.print(table)
    console.print(
        f"mean |energy error| {result.mean_abs_energy_error_j:.1f} J; mean power RMSE "
        f"{_rounded(result.mean_power_rmse_w, POWER_RESOLUTION_W, 3)} W (a flat model of the same energy and "
        f"length: {_rounded(result.mean_constant_power_rmse_w, POWER_RESOLUTION_W, 3)} W); ≈: predicted by the "
        "model", highlight=False)


@model_app.command("plot")
@helptext
def plot_command(
    runs: RunsArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Image file: .png or .svg.")],
    model_path: Annotated[Path | None, typer.Option("--model", help="Overlay this model file.",
                                                    show_default=False)] = None,
    fit: Annotated[bool, typer.Option("--fit", help="Overlay the model fitted from the given runs.")] = False,
    sigma: Annotated[str, typer.Option("--sigma", help="Standard deviation of the Gaussian smoothing of the "
                                       "trend line (a duration, e.g. 2s; 0 = none).")] = "2s",
    layout: Annotated[str, typer.Option("--layout", help="Several runs: 'stacked' (one panel each) or "
                                        "'overlay' (one panel).")] = "stacked",
    phase_map: PhaseMapOption = None,
    before: BeforeOption = None,
    after: AfterOption = None,
    ignore_unknown: IgnoreUnknownOption = False,
    db: DbOption = None,
) -> None:
    """Plot runs: for one run, samples as dots, a Gaussian-smoothed trend, event markers and the model;
    for several, their trend lines stacked, aligned at each job's start.

    Examples:

      wattwise model plot runs/run-1 --model model.json -o run-1.svg

      wattwise model plot runs/ --fit --before 30s --after 30s -o all.png
    """
    from wattwise.jobmodel.model import load_model
    from wattwise.jobmodel.plot import plot_run, plot_runs
    from wattwise.units import parse_duration_s

    sigma_s = parse_duration_s(sigma)
    loaded = load_runs(runs, before, after, db)
    model = load_model(model_path) if model_path is not None else None
    starts: list[float | None] = [None] * len(loaded)
    if fit or model is not None:
        from wattwise.jobmodel.fit import fit_segments, segment_runs
        from wattwise.jobmodel.phasemap import load_phasemap

        segments = segment_runs(loaded, load_phasemap(phase_map), ignore_unknown=ignore_unknown)
        starts = [s.job_start_s for s in segments]
        if fit:
            model = fit_segments(segments)[0]
    if len(loaded) == 1:
        path = plot_run(loaded[0], output, model=model, sigma_s=sigma_s, job_start_s=starts[0])
    else:
        path = plot_runs(loaded, output, model=model, sigma_s=sigma_s, job_starts_s=starts, layout=layout)
    console.print(f"wrote {path}", highlight=False)


@model_app.command("show")
@helptext
def show_command(
    model_path: Annotated[Path, typer.Argument(help="Model file (.json, .yml, .yaml).", show_default=False)],
    as_json: JsonOption = False,
    work: Annotated[str | None, typer.Option("--work", help="Show the model tiled to this much work "
                                             "(e.g. 2h): work phases repeated.", show_default=False)] = None,
) -> None:
    """Print a model's phases, durations, powers and energy (and its resume cost).

    Example:

      wattwise model show model.json --work 2h
    """
    from wattwise.jobmodel.model import load_model

    model = load_model(model_path)
    if work is not None:
        from wattwise.units import parse_duration_s

        model = model.tiled(parse_duration_s(work))
    if as_json:
        data = model.to_dict()
        data.update(startup_s=model.startup_s, work_s=model.work_s, duration_s=model.duration_s,
                    energy_j=model.energy_j, resume_cost_j=model.resume_cost_j,
                    resume_cost_s=model.resume_cost_s)
        print(json.dumps(data, indent=2))
        return
    _print_model(model, str(model_path))


@model_app.command("phasemap")
@helptext
def phasemap_command() -> None:
    """Print the default phase map (YAML), to copy and edit for your program's log labels.

    Example:

      wattwise model phasemap > mymap.yml

      wattwise model fit runs/ -m mymap.yml -o model.json
    """
    from wattwise.jobmodel.phasemap import default_phasemap_text

    print(default_phasemap_text(), end="")


@model_app.command("schema")
@helptext
def schema_command() -> None:
    """Print the JSON Schema of model files."""
    from wattwise.jobmodel.model import MODEL_SCHEMA

    print(json.dumps(MODEL_SCHEMA, indent=2))


@model_app.command("synth")
@helptext
def synth_command(
    model_path: Annotated[Path, typer.Argument(help="Model file to generate runs from.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for run-1, run-2, ...")],
    runs: Annotated[int, typer.Option("--runs", "-n", help="Number of runs.")] = 3,
    noise_w: Annotated[float, typer.Option("--noise", help="Standard deviation of sample noise (W).")] = 2.0,
    jitter: Annotated[float, typer.Option("--jitter", help="Relative standard deviation of phase "
                                          "durations.")] = 0.02,
    interval: Annotated[str, typer.Option("--interval", help="Sampling interval.")] = "500ms",
    before: Annotated[str, typer.Option("--before", "-b", help="Idle window before the program.")] = "10s",
    after: Annotated[str, typer.Option("--after", "-a", help="Idle window after the program.")] = "10s",
    idle_w: Annotated[float, typer.Option("--idle", help="Power in the windows (W).")] = 15.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Generate synthetic pinpoint-layout runs from a model, with noise: to try fit, cv and plot.

    Phases named start, prepare, train, evaluate, save, finish, exit get the labels the default phase
    map reads.

    Example:

      wattwise model synth model.json -o runs --runs 5

      wattwise model cv runs --before 10s --after 10s
    """
    from wattwise.jobmodel.model import load_model
    from wattwise.jobmodel.synth import SynthOptions, synth_runs
    from wattwise.units import parse_duration_s

    interval_s = parse_duration_s(interval)
    if interval_s <= 0:
        raise ConfigError("--interval must be above 0")
    options = SynthOptions(noise_w=noise_w, duration_jitter=jitter, interval_s=interval_s,
                           before_s=parse_duration_s(before), after_s=parse_duration_s(after), idle_w=idle_w)
    folders = synth_runs(load_model(model_path), out_dir, runs, options, seed=seed)
    console.print(f"wrote {len(folders)} run(s) into {out_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(model_app, name="model")
    from wattwise.jobmodel.experiment_cli import experiment_command

    app.command(
        "experiment",
        help=unwrap(experiment_command.__doc__ or ""),
        no_args_is_help=True,
        context_settings={"allow_interspersed_args": False},
    )(experiment_command)
