"""`wattwise providers`: what this machine can measure."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from wattwise.clitools import JsonOption, console


def register(app: typer.Typer) -> None:
    app.command("providers")(providers)


def providers(as_json: JsonOption = False) -> None:
    """List metric providers, their metrics and units, and whether each is available here (and why not).

    Examples:\n
      wattwise providers\n
      wattwise providers --json
    """
    from wattwise.providers import provider_table

    rows = provider_table()
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "description": r.description,
                        "scope": r.scope,
                        "default_interval_s": r.default_interval_s,
                        "metrics": r.metrics,
                        "available": r.availability.available,
                        "reason": r.availability.reason,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table(title="Metric providers", show_lines=False)
    for column in ("provider", "scope", "metrics (unit)", "available", "details"):
        table.add_column(column, overflow="fold")
    for r in rows:
        metrics = ", ".join(f"{m} ({u})" for m, u in r.metrics.items())
        mark = "[green]yes[/]" if r.availability.available else "[red]no[/]"
        table.add_row(escape(r.name), escape(r.scope), escape(metrics), mark, escape(r.availability.reason))
    console.print(table)
