"""`wattwise validate` and `wattwise run`: usage scenarios (GMT usage_scenario.yml), with GMT's runner flags.

`wattwise run FILE` is the short form (the root is FILE's folder); `wattwise run --uri PATH_OR_GIT_URL
--filename REL/usage_scenario.yml` is GMT's `runner.py` form (the root is the repository).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console
from wattwise.store import open_store

VariableOption = Annotated[
    list[str] | None,
    typer.Option(
        "--variable",
        "--variables",
        "-V",
        help="Value of a __GMT_VAR_NAME__ variable: NAME=VALUE or __GMT_VAR_NAME__=VALUE (repeat the option).",
        show_default=False,
    ),
]
UnsafeOption = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Allow host ports, host paths outside the root, any environment names, long values, any "
        "docker-run-args, and a file's request for the host backend.",
    ),
]
SkipUnsafeOption = Annotated[
    bool, typer.Option("--skip-unsafe", help="Leave unsafe items out (with a warning) instead of failing (GMT).")
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="container (podman/docker), host (services as host processes, each in its own cgroup; this machine "
        "chooses it, a file cannot), or auto: container unless --allow-unsafe lets the file ask for host.",
    ),
]
FileArgument = Annotated[
    str | None, typer.Argument(help="The usage_scenario.yml file (or use --uri/--filename).", show_default=False)
]
UriOption = Annotated[
    str | None,
    typer.Option(
        "--uri", help="GMT's root: a folder or a git repository (URL, or local with --branch).", show_default=False
    ),
]
FilenameOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filename", help="Scenario file relative to --uri (repeat; default usage_scenario.yml).", show_default=False
    ),
]
BranchOption = Annotated[
    str | None, typer.Option("--branch", help="Branch to clone (a git --uri).", show_default=False)
]
CommitOption = Annotated[
    str | None, typer.Option("--commit-hash", help="Commit to check out (a git --uri).", show_default=False)
]


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("validate")(validate)
    app.command("run")(run)


def _targets(file: str | None, uri: str | None, filename: list[str] | None) -> None:
    if file and uri:
        raise typer.BadParameter("give FILE or --uri/--filename, not both")
    if not file and not uri:
        raise typer.BadParameter("give FILE, or --uri ROOT [--filename REL/usage_scenario.yml]")
    if filename and not uri:
        raise typer.BadParameter("--filename is relative to --uri: give --uri too")


def validate(
    file: FileArgument = None,
    uri: UriOption = None,
    filename: FilenameOption = None,
    branch: BranchOption = None,
    commit_hash: CommitOption = None,
    variable: VariableOption = None,
    allow_unsafe: UnsafeOption = False,
    skip_unsafe: SkipUnsafeOption = False,
    backend: BackendOption = "auto",
    strict: Annotated[
        bool, typer.Option("--strict", help="Duplicate YAML keys are errors (GMT keeps the last one, with a warning).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say how accepted GMT keys are used or ignored.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a usage scenario file without running it.

    Exit code 0 when it is valid; otherwise every problem is listed with its file, line and key path,
    and the exit code is 2. With --uri the file is judged against that root, as `run --uri` runs it.

    Examples:\n
      wattwise validate usage_scenario.yml\n
      wattwise validate --variable REQUESTS=20 examples/web-busybox/usage_scenario.yml\n
      wattwise validate --uri ~/shop --filename microservices/usage_scenario.yml --verbose
    """
    from wattwise.errors import WattwiseError
    from wattwise.measure.scenario.problems import ScenarioError
    from wattwise.measure.scenario.repo import open_uri
    from wattwise.measure.scenario.schema import load_scenario
    from wattwise.measure.scenario.source import parse_variables

    _targets(file, uri, filename)
    results: list[dict[str, Any]] = []
    failed = False
    try:
        variables = parse_variables(variable)
        context = open_uri(uri, filename or [], branch, commit_hash) if uri else _single(file or "")
        with context as checkout:
            for path in checkout.files:
                shown = str(path.relative_to(checkout.root)) if uri else (file or "")
                try:
                    scenario = load_scenario(
                        path,
                        variables,
                        allow_unsafe=allow_unsafe,
                        skip_unsafe=skip_unsafe,
                        backend=backend,
                        root=checkout.root if uri else None,
                        strict_duplicates=strict,
                    )
                except ScenarioError as exc:
                    failed = True
                    results.append({"file": shown, "valid": False, "problems": exc.lines})
                    if not as_json:
                        from wattwise.measure.scenario.present import print_error

                        print_error(str(exc).replace(str(path), shown, 1) if uri else str(exc))
                    continue
                results.append(
                    {
                        "file": shown,
                        "valid": True,
                        "name": scenario.name,
                        "backend": scenario.backend,
                        "services": sorted(scenario.services),
                        "flow": [step.name for step in scenario.flow],
                        "warnings": scenario.warnings,
                        "notes": scenario.notes,
                    }
                )
                if not as_json:
                    _print_valid(shown, scenario, verbose)
    except WattwiseError as exc:
        from wattwise.measure.scenario.present import print_error

        if as_json:
            print(json.dumps({"file": file or uri, "valid": False, "problems": [str(exc)]}))
        else:
            print_error(str(exc))
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    if failed:
        raise typer.Exit(2)


