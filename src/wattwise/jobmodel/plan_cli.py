"""`wattwise model fit --plan ID --model M`: refit a plan's model from its measured segments (see segments.py)."""

from __future__ import annotations

import json
from pathlib import Path

from wattwise.clitools import console
from wattwise.errors import ConfigError

__all__ = ["fit_plan"]


def fit_plan(plan_id: int | None, template: Path | None, runs: list[str] | None, output: Path | None,
             as_json: bool, db: str | None) -> None:
    """`model fit --plan`: the template's phases with durations and powers from the plan's measured segments."""
    if plan_id is None or template is None or runs:
        raise ConfigError("give runs to fit, or --plan ID with --model (the model the plan was made with) and no runs")
    from wattwise.jobmodel.model import load_model, save_model
    from wattwise.jobmodel.segments import plan_segment_runs, refit_from_segments
    from wattwise.jobmodel.storerun import read_store_run
    from wattwise.store import open_store

    store = open_store(db)
    found = plan_segment_runs(store, plan_id)
    if not found:
        raise ConfigError(f"no measured segment of plan {plan_id}: submit with `wattwise slurm submit --measure` so "
                          "that each segment runs under `wattwise measure --read-notes-stdout`")
    measured = [read_store_run(str(run_id), db, store=store) for _, run_id in found]
    model, report = refit_from_segments(load_model(template), measured)
    report["runs"] = [run_id for _, run_id in found]
    if output is not None:
        save_model(model, output)
    if as_json:
        print(json.dumps({"model": model.to_dict(), "report": report}, indent=2))
        return
    console.print(f"refitted {template} from {len(measured)} measured segment(s) of plan {plan_id}"
                  + (f": {output}" if output else ""), markup=False, highlight=False)
