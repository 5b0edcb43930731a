"""Pieces shared by the command modules: consoles and common options (open the store with `store.open_store`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: a SQLAlchemy URL (postgresql://…) or a SQLite file path. "
        "Default: $WATTWISE_DATABASE_URL, else SQLite in the user data directory.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]

