"""`wattwise runs list|show|export|delete`: stored runs presented through analysis."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from wattwise.analysis.present import print_summary, runtime_phase, status_markup
from wattwise.clitools import DbOption, JsonOption, console
from wattwise.errors import WattwiseError
from wattwise.store import open_store
from wattwise.units import format_duration, format_si

runs_app = typer.Typer(help="List, show, export and delete stored runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many runs, newest first.")] = 20,
    status: Annotated[
        str | None, typer.Option(help="Only runs with this status: running, finished, failed, interrupted.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only runs whose name contains this text.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List stored runs, newest first.

    Example: wattwise runs list --status failed
    """
    store = open_store(db)
    runs = store.list_runs(limit=limit, status=status, name=name)
    rows: list[dict[str, Any]] = []
    for run in runs:
        runtime = runtime_phase(run.results)
        rows.append(
            {
                "id": run.id,
                "name": run.name,
                "kind": run.kind,
                "status": run.status,
                "created_at": run.created_at.isoformat() if run.created_at else None,
                "estimated": run.estimated,
                "runtime_energy_j": runtime.get("energy_j") if runtime else None,
                "runtime_duration_s": runtime.get("duration_s") if runtime else None,
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title=f"Runs in {store.engine.url.render_as_string()}")
    for column in ("id", "name", "kind", "status", "created", "runtime", "energy"):
        table.add_column(column)
    for row in rows:
        approx = "≈" if row["estimated"] and row["runtime_energy_j"] is not None else ""
        table.add_row(
            str(row["id"]),
            row["name"],
            row["kind"],
            status_markup(row["status"]),
            (row["created_at"] or "")[:19].replace("T", " "),
            format_duration(row["runtime_duration_s"]),
            approx + format_si(row["runtime_energy_j"], "J"),
        )
    console.print(table)


@runs_app.command("show")
def show(
    run_id: Annotated[int, typer.Argument(help="Run id (see `wattwise runs list`).")],
    intensity: Annotated[
        float | None, typer.Option(help="Recompute carbon with this intensity (g/kWh).")
    ] = None,
    pue: Annotated[float | None, typer.Option(help="Recompute carbon with this PUE.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show a run's phases with energy, power, resource use and carbon, its notes and warnings.

    Examples:

      wattwise runs show 3

      wattwise runs show 3 --json --intensity 350
    """
    from wattwise.analysis import summarize_run

    store = open_store(db)
    run = store.get_run(run_id)
    summary = summarize_run(store, run_id, intensity_g_per_kwh=intensity, pue=pue)
    summary["exit_code"] = run.exit_code
    summary["error"] = run.error
    summary["notes"] = [{"t_us": n.t_us, "source": n.source, "text": n.text} for n in store.notes(run_id)]
    if as_json:
        print(json.dumps(summary, default=float))
        return
    console.print(f"command: {run.command}  machine: {run.machine}  exit code: {run.exit_code}")
    if run.error:
        console.print(f"[red]error:[/] {run.error}")
    print_summary(summary)
    if summary["notes"]:
        console.print("notes:")
        for note in summary["notes"]:
            console.print(f"  {note['t_us']}  {note['text']}")


@runs_app.command("export")
def export(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="csv (one row per sample) or json (everything).")
    ] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Export a run's samples (CSV: metric,unit,provider,detail,estimated,t_us,value) or the whole run (JSON).

    Examples:\n
      wattwise runs export 3 --format csv -o run3.csv\n
      wattwise runs export 3 --format json | jq '.phases'
    """
    if fmt not in ("csv", "json"):
        raise WattwiseError(f"unknown export format {fmt!r}: use csv or json")
    from wattwise.analysis import load_series

    store = open_store(db)
    store.get_run(run_id)  # a clear error for an unknown id
    series = load_series(store, run_id)
    handle = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["metric", "unit", "provider", "detail", "estimated", "t_us", "value"])
        for s in series:
            for t, v in zip(s.t_us.tolist(), s.values.tolist(), strict=True):
                writer.writerow([s.name, s.unit, s.provider, s.detail, int(s.estimated), t, repr(v)])
    else:
        from wattwise.analysis.document import run_document

        document = run_document(store, run_id, series=series)
        json.dump(document, handle, default=float)
        handle.write("\n")
    if output:
        output.write_text(handle.getvalue())
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(handle.getvalue())


@runs_app.command("delete")
def delete(
    run_ids: Annotated[list[int], typer.Argument(help="Run ids to delete with all their samples.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Delete runs and everything stored with them.

    Examples:

      wattwise runs delete 7

      wattwise runs delete 7 8 9 --yes
    """
    store = open_store(db)
    for run_id in run_ids:
        store.get_run(run_id)  # fail before asking when an id does not exist
    if not yes and not typer.confirm(f"delete run(s) {', '.join(map(str, run_ids))} and all their samples?"):
        raise typer.Abort()
    for run_id in run_ids:
        store.delete_run(run_id)
        console.print(f"deleted run {run_id}")
