"""`wattwise report RUN_ID -o report.html`: a self-contained HTML page of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wattwise.clitools import DbOption, console
from wattwise.store import open_store


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run_id: Annotated[int, typer.Argument(help="Run id (see `wattwise runs list`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    points: Annotated[
        int, typer.Option(min=10, max=100000, help="Most points per chart (samples beyond are merged).")
    ] = 2000,
    db: DbOption = None,
) -> None:
    """Write a self-contained HTML report: phases, every metric over time with phase bands and notes,
    per-container energy, SCI, statistics, notes and logs. It opens offline (charts are drawn as inline SVG).

    Example: wattwise report 12 -o run12.html
    """
    from wattwise.errors import WattwiseError
    from wattwise.report.html import render_report

    html = render_report(open_store(db), run_id, points=points)
    try:
        output.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise WattwiseError(f"cannot write {output}: {exc.strerror}") from None
    console.print(f"report of run {run_id} written to {output} ({len(html) / 1e6:.1f} MB)", highlight=False)
