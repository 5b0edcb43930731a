"""`wattwise ci start|mark|end` (energy of CI jobs) and `wattwise runs import` (store a run document)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console

ci_app = typer.Typer(
    help="Energy of a CI job, step by step (the Eco-CI model): start, mark each step, end.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="State folder shared by the steps (default: $WATTWISE_CI_DIR, $RUNNER_TEMP/wattwise-ci "
                 "or /tmp/wattwise-ci-UID).", show_default=False),
]


def register(app: typer.Typer) -> None:
    from wattwise.analysis.runs_cli import runs_app

    app.add_typer(ci_app, name="ci")
    runs_app.command("import")(import_command)


@ci_app.command("start")
def start(
    name: Annotated[str | None, typer.Option("--name", "-n", help="Name of the run (default: the CI job).")] = None,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Sampling interval.")] = "1s",
    country: Annotated[str | None, typer.Option("--country", help="Grid of this country (ISO code).")] = None,
    intensity: Annotated[
        float | None, typer.Option("--intensity", help="Grid carbon intensity in gCO2e/kWh.")
    ] = None,
    pue: Annotated[float | None, typer.Option("--pue", help="Power usage effectiveness of the site.")] = None,
    folder: DirOption = None,
    db: DbOption = None,
) -> None:
    """Start measuring this CI job in the background.

    Examples:\n
      wattwise ci start --country DE\n
      wattwise ci mark "install"      # after each step\n
      wattwise ci end --json energy.json
    """
    from wattwise.integrations.ci import ci_environment, start_agent, state_dir
    from wattwise.units import parse_duration_s

    where = state_dir(folder)
    parse_duration_s(interval)  # a clear error here rather than in the agent's log
    env = ci_environment()
    default_name = " / ".join(v for k, v in env.items() if k in ("GITHUB_REPOSITORY", "CI_PROJECT_PATH",
                                                                  "GITHUB_JOB", "CI_JOB_NAME")) or "ci job"
    argv = ["--name", name or default_name, "--interval", interval]
    for flag, value in (("--country", country), ("--intensity", intensity), ("--pue", pue), ("--db", db)):
        if value is not None:
            argv += [flag, str(value)]
    pid = start_agent(where, argv)
    console.print(f"wattwise: measuring this CI job (agent pid {pid}, state in {where})", highlight=False)


@ci_app.command("mark")
def mark(
    label: Annotated[str, typer.Argument(help="Name of the step that just ended.")],
    folder: DirOption = None,
) -> None:
    """End the step since the previous mark (or the start) and name it.

    Examples:\n
      wattwise ci mark "npm ci"\n
      wattwise ci mark tests
    """
    from wattwise.integrations.ci import CiClient, state_dir

    CiClient(state_dir(folder)).request(f"mark {label}")
    console.print(f"wattwise: step '{label}' marked", highlight=False, markup=False)


@ci_app.command("end")
def end(
    label: Annotated[
        str | None, typer.Option("--label", help="Name of the last step (time since the last mark).")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the run document here (for `wattwise runs import`).")
    ] = None,
    summary_file: Annotated[
        Path | None,
        typer.Option("--summary", help="Append the Markdown summary here (default: $GITHUB_STEP_SUMMARY if set)."),
    ] = None,
    folder: DirOption = None,
) -> None:
    """Stop measuring, print the energy of each step as Markdown and write the run document.

    If the agent has already stopped by itself (job cancelled, 6 h cap), the run it closed as interrupted is used.

    Examples:\n
      wattwise ci end\n
      wattwise ci end --label deploy --json energy.json
    """
    from wattwise.integrations.ci import CiClient, markdown_summary, state_dir

    where = state_dir(folder)
    result = CiClient(where).end(label)
    document = result.document
    if not result.from_agent:  # stopped by itself (cancelled job, 6 h cap): the document it wrote on its way out
        reason = f" ({document['error']})" if document.get("error") else ""
        err_console.print(f"wattwise: the CI agent had already stopped; its run ended as "
                          f"{document.get('status', 'unknown')}{reason}. Using the document it wrote"
                          + (f" (the last step is not named {label!r})" if label else ""),
                          highlight=False, markup=False)
    text = markdown_summary(document)
    typer.echo(text, nl=False)
    target = summary_file or (Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY")
                              else None)
    if target is not None:
        with target.open("a") as handle:
            handle.write(text)
    if json_file is not None:
        json_file.write_bytes(result.raw)
        err_console.print(f"wrote {json_file} (store it with `wattwise runs import {json_file}`)", highlight=False)


@ci_app.command("agent", hidden=True)
def agent(
    folder: Annotated[Path, typer.Option("--dir")],
    name: Annotated[str, typer.Option("--name")] = "ci job",
    interval: Annotated[str, typer.Option("--interval")] = "1s",
    country: Annotated[str | None, typer.Option("--country")] = None,
    intensity: Annotated[float | None, typer.Option("--intensity")] = None,
    pue: Annotated[float | None, typer.Option("--pue")] = None,
    db: DbOption = None,
) -> None:
    """The background process `ci start` leaves running (not for direct use)."""
    from wattwise.integrations.ci import AgentOptions, agent_main
    from wattwise.units import parse_duration_s

    code = agent_main(AgentOptions(folder, name, db, parse_duration_s(interval), country, intensity, pue))
    raise typer.Exit(code)


def import_command(
    files: Annotated[list[Path], typer.Argument(help="Run documents (JSON) to store.")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Store runs from run documents (`wattwise runs export ID --format json`, `wattwise ci end --json F`).

    Examples:\n
      wattwise runs import energy.json\n
      wattwise runs import run3.json --db postgresql://127.0.0.1/wattwise
    """
    from wattwise.errors import WattwiseError
    from wattwise.store import open_store
    from wattwise.store.transfer import import_run_document

    store = open_store(db)
    imported: list[dict[str, object]] = []
    for path in files:
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise WattwiseError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise WattwiseError(f"{path} is not JSON: {exc}") from None
        run_id = import_run_document(store, document, source=str(path))
        from wattwise.analysis import summarize_run

        store.update_run(run_id, results=summarize_run(store, run_id))
        imported.append({"file": str(path), "run_id": run_id})
        if not as_json:
            console.print(f"stored {path} as run {run_id}", highlight=False, markup=False)
    if as_json:
        typer.echo(json.dumps({"imported": imported}))