def _print_valid(shown: str, scenario: Any, verbose: bool) -> None:
    from rich.markup import escape

    console.print(
        f"[green]valid[/]: {escape(shown)} — {escape(repr(scenario.name))}, {len(scenario.services)} service(s), "
        f"{len(scenario.flow)} flow step(s), {scenario.backend} backend",
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )
    for warning in scenario.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True, emoji=False)
    if verbose:
        for note in scenario.notes:
            err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True, emoji=False)


class _single:
    """FILE (the short form) as a one-file checkout whose root is its folder."""

    def __init__(self, file: str) -> None:
        from pathlib import Path

        from wattwise.measure.scenario.repo import Checkout

        path = Path(file)
        self.checkout = Checkout(path.resolve().parent, [path], file)

    def __enter__(self) -> Any:
        return self.checkout

    def __exit__(self, *exc: object) -> None:
        return None


def run(
    file: FileArgument = None,
    uri: UriOption = None,
    filename: FilenameOption = None,
    branch: BranchOption = None,
    commit_hash: CommitOption = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name of the run (default: the scenario's name key).")
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Run each file K times and compare.")] = 1,
    variable: VariableOption = None,
    allow_unsafe: UnsafeOption = False,
    skip_unsafe: SkipUnsafeOption = False,
    skip_system_checks: Annotated[
        bool, typer.Option("--skip-system-checks", help="Accepted for GMT: wattwise has no blocking system checks.")
    ] = False,
    dev_no_sleeps: Annotated[
        bool, typer.Option("--dev-no-sleeps", help="Skip [BASELINE] and [IDLE] (for developing a scenario).")
    ] = False,
    dev_cache_build: Annotated[
        bool, typer.Option("--dev-cache-build", help="Keep built images under a stable tag and reuse them.")
    ] = False,
    dev_no_build: Annotated[
        bool, typer.Option("--dev-no-build", help="Never build: reuse the images of a --dev-cache-build run.")
    ] = False,
    dev_no_metrics: Annotated[
        bool, typer.Option("--dev-no-metrics", help="Run the flow without sampling anything.")
    ] = False,
    dev_no_optimizations: Annotated[
        bool, typer.Option("--dev-no-optimizations", help="Accepted for GMT: wattwise runs no optimization reports.")
    ] = False,
    print_logs: Annotated[bool, typer.Option("--print-logs", help="Print each container's logs at the end.")] = False,
    print_phase_stats: Annotated[
        bool, typer.Option("--print-phase-stats", help="Print the phase tables also with --json (to stderr).")
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
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show the commands' output as they run, and how GMT keys are used or ignored."
        ),
    ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run a usage scenario (GMT usage_scenario.yml) and measure it phase by phase.

    [BASELINE], [INSTALLATION], [BOOT], [IDLE], [RUNTIME] with one sub-phase per flow step, [REMOVE].
    Services run in containers (podman or docker) or, with the host backend, as host processes in their
    own cgroups. Containers, networks and temporary images are always removed; samples, logs and notes
    are kept with the run (`wattwise runs show ID`). GMT's `python3 runner.py --uri ... --filename ...`
    commands work with `wattwise run` in place of `python3 runner.py`.

    Examples:\n
      wattwise run examples/web-busybox/usage_scenario.yml --variable REQUESTS=20 --dev-no-sleeps\n
      wattwise run --uri ~/shop --filename monolith/usage_scenario.yml --iterations 3 --skip-unsafe\n
      wattwise run --uri https://github.com/me/app --branch main --filename usage_scenario.yml --print-logs\n
      wattwise run examples/host-training/usage_scenario.yml --backend host
    """
    from wattwise.errors import WattwiseError
    from wattwise.measure.scenario.problems import ScenarioError
    from wattwise.measure.scenario.repo import open_uri
    from wattwise.measure.scenario.runner import RunOptions, ScenarioInterrupted, run_scenario
    from wattwise.measure.scenario.source import parse_variables
    from wattwise.units import parse_duration_s

    _targets(file, uri, filename)
    if allow_unsafe and skip_unsafe:
        raise typer.BadParameter("--allow-unsafe and --skip-unsafe cannot be combined")
    rows: list[dict[str, Any]] = []
    store = open_store(db)
    try:
        options = RunOptions(
            name=name,
            variables=parse_variables(variable),
            allow_unsafe=allow_unsafe,
            skip_unsafe=skip_unsafe,
            dev_no_sleeps=dev_no_sleeps,
            dev_no_metrics=dev_no_metrics,
            dev_cache_build=dev_cache_build,
            dev_no_build=dev_no_build,
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
        context = open_uri(uri, filename or [], branch, commit_hash) if uri else _single(file or "")
        with context as checkout:
            if uri:
                options.root = checkout.root
                options.extra_settings = dict(checkout.settings)
            accepted = [f for f, on in (("--skip-system-checks", skip_system_checks),
                                         ("--dev-no-optimizations", dev_no_optimizations)) if on]
            if accepted:
                options.extra_settings["accepted_gmt_flags"] = accepted  # no effect here, recorded with the run
            for path in checkout.files:
                shown = str(path.relative_to(checkout.root)) if uri else (file or "")
                for iteration in range(1, iterations + 1):
                    result = _run_one(store, path, options, run_scenario)
                    summary = dict(result.summary)
                    summary["exit_code"] = result.exit_code
                    summary["error"] = result.error
                    summary["output"] = result.output
                    rows.append(
                        {"iteration": iteration, "file": shown, "run_id": result.run_id, "status": result.status,
                         "summary": summary, "result": result}
                    )
                    _report(summary, result, as_json and iterations == 1 and len(checkout.files) == 1,
                            print_logs, print_phase_stats or not as_json, verbose)
    except ScenarioError as exc:
        from wattwise.measure.scenario.present import print_error

        print_error(str(exc))
        raise typer.Exit(2) from None
    except ScenarioInterrupted as exc:
        err_console.print(
            f"interrupted: run {exc.run_id} stored as interrupted; its containers, networks and "
            "processes were removed",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except WattwiseError as exc:
        from wattwise.measure.scenario.present import print_error

        if as_json:
            print(json.dumps({"status": "error", "error": str(exc), "runs": [_row_json(r) for r in rows]}))
        print_error(str(exc))
        raise typer.Exit(2) from None
    _compare(rows, as_json)
    if any(r["result"].error for r in rows):
        raise typer.Exit(1)


def _compare(rows: list[dict[str, Any]], as_json: bool) -> None:
    if len(rows) > 1:
        if as_json:
            print(json.dumps({"runs": [_row_json(r) for r in rows]}, default=float))
        else:
            from wattwise.measure.scenario.present import print_comparison

            print_comparison(rows)
    sys.stdout.flush()


def _run_one(store: Any, path: Any, options: Any, run_scenario: Any) -> Any:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(phase: str, elapsed_s: float, total_s: float | None) -> None:
            if phase not in tasks:
                for task in tasks.values():
                    bar.remove_task(task)
                tasks.clear()
                tasks[phase] = bar.add_task(phase, total=total_s)
            bar.update(tasks[phase], completed=elapsed_s if total_s else None)

        return run_scenario(store, path, options, progress=on_progress)


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "result"}


def _report(
    summary: dict[str, Any], result: Any, as_json: bool, print_logs: bool, tables: bool, verbose: bool = False
) -> None:
    from wattwise.analysis.present import print_summary
    from wattwise.measure.scenario.present import print_error, print_services
    from wattwise.measure.scenario.present import print_logs as show_logs

    if as_json:
        print(json.dumps(summary, default=float))
    if tables:
        if as_json:  # --print-phase-stats with --json: plain phase lines on stderr, stdout stays JSON
            from wattwise.measure.scenario.present import print_phase_stats

            print_phase_stats(summary)
        else:
            print_summary(summary)
            print_services(summary)
    if verbose:
        for note in result.notes:  # how accepted GMT keys were used or ignored
            err_console.print(f"note: {note}", highlight=False, markup=False, emoji=False, soft_wrap=True)
    if print_logs:
        show_logs(result.service_logs)
    if result.error:
        if result.output:
            err_console.print(result.output, highlight=False, markup=False, emoji=False)
        print_error(f"{result.error} (run {result.run_id} stored as {result.status})")


def print_services(summary: dict[str, Any]) -> None:
    """Kept for callers of the old location (wattwise.measure.scenario.cli.print_services)."""
    from wattwise.measure.scenario.present import print_services as show

    show(summary)
