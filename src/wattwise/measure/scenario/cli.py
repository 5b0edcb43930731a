"""`wattwise validate FILE` and `wattwise run FILE`: usage scenarios (GMT usage_scenario.yml)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console
from wattwise.store import open_store

VariableOption = Annotated[
    list[str] | None,
    typer.Option(
        "--variable",
        "-V",
        help="Value of a __GMT_VAR_NAME__ variable: NAME=VALUE or __GMT_VAR_NAME__=VALUE (repeat the option).",
        show_default=False,
    ),
]
UnsafeOption = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Allow host ports, host paths outside the scenario's folder, any environment names and docker-run-args.",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="container (podman/docker), host (services as host processes, each in its own cgroup), "
        "or auto: the file's x-wattwise.backend, else container.",
    ),
]
FileArgument = Annotated[str, typer.Argument(help="The usage_scenario.yml file.", show_default=False)]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("validate")(validate)
    app.command("run")(run)


def validate(
    file: FileArgument,
    variable: VariableOption = None,
    allow_unsafe: UnsafeOption = False,
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Check a usage scenario file without running it.

    Exit code 0 when it is valid; otherwise every problem is listed with its file, line and key path,
    and the exit code is 2.

    Examples:\n
      wattwise validate usage_scenario.yml\n
      wattwise validate --variable PORT=8080 examples/web-busybox/usage_scenario.yml
    """
    from wattwise.measure.scenario.problems import ScenarioError
    from wattwise.measure.scenario.schema import load_scenario
    from wattwise.measure.scenario.source import parse_variables

    try:
        scenario = load_scenario(file, parse_variables(variable), allow_unsafe=allow_unsafe, backend=backend)
    except ScenarioError as exc:
        if as_json:
            print(json.dumps({"file": file, "valid": False, "problems": exc.lines}))
        else:
            _print_error(exc)
        raise typer.Exit(2) from None
    if as_json:
        print(
            json.dumps(
                {
                    "file": file,
                    "valid": True,
                    "name": scenario.name,
                    "backend": scenario.backend,
                    "services": sorted(scenario.services),
                    "flow": [step.name for step in scenario.flow],
                    "warnings": scenario.warnings,
                }
            )
        )
        return
    from rich.markup import escape

    console.print(
        f"[green]valid[/]: {escape(file)} — {escape(repr(scenario.name))}, {len(scenario.services)} service(s), "
        f"{len(scenario.flow)} flow step(s), {scenario.backend} backend",
        highlight=False,
        soft_wrap=True,
    )
    for warning in scenario.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def run(
    file: FileArgument,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name of the run (default: the scenario's name key).")
    ] = None,
    variable: VariableOption = None,
    allow_unsafe: UnsafeOption = False,
    dev_no_sleeps: Annotated[
        bool, typer.Option("--dev-no-sleeps", help="Skip [BASELINE] and [IDLE] (for developing a scenario).")
    ] = False,
    baseline: Annotated[str, typer.Option("--baseline", help="Length of [BASELINE], nothing running.")] = "60s",
    idle: Annotated[str, typer.Option("--idle", help="Length of [IDLE], services up, no flow.")] = "60s",
    interval: Annotated[str, typer.Option("--interval", "-i", help="Sampling interval, 10ms or more.")] = "100ms",
    backend: BackendOption = "auto",
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine", help="podman, docker or a path (default: $WATTWISE_CONTAINER_ENGINE, podman, docker)."
        ),
    ] = None,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", "-p", help="Sample only these machine providers.")
    ] = None,
    intensity: Annotated[float | None, typer.Option("--intensity", help="Grid intensity in gCO2e/kWh.")] = None,
    country: Annotated[str | None, typer.Option("--country", help="ISO country code for the grid intensity.")] = None,
    pue: Annotated[float | None, typer.Option("--pue", help="Power usage effectiveness (≥ 1).")] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Longest a single flow or setup command may take.")] = "1h",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the commands' output as they run.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run a usage scenario (GMT usage_scenario.yml) and measure it phase by phase.

    [BASELINE], [INSTALLATION], [BOOT], [IDLE], [RUNTIME] with one sub-phase per flow step, [REMOVE].
    Services run in containers (podman or docker) or, with the host backend, as host processes in their
    own cgroups. Containers, networks and temporary images are always removed; samples, logs and notes
    are kept with the run (`wattwise runs show ID`).

    Examples:\n
      wattwise run examples/web-busybox/usage_scenario.yml --dev-no-sleeps\n
      wattwise run usage_scenario.yml --variable PORT=8080 --baseline 30s --idle 10s --json\n
      wattwise run examples/host-training/usage_scenario.yml --backend host
    """
    from wattwise.analysis.present import print_summary
    from wattwise.measure.scenario.problems import ScenarioError
    from wattwise.measure.scenario.runner import RunOptions, ScenarioInterrupted, run_scenario
    from wattwise.measure.scenario.source import parse_variables
    from wattwise.units import parse_duration_s

    options = RunOptions(
        name=name,
        variables=parse_variables(variable),
        allow_unsafe=allow_unsafe,
        dev_no_sleeps=dev_no_sleeps,
        baseline_s=parse_duration_s(baseline),
        idle_s=parse_duration_s(idle),
        interval_s=parse_duration_s(interval),
        providers=provider or None,
        intensity_g_per_kwh=intensity,
        country=country,
        pue=pue,
        backend=backend,
        engine=engine,
        echo_output=verbose,
        command_timeout_s=parse_duration_s(timeout),
    )
    store = open_store(db)
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def on_progress(phase: str, elapsed_s: float, total_s: float | None) -> None:
            if phase not in tasks:
                for task in tasks.values():
                    bar.remove_task(task)
                tasks.clear()
                tasks[phase] = bar.add_task(phase, total=total_s)
            bar.update(tasks[phase], completed=elapsed_s if total_s else None)

        try:
            result = run_scenario(store, file, options, progress=on_progress)
        except ScenarioError as exc:
            _print_error(exc)
            raise typer.Exit(2) from None
        except ScenarioInterrupted as exc:
            err_console.print(
                f"interrupted: run {exc.run_id} stored as interrupted; its containers, networks and "
                "processes were removed",
                highlight=False,
            )
            raise typer.Exit(130) from None
    summary = dict(result.summary)
    summary["exit_code"] = result.exit_code
    if as_json:
        print(json.dumps(summary, default=float))
    else:
        print_summary(summary)
        print_services(summary)
    if result.error:
        if result.output:
            err_console.print(result.output, highlight=False, markup=False)
        from rich.markup import escape

        err_console.print(
            f"[bold red]error:[/] {escape(result.error)} (run {result.run_id} stored as {result.status})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    sys.stdout.flush()


def _print_error(exc: Exception) -> None:
    """The whole message, one problem per line, never wrapped (so that it can be searched and compared)."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def print_services(summary: dict) -> None:
    """Per-service CPU, memory and network of each phase (the services' own cgroups and namespaces)."""
    from rich.table import Table

    from wattwise.units import format_si

    phases = [p for p in summary["phases"] if p.get("services")]
    names = sorted({name for p in phases for name in p["services"]})
    if not names:
        return
    table = Table(title="Per service")
    for column in ("phase", "service", "CPU", "memory peak", "net received", "net sent"):
        table.add_column(column, justify="left" if column in ("phase", "service") else "right")
    for phase in phases:
        for name in names:
            figures = phase["services"].get(name) or {}
            if all(v is None for v in figures.values()):
                continue
            cpu = figures.get("cpu_time_s")
            table.add_row(
                ("  " if phase.get("parent") else "") + phase["name"],
                name,
                "–" if cpu is None else f"{cpu:.2f} s",
                format_si(figures.get("memory_peak_b"), "B"),
                format_si(figures.get("network_rx_b"), "B"),
                format_si(figures.get("network_tx_b"), "B"),
            )
    console.print(table)
    sci = summary.get("sci")
    if sci:
        console.print(f"SCI functional unit: R = {sci.get('R')} {sci.get('R_d', '')}", highlight=False, markup=False)
