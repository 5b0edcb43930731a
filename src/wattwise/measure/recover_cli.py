"""`wattwise runs recover`: close runs whose measuring process was killed, and remove what they left behind."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from wattwise.clitools import DbOption, JsonOption, console, err_console
from wattwise.measure.recovery import Recovered, recover_runs


def register(app: typer.Typer) -> None:
    """Adds `recover` to the `runs` group (the group itself is presented by analysis)."""
    from wattwise.analysis.runs_cli import runs_app

    runs_app.command("recover")(recover_command)


def recover_command(
    run_ids: Annotated[
        list[int] | None, typer.Argument(help="Only these runs (default: every run of this machine).")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Close runs whose measuring process was killed (`kill -9`, OOM killer, power loss).

    A `running` run of this machine whose owner process is gone is marked crashed with its samples kept, its open
    phase closed at the last sample; processes left in its cgroups are killed and the cgroups removed; containers
    and networks labelled `wattwise.run_id=<id>` are removed (podman). Runs whose owner is alive are left alone.
    Every wattwise command does this for runs it finds marker files of; this command also checks the database.

    Examples:\n
      wattwise runs recover\n
      wattwise runs recover 12 --db postgresql://127.0.0.1/wattwise
    """
    from wattwise.store import open_store

    store = open_store(db)
    try:
        recovered = recover_runs(store, run_ids or None)
    finally:
        store.close()
    if as_json:
        print(json.dumps([{"run_id": r.run_id, "status": r.status, "removed": r.removed} for r in recovered]))
        return
    if not recovered:
        console.print("nothing to recover: every running run of this machine has a live owner")
        return
    for item in recovered:
        print_recovered(item)


def print_recovered(item: Recovered) -> None:
    removed = f"; removed {', '.join(item.removed)}" if item.removed else ""
    err_console.print(f"recovered run {item.run_id}: its measuring process is gone, stored as {item.status}"
                      f"{removed}", highlight=False, soft_wrap=True)
