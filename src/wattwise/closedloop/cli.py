"""`wattwise slurm submit|status|report`: carbon-aware submission to Slurm, and plans executed as chains."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from wattwise.clitools import DbOption, JsonOption, console

slurm_app = typer.Typer(help="Carbon-aware submission to Slurm, and plans run as chains of checkpointed segments.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(slurm_app, name="slurm")


@slurm_app.command("submit", context_settings={"allow_interspersed_args": False})
def submit_command(
    sbatch_args: Annotated[
        list[str], typer.Argument(help="sbatch arguments and script, after `--`.", show_default=False)
    ],
    carbon: Annotated[
        str,
        typer.Option("--carbon", "-c", help="Carbon-intensity forecast covering the wait plus the job: a CSV "
                     "(Electricity Maps export or timestamp,g_per_kwh), or a live forecast: ukci, "
                     "ukci:<postcode|region id>, electricitymaps:<zone>."),
    ],
    wait_hours: Annotated[float, typer.Option("--wait-hours", "-w", help="How long the job may wait.")] = 24.0,
    length: Annotated[str | None, typer.Option("--length", "-l", help="Job length, e.g. 2h (or --model).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Job model file (startup and work phases).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="Run the job in planned segments (needs --model): oracle (one run at the "
                     "best start) or suspend-resume (checkpointed segments, each resume paying the startup)."),
    ] = None,
    max_resumes: Annotated[int | None, typer.Option("--max-resumes", help="At most this many resumes.")] = None,
    checkpoint_only: Annotated[
        bool, typer.Option("--checkpoint-only", help="Stop only right after a checkpoint phase of the model.")
    ] = False,
    mode: Annotated[
        str, typer.Option("--mode", help="chain: one Slurm job per segment (no operator rights); suspend: one job "
                          "that `wattwise slurm agent` suspends and resumes (operator rights; a resume is free).")
    ] = "chain",
    measure: Annotated[
        bool, typer.Option("--measure", help="Run each segment under `wattwise measure` into this database (the job "
                           "script honours WATTWISE_MEASURE): slurm report compares model and measurement, and "
                           "`wattwise model fit --plan` refits the model.")
    ] = False,
    replan_threshold: Annotated[
        float, typer.Option("--replan-threshold", help="The agent re-plans the rest of a chain when a slot's "
                            "forecast moved by more than this fraction.")
    ] = 0.1,
    slot: Annotated[str, typer.Option("--slot", help="Planning resolution of --policy.")] = "5min",
    lead: Annotated[str, typer.Option("--lead", help="USR1 this long before a segment's time limit.")] = "30s",
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Folder the segments share (default: ./wattwise-plan-ID).")
    ] = None,
    power: Annotated[
        float,
        typer.Option(help="Power (W) of a --length job; it does not change the best start, only the grams reported."),
    ] = 100.0,
    step: Annotated[str, typer.Option(help="Candidate starts every STEP (without --policy).")] = "5min",
    now: Annotated[
        float | None, typer.Option(help="Plan from this Unix time instead of now (for what-ifs).", hidden=True)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the sbatch commands instead of running them.")
    ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Submit a batch job to run when the grid is cleanest within the waiting time.

    Without --policy: the start with the least carbon for the job's power profile in \\[now, now + wait] on the
    forecast, then `sbatch --begin=<start> ARGS`. With --policy and a --model: the job runs in the planned
    segments, one Slurm job each (chain mode: --begin, --time, --signal=B:USR1@lead, afterany dependencies,
    the job's role in WATTWISE_* variables; see docs/scheduling.md, "executing a plan"); the plan is stored and
    `wattwise slurm status|report PLAN_ID` follow it.

    Examples:\n
      wattwise slurm submit --carbon forecast.csv --wait-hours 12 --length 2h -- -p batch train.sbatch\n
      wattwise slurm submit -c de.csv -w 24 --model train.json --dry-run -- --wrap "python train.py"\n
      wattwise slurm submit --model model.json --policy suspend-resume --max-resumes 3 --carbon forecast.csv \\
        --wait-hours 12 -- examples/slurm-checkpoint/job.sbatch
    """
    from wattwise.carbon.live_forecast import read_carbon
    from wattwise.errors import WattwiseError
    from wattwise.units import parse_duration_s

    now_s = time.time() if now is None else now
    trace = read_carbon(carbon, now_s=now_s)
    if policy is not None:
        if model is None or length is not None:
            raise WattwiseError("--policy plans from a job model: give --model (not --length)")
        _submit_chain(sbatch_args, trace, model, policy, now_s, wait_hours * 3600.0, parse_duration_s(slot),
                      max_resumes, checkpoint_only, parse_duration_s(lead), checkpoint_dir, dry_run, as_json, db,
                      mode, replan_threshold, measure)
        return
    if mode != "chain" or measure:
        raise WattwiseError("--mode and --measure need --policy and --model")
    if max_resumes is not None or checkpoint_only:
        raise WattwiseError("--max-resumes and --checkpoint-only need --policy suspend-resume")
    _submit_start(sbatch_args, trace, length, model, power, now_s, wait_hours, parse_duration_s(step), dry_run,
                  as_json)


