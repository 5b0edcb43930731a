"""Pieces shared by the command modules: consoles and common options (open the store with `store.open_store`)."""

from __future__ import annotations

from typing import Annotated, Any

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



def _flags_take_no_value() -> None:
    """`--help` lists a flag (`--json`, `--help`) without a type: typer 0.2x shows `<bool>` in the type column
    of its Rich help, as if the flag took a value. Options with a value keep their `<type>`."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_wattwise", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich._wattwise = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()