def _submit_start(sbatch_args: list[str], trace: Any, length: str | None, model: str | None, power: float,
                  now_s: float, wait_hours: float, step_s: float, dry_run: bool, as_json: bool) -> None:
    from wattwise.errors import WattwiseError
    from wattwise.executors.planning import plan_start
    from wattwise.executors.slurm import submit
    from wattwise.units import parse_duration_s

    if (length is None) == (model is None):
        raise WattwiseError("give exactly one of --length and --model")
    if model is not None:
        from wattwise.jobmodel import load_model

        segments = load_model(model).segments()
    else:
        segments = [(0.0, parse_duration_s(length or "0"), power)]
    plan = plan_start(trace, segments, now_s, wait_hours * 3600.0, step_s)
    submission = submit(plan, sbatch_args, dry_run=dry_run)
    result = {
        "job_id": submission.job_id, "begin": submission.begin, "start_s": plan.start_s, "carbon_g": plan.carbon_g,
        "immediate_carbon_g": plan.immediate_carbon_g, "saving_g": plan.saving_g,
        "saving_ratio": plan.saving_ratio, "energy_j": plan.energy_j, "sbatch": submission.argv,
        "dry_run": dry_run,
    }
    if as_json:
        print(json.dumps(result))
        return
    what = "would run" if dry_run else f"submitted job {submission.job_id}:"
    console.print(f"{what} {shlex.join(submission.argv)}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"start {submission.begin} (local time): {plan.carbon_g:.1f} g CO2e instead of "
        f"{plan.immediate_carbon_g:.1f} g now, saving {plan.saving_ratio:.1%}", markup=False, highlight=False,
    )


def _submit_chain(sbatch_args: list[str], trace: Any, model_path: str, policy: str, now_s: float, wait_s: float,
                  slot_s: float, max_resumes: int | None, checkpoint_only: bool, lead_s: float,
                  checkpoint_dir: Path | None, dry_run: bool, as_json: bool, db: str | None, mode: str,
                  replan_threshold: float, measure: bool) -> None:
    from wattwise.closedloop.chain import check_sbatch_args, submit_chain, submit_suspendable
    from wattwise.closedloop.plan import plan_chain
    from wattwise.closedloop.plans import save_plan, update_plan
    from wattwise.jobmodel import load_model
    from wattwise.store import open_store

    script = check_sbatch_args(sbatch_args)  # before anything is stored or submitted
    job_model = load_model(model_path)
    plan = plan_chain(job_model, trace, now_s=now_s, wait_s=wait_s, policy=policy, slot_s=slot_s,
                      max_resumes=max_resumes, checkpoint_only=checkpoint_only, mode=mode)
    plan.settings.update(lead_s=lead_s, replan_threshold=replan_threshold, measure=measure)
    store = open_store(db)
    name = script.stem if script is not None else "job"
    plan_id = 0
    if not dry_run:
        plan_id = save_plan(store, name=name, mode=mode, status="submitting", checkpoint_dir="",
                            model=job_model.to_dict(), plan=plan.to_dict(), jobs=[], sbatch_args=list(sbatch_args),
                            events=[])
    folder = (checkpoint_dir or Path.cwd() / (f"wattwise-plan-{plan_id}" if not dry_run else "wattwise-plan-ID")
              ).resolve()
    try:
        submit = submit_chain if mode == "chain" else submit_suspendable
        jobs = submit(plan, sbatch_args, plan_id=plan_id, checkpoint_dir=folder, lead_s=lead_s,
                      name=f"{name}-p{plan_id}", dry_run=dry_run, measure_db=store.url if measure else None)
    except BaseException:
        if not dry_run:
            update_plan(store, plan_id, status="failed", checkpoint_dir=str(folder))
        raise
    if not dry_run:
        update_plan(store, plan_id, status="submitted", checkpoint_dir=str(folder), jobs=jobs)
    if as_json:
        print(json.dumps({"plan_id": plan_id if not dry_run else None, "checkpoint_dir": str(folder),
                          "jobs": jobs, "plan": plan.to_dict(), "dry_run": dry_run}))
        return
    _print_plan(plan, jobs, plan_id, folder, dry_run)


def _print_plan(plan: Any, jobs: list[dict[str, Any]], plan_id: int, folder: Path, dry_run: bool) -> None:
    from rich.table import Table

    from wattwise.units import format_si

    title = "dry run" if dry_run else f"plan {plan_id}"
    table = Table(title=f"{title}: {plan.policy}, {len(plan.segments)} segment(s), {plan.restarts} restart(s)")
    for column in ("segment", "job", "begin (local)", "startup", "work", "energy", "carbon"):
        table.add_column(column, justify="right")
    for segment in plan.segments:
        job = jobs[min(segment.index, len(jobs) - 1)]  # suspend mode: one job for every window
        table.add_row(str(segment.index), str(job["job_id"] or "–"), _local(segment.begin_s),
                      f"{segment.startup_s:g} s", f"{segment.work_from_s:g}–{segment.work_to_s:g} s",
                      format_si(segment.energy_j, "J"), format_si(segment.carbon_g, "g"))
    console.print(table)
    console.print(f"planned {format_si(plan.carbon_g, 'g')} CO2e against {format_si(plan.agnostic_carbon_g, 'g')} "
                  f"starting now without a break (saving {plan.saving_ratio:.1%}, restarts billed); checkpoints "
                  f"in {folder}", markup=False, highlight=False)
    if dry_run:
        for job in jobs:
            variables = [f"{k}={v}" for k, v in job.get("env", {}).items()]
            console.print(shlex.join(["env", *variables, *job["argv"]]) if variables else shlex.join(job["argv"]),
                          markup=False, highlight=False, soft_wrap=True)
    elif plan.mode == "suspend":
        console.print(f"suspend mode: keep `wattwise slurm agent {plan_id}` running (operator rights) to suspend "
                      "and resume the job at the planned windows", markup=False, highlight=False)
    else:
        console.print(f"optional: `wattwise slurm agent {plan_id}` re-reads the forecast before each segment and "
                      "re-plans when it moved", markup=False, highlight=False)


def _local(t_s: float | None) -> str:
    from datetime import datetime

    return "–" if t_s is None else datetime.fromtimestamp(t_s).strftime("%Y-%m-%d %H:%M:%S")


def _load(plan_id: int, db: str | None) -> tuple[Any, Any, Any, Any]:
    from wattwise.closedloop.plan import ChainPlan
    from wattwise.closedloop.plans import get_plan
    from wattwise.jobmodel import JobModel
    from wattwise.store import open_store

    store = open_store(db)
    row = get_plan(store, plan_id)
    return store, row, ChainPlan.from_dict(row.plan), JobModel.from_dict(row.model)


@slurm_app.command("status")
def status_command(
    plan_id: Annotated[int, typer.Argument(help="Plan id (from slurm submit --policy).")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The state of each segment of a plan; cancels segments left once the job has written `done`.

    Examples:\n
      wattwise slurm status 3\n
      wattwise slurm status 3 --json | jq '.segments[].state'
    """
    from wattwise.closedloop.plans import merge_records, set_status
    from wattwise.closedloop.report import known_records, reconcile

    store, row, plan, _ = _load(plan_id, db)
    records, jobs = known_records(row.jobs, dict(os.environ))
    if jobs != row.jobs:
        merge_records(store, plan_id, jobs)  # only the records: a concurrent re-plan's jobs are kept
    cancelled = reconcile(Path(row.checkpoint_dir), row.jobs, records, dict(os.environ))
    done = (Path(row.checkpoint_dir) / "done").exists()
    status = "done" if done else row.status
    if status != row.status:
        status = set_status(store, plan_id, status)
    segments = []
    for s in plan.segments:
        job_id = row.jobs[min(s.index, len(row.jobs) - 1)]["job_id"] if row.jobs else None
        record = records.get(job_id) if job_id is not None else None
        state = "CANCELLED (work done)" if job_id in cancelled else (record.state if record else "UNKNOWN")
        segments.append({"index": s.index, "job_id": job_id, "planned_start_s": s.begin_s,
                         "planned_end_s": s.end_s, "state": state,
                         "start_s": record.start_s if record else None, "end_s": record.end_s if record else None})
    if as_json:
        print(json.dumps({"plan_id": plan_id, "status": status, "segments": segments, "cancelled": cancelled}))
        return
    from rich.table import Table

    table = Table(title=f"plan {plan_id} ({plan.policy}): {status}")
    for column in ("segment", "job", "state", "planned start", "started", "planned end", "ended"):
        table.add_column(column, justify="right")
    for s in segments:
        table.add_row(str(s["index"]), str(s["job_id"]), s["state"], _local(s["planned_start_s"]),
                      _local(s["start_s"]), _local(s["planned_end_s"]), _local(s["end_s"]))
    console.print(table)


@slurm_app.command("report")
def report_command(
    plan_id: Annotated[int, typer.Argument(help="Plan id (from slurm submit --policy).")],
    carbon: Annotated[
        str | None, typer.Option("--carbon", "-c", help="Intensity actually observed (default: the planning data).")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Planned vs actual start, end, energy and carbon of each segment, with the restart cost paid at each resume.

    Energy is sacct's ConsumedEnergy where the cluster has an energy plugin, else the job model's energy for the
    time each segment really ran (marked ≈).

    Examples:\n
      wattwise slurm report 3\n
      wattwise slurm report 3 --carbon observed.csv --json
    """
    from wattwise.carbon.live_forecast import read_carbon
    from wattwise.closedloop.plans import merge_records
    from wattwise.closedloop.report import known_records, measured_segments, plan_report
    from wattwise.units import format_si

    store, row, plan, model = _load(plan_id, db)
    trace = read_carbon(carbon or plan.settings["carbon_source"])
    records, jobs = known_records(row.jobs, dict(os.environ))
    if jobs != row.jobs:
        merge_records(store, plan_id, jobs)  # only the records: a concurrent re-plan's jobs are kept
    report = plan_report(plan, model, jobs, records, trace, row.events, measured_segments(store, plan_id))
    report["plan_id"] = plan_id
    if as_json:
        print(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"plan {plan_id} ({plan.policy}): planned vs actual")
    for column in ("seg", "job", "state", "planned start", "start delay", "energy plan/model/actual",
                   "restart paid", "carbon plan/actual"):
        table.add_column(column, justify="right")
    for r in report["segments"]:
        mark = "≈" if r["estimated"] else ""
        delay = "–" if r["start_delay_s"] is None else f"{r['start_delay_s']:+.0f} s"
        table.add_row(str(r["index"]), str(r["job_id"]), r["state"], _local(r["planned_start_s"]), delay,
                      f"{format_si(r['planned_energy_j'], 'J')} / ≈{format_si(r.get('model_energy_j'), 'J')} / "
                      f"{mark}{format_si(r['energy_j'], 'J')} ({r['energy_source'] or '–'})",
                      f"{mark}{format_si(r['restart_energy_j'], 'J')}" if r["resume"] else "–",
                      f"{format_si(r['planned_carbon_g'], 'g')} / {mark}{format_si(r['carbon_g'], 'g')}")
    console.print(table)
    actual = report["actual"]
    mark = "≈" if actual["estimated"] else ""
    console.print(f"carbon: planned {format_si(report['planned']['carbon_g'], 'g')}, actual "
                  f"{mark}{format_si(actual['carbon_g'], 'g')}, carbon-agnostic start "
                  f"{format_si(report['agnostic']['carbon_g'], 'g')} ({report['carbon_source']})",
                  markup=False, highlight=False)


@slurm_app.command("agent")
def agent_command(
    plan_id: Annotated[int, typer.Argument(help="Plan id (from slurm submit --policy).")],
    interval: Annotated[str, typer.Option("--interval", help="How often to look at the plan.")] = "1s",
    replan_threshold: Annotated[
        float | None, typer.Option("--replan-threshold", help="Override the plan's re-plan threshold (fraction).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Follow a plan until it is done: re-plan a chain when the forecast moves, suspend and resume in suspend mode.

    Killed and started again, it carries on where the plan is (every action is stored with the plan).

    Examples:\n
      wattwise slurm agent 3\n
      nohup wattwise slurm agent 3 --interval 10s &
    """
    from wattwise.closedloop.agent import run_agent
    from wattwise.units import parse_duration_s

    store, _, plan, _ = _load(plan_id, db)
    threshold = replan_threshold if replan_threshold is not None else float(
        plan.settings.get("replan_threshold", 0.1))
    status = run_agent(store, plan_id, interval_s=parse_duration_s(interval), replan_threshold=threshold,
                       env=dict(os.environ))
    console.print(f"plan {plan_id}: {status}", markup=False, highlight=False)


@slurm_app.command("cancel")
def cancel_command(
    plan_id: Annotated[int, typer.Argument(help="Plan id (from slurm submit --policy).")],
    db: DbOption = None,
) -> None:
    """Cancel every segment of a plan that has not finished, and mark the plan cancelled.

    Examples:\n
      wattwise slurm cancel 3
    """
    from wattwise.closedloop.chain import cancel_jobs
    from wattwise.closedloop.plans import add_event, update_plan
    from wattwise.closedloop.report import job_records

    store, row, _, _ = _load(plan_id, db)
    ids = [j["job_id"] for j in row.jobs if j["job_id"] is not None]
    records = job_records(ids, dict(os.environ))
    live = [i for i in ids if i not in records or not records[i].finished]
    cancel_jobs(live, dict(os.environ))
    add_event(store, plan_id, "cancel", time.time(), jobs=live, reason="wattwise slurm cancel")
    update_plan(store, plan_id, status="cancelled")
    console.print(f"plan {plan_id}: cancelled job(s) {', '.join(map(str, live)) or 'none (all had ended)'}",
                  markup=False, highlight=False)
