"""Execute a plan on Slurm as a chain: one batch job per segment (chain mode, no operator rights needed).

Segment k is `sbatch --begin=<planned start> --time=<startup + work + lead> --signal=B:USR1@<lead>` with the
job's role in its environment (the `WATTWISE_*` variables are passed in the environment of the `sbatch` process,
with `--export=ALL`: never on its command line, where a comma would split them and a database password would be
visible in `ps` and Slurm's SubmitLine); segment k+1 `--dependency=afterany:<k>`. The last segment's limit reaches
from its planned start to the plan's deadline plus its startup and work, so that it can finish whatever work is
left even when it starts late. The job's contract (docs/scheduling.md,
"executing a plan"; examples/slurm-checkpoint/job.py):

- `WATTWISE_PLAN_ID`, `WATTWISE_SEGMENT` (0-based), `WATTWISE_SEGMENTS`, `WATTWISE_RESUME` (1 when it must resume
  from its checkpoint), `WATTWISE_CHECKPOINT_DIR` (shared by the segments), `WATTWISE_SEGMENT_END` (the
  planned end, Unix seconds), `WATTWISE_WORK_S` (the seconds of work planned for this segment: do that much,
  checkpoint and exit — a segment that starts late still does its share) and `WATTWISE_CHAIN_FILE` (the
  chain's job ids). The last segment finishes whatever work is left.
- On `USR1` (Slurm's warning before the time limit) or `TERM`: checkpoint and exit.
- When the work is complete: create `done` in the checkpoint folder, then exit 0; a later segment that finds
  `done` exits at once, and the rest of the chain is cancelled (by the job with `scancel`, or by
  `wattwise slurm status`).

Nothing is left half-submitted: if one `sbatch` fails, or the submission is interrupted (Ctrl-C, SIGTERM, writing
`chain.json` failing), the segments already submitted are cancelled before the error is raised again.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from wattwise.closedloop.plan import ChainPlan
from wattwise.errors import WattwiseError

__all__ = ["DONE_FILE", "absolute_db_url", "check_sbatch_args", "segment_argv", "segment_time_s",
           "segment_variables", "slurm_time", "split_sbatch_args", "submit_chain", "submit_suspendable"]

DONE_FILE = "done"
CHAIN_FILE = "chain.json"
#: options wattwise sets for every segment: the user may not set them, on the command line or in the script
_RESERVED = {
    "--begin": "-b", "--time": "-t", "--dependency": "-d", "--signal": None, "--export": None, "--parsable": None,
}
_ID_RE = re.compile(r"^(\d+)")
#: Slurm may send --signal's warning up to 60 s before the time it was asked for; the limit leaves that much
#: more, so that no segment is told to checkpoint before its planned work is done
SIGNAL_SLACK_S = 60.0


def slurm_begin(t_s: float) -> str:
    """sbatch's --begin takes the controller's local time as YYYY-MM-DDTHH:MM:SS."""
    return datetime.fromtimestamp(round(t_s)).strftime("%Y-%m-%dT%H:%M:%S")


def slurm_time(seconds: float) -> str:
    """A --time limit in whole minutes (Slurm's resolution), rounded up: MM or D-HH:MM:SS."""
    minutes = max(1, math.ceil(seconds / 60 - 1e-9))
    if minutes < 60 * 24:
        return str(minutes)
    days, rest = divmod(minutes, 60 * 24)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _reserved_in(tokens: Sequence[str]) -> list[str]:
    found = []
    for token in tokens:
        for long, short in _RESERVED.items():
            if token == long or token.startswith(long + "=") or (short and (token == short or (
                    token.startswith(short) and len(token) > 2 and not token.startswith("--")))):
                found.append(long)
    return found


#: sbatch's short options that take a value (`-o out.log` or `-oout.log`)
_SHORT_WITH_VALUE = set("ABbCcDdeFGiJLMmNnopqStwx")
#: sbatch's long options that take no value, or an optional one only as `--opt=value`; every other long option
#: takes the next token as its value when written without `=`
_LONG_FLAGS = {
    "--contiguous", "--exclusive", "--get-user-env", "--help", "--hold", "--ignore-pbs", "--no-kill",
    "--no-requeue", "--nice", "--overcommit", "--oversubscribe", "--parsable", "--propagate", "--quiet",
    "--reboot", "--requeue", "--spread-job", "--test-only", "--usage", "--use-min-nodes", "--verbose",
    "--version", "--wait", "--x11",
}


def split_sbatch_args(sbatch_args: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """sbatch's own option tokens (without the values given as separate tokens), the script (the first positional
    argument) and the script's arguments, parsed with sbatch's option grammar."""
    options: list[str] = []
    i = 0
    while i < len(sbatch_args):
        token = sbatch_args[i]
        if token == "--":
            return options, (sbatch_args[i + 1] if i + 1 < len(sbatch_args) else None), list(sbatch_args[i + 2:])
        if token.startswith("--"):
            options.append(token)
            if "=" not in token and token not in _LONG_FLAGS:
                i += 1  # its value
        elif token.startswith("-") and len(token) > 1:
            options.append(token)
            for j, letter in enumerate(token[1:], 1):  # combined flags (-vQ); a value letter takes the rest
                if letter in _SHORT_WITH_VALUE:
                    if j == len(token) - 1:
                        i += 1  # its value
                    break
        else:
            return options, token, list(sbatch_args[i + 1:])
        i += 1
    return options, None, []


def check_sbatch_args(sbatch_args: Sequence[str]) -> Path | None:
    """Refuse options wattwise sets, on the command line or as `#SBATCH` lines of the script. Returns the script.

    sbatch's options are read up to the first positional argument, the script; what follows it are the script's
    own arguments and are not sbatch's business."""
    if not sbatch_args:
        raise WattwiseError("give the batch script after `--` (and any sbatch options before it)")
    options, script_arg, _ = split_sbatch_args(sbatch_args)
    on_line = _reserved_in(options)
    if on_line:
        raise WattwiseError(f"do not pass {', '.join(sorted(set(on_line)))}: wattwise sets them for every segment "
                            "of the plan; nothing was submitted")
    wrap = any(o == "--wrap" or o.startswith("--wrap=") for o in options)
    if script_arg is None:
        if wrap:
            return None
        raise WattwiseError(f"no batch script among {' '.join(sbatch_args)!r}: give an existing file (or --wrap)")
    script = Path(script_arg)
    if wrap:
        return None
    if not script.is_file():
        raise WattwiseError(f"the batch script {script_arg!r} is not a file (sbatch's options end at the first "
                            "argument that is not an option or an option's value)")
    for number, line in enumerate(script.read_text(errors="replace").splitlines(), 1):
        if not line.startswith("#SBATCH"):
            if line.strip() and not line.startswith("#"):
                break  # sbatch reads directives only before the first command
            continue
        found = _reserved_in(shlex.split(line[len("#SBATCH"):], comments=True))
        if found:
            raise WattwiseError(f"{script}:{number}: the script sets {', '.join(sorted(set(found)))}, which "
                                "wattwise sets for every segment of the plan: remove the line; nothing was "
                                "submitted")
    return script


def segment_variables(plan: ChainPlan, index: int, *, plan_id: int, checkpoint_dir: Path,
                      measure_db: str | None = None) -> dict[str, str]:
    """The job's role in its environment (docs/scheduling.md, the job's contract)."""
    segment = plan.segments[index]
    return {
        "WATTWISE_PLAN_ID": str(plan_id),
        "WATTWISE_SEGMENT": str(index),
        "WATTWISE_SEGMENTS": str(len(plan.segments)),
        "WATTWISE_RESUME": "1" if segment.resume else "0",
        "WATTWISE_CHECKPOINT_DIR": str(checkpoint_dir),
        "WATTWISE_SEGMENT_END": f"{segment.end_s:.0f}",
        "WATTWISE_WORK_S": f"{segment.work_s:g}",
        "WATTWISE_CHAIN_FILE": str(checkpoint_dir / CHAIN_FILE),
        **_measure_env(measure_db),
    }


def segment_time_s(plan: ChainPlan, index: int, lead_s: float) -> float:
    """A segment's time limit: its startup and work, the lead and Slurm's signal slack; the last segment's reaches
    to the plan's deadline plus its startup and work (it finishes whatever work is left, even when it starts
    late)."""
    segment = plan.segments[index]
    run_s = segment.startup_s + segment.work_s
    if index == len(plan.segments) - 1:
        run_s += max(0.0, plan.deadline_s - segment.begin_s)
    return run_s + lead_s + SIGNAL_SLACK_S


def segment_argv(plan: ChainPlan, index: int, sbatch_args: Sequence[str], *, previous_job: int | None,
                 lead_s: float, name: str, hold: bool = False) -> list[str]:
    """The sbatch command of one segment; its WATTWISE_* variables go in sbatch's environment (`--export=ALL`)."""
    segment = plan.segments[index]
    argv = [
        "sbatch", "--parsable",
        f"--begin={slurm_begin(segment.begin_s)}",
        f"--time={slurm_time(segment_time_s(plan, index, lead_s))}",
        f"--signal=B:USR1@{max(1, round(lead_s))}",
        f"--job-name={name}-{index}",
        "--export=ALL",
    ]
    if hold:
        argv.append("--hold")
    if previous_job is not None:
        argv.append(f"--dependency=afterany:{previous_job}")
    return [*argv, *sbatch_args]


def absolute_db_url(url: str) -> str:
    """A SQLite URL with an absolute path (a segment runs in another folder); other URLs as they are."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        path = url[len(prefix):]
        query = ""
        if "?" in path:
            path, query = path.split("?", 1)
            query = "?" + query
        if path and path != ":memory:":
            return prefix + str(Path(path).resolve()) + query
    return url


def _measure_env(measure_db: str | None) -> dict[str, str]:
    """With `--measure`: each segment runs under `wattwise measure`, storing into the plan's database."""
    return {"WATTWISE_MEASURE": "1", "WATTWISE_PLAN_DB": absolute_db_url(measure_db)} if measure_db else {}


def _shown(variables: dict[str, str]) -> dict[str, str]:
    """The variables as kept with the plan and printed: never the database URL (it may hold a password)."""
    return {k: ("…" if k == "WATTWISE_PLAN_DB" else v) for k, v in variables.items()}


def submit_chain(plan: ChainPlan, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                 lead_s: float = 30.0, name: str = "wattwise", env: dict[str, str] | None = None,
                 dry_run: bool = False, first_index: int = 0, previous_job: int | None = None,
                 earlier_jobs: Sequence[int] = (), measure_db: str | None = None,
                 hold: bool = False) -> list[dict[str, Any]]:
    """Submit the segments from `first_index` on (after `previous_job`, when a chain is re-planned); returns
    [{index, job_id, argv, env}]. All or nothing: on any failure or interruption the segments already submitted
    are cancelled and the exception raised again. `chain.json` lists `earlier_jobs` and the new ones. `hold`:
    submitted held (`--hold`), for the caller to release."""
    check_sbatch_args(sbatch_args)
    with _term_raises():
        return _submit_segments(plan, sbatch_args, plan_id=plan_id, checkpoint_dir=checkpoint_dir, lead_s=lead_s,
                                name=name, env=env, dry_run=dry_run, first_index=first_index, previous=previous_job,
                                earlier_jobs=earlier_jobs, measure_db=measure_db, hold=hold)


@contextmanager
def _term_raises() -> Iterator[None]:
    """While submitting, SIGTERM raises SystemExit (as Ctrl-C raises KeyboardInterrupt), so that the `except
    BaseException` of a submission cancels what it submitted. Only in the main thread (where handlers live)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _submit_segments(plan: ChainPlan, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                     lead_s: float, name: str, env: dict[str, str] | None, dry_run: bool, first_index: int,
                     previous: int | None, earlier_jobs: Sequence[int], measure_db: str | None,
                     hold: bool) -> list[dict[str, Any]]:
    submitted: list[dict[str, Any]] = []
    try:
        if not dry_run:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
        for index in range(first_index, len(plan.segments)):
            argv = segment_argv(plan, index, sbatch_args, previous_job=previous, lead_s=lead_s, name=name, hold=hold)
            variables = segment_variables(plan, index, plan_id=plan_id, checkpoint_dir=checkpoint_dir,
                                          measure_db=measure_db)
            if dry_run:
                submitted.append({"index": index, "job_id": None, "argv": argv, "env": _shown(variables)})
                continue
            previous = _sbatch(argv, _environment(env, variables), index, len(submitted))
            submitted.append({"index": index, "job_id": previous, "argv": argv, "env": _shown(variables)})
        if not dry_run:
            (checkpoint_dir / CHAIN_FILE).write_text(json.dumps({
                "plan_id": plan_id, "jobs": [*earlier_jobs, *(s["job_id"] for s in submitted)]}) + "\n")
    except BaseException:
        cancel_jobs([s["job_id"] for s in submitted], env)
        raise
    return submitted


def submit_suspendable(plan: ChainPlan, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                       lead_s: float = 30.0, name: str = "wattwise", env: dict[str, str] | None = None,
                       dry_run: bool = False, measure_db: str | None = None) -> list[dict[str, Any]]:
    """Suspend mode: one job from the first window to the deadline; the agent suspends and resumes it."""
    check_sbatch_args(sbatch_args)
    first = plan.segments[0]
    variables = {
        "WATTWISE_PLAN_ID": str(plan_id), "WATTWISE_SEGMENT": "0", "WATTWISE_SEGMENTS": "1", "WATTWISE_RESUME": "0",
        "WATTWISE_CHECKPOINT_DIR": str(checkpoint_dir), "WATTWISE_SEGMENT_END": f"{plan.deadline_s:.0f}",
        "WATTWISE_WORK_S": f"{sum(s.work_s for s in plan.segments):g}",
        "WATTWISE_CHAIN_FILE": str(checkpoint_dir / CHAIN_FILE),
        **_measure_env(measure_db),
    }
    argv = ["sbatch", "--parsable", f"--begin={slurm_begin(first.begin_s)}",
            f"--time={slurm_time(plan.deadline_s - first.begin_s + lead_s + SIGNAL_SLACK_S)}", f"--job-name={name}",
            "--export=ALL", *sbatch_args]
    if dry_run:
        return [{"index": 0, "job_id": None, "argv": argv, "env": _shown(variables)}]
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    job_id: int | None = None
    with _term_raises():
        try:
            job_id = _sbatch(argv, _environment(env, variables), 0, 0)
            (checkpoint_dir / CHAIN_FILE).write_text(json.dumps({"plan_id": plan_id, "jobs": [job_id]}) + "\n")
        except BaseException:
            cancel_jobs([job_id], env)
            raise
    return [{"index": 0, "job_id": job_id, "argv": argv, "env": _shown(variables)}]


def _environment(env: dict[str, str] | None, variables: dict[str, str]) -> dict[str, str]:
    """sbatch's environment: the caller's (or this process's) with the segment's WATTWISE_* variables."""
    return {**(os.environ if env is None else env), **variables}


def _sbatch(argv: list[str], env: dict[str, str], index: int, n_submitted: int) -> int:
    """Run one sbatch; raise on failure (the caller cancels what it already submitted)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WattwiseError(f"sbatch could not run ({exc}); the {n_submitted} segment(s) already submitted "
                            "were cancelled") from None
    match = _ID_RE.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        raise WattwiseError(f"sbatch failed for segment {index} ({done.returncode}): "
                            f"{done.stderr.strip() or done.stdout.strip()}; the {n_submitted} segment(s) "
                            "already submitted were cancelled")
    return int(match.group(1))


def cancel_jobs(job_ids: Sequence[int | None], env: dict[str, str] | None = None) -> None:
    ids = [str(j) for j in job_ids if j is not None]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60, env=env, check=False)


def release_jobs(job_ids: Sequence[int | None], env: dict[str, str] | None = None) -> None:
    """Release held jobs (`scontrol release`; a job not held is left as it is, one that ended or that Slurm has
    forgotten needs nothing); raises when Slurm refuses another."""
    failed = []
    for job_id in (j for j in job_ids if j is not None):
        done = subprocess.run(["scontrol", "release", str(job_id)], capture_output=True, text=True, timeout=60,
                              env=env, check=False)
        message = (done.stderr.strip() or done.stdout.strip())
        if done.returncode != 0 and "already finished" not in message and "Invalid job id" not in message:
            failed.append(f"{job_id}: {message}")
    if failed:
        raise WattwiseError(f"scontrol release failed for {'; '.join(failed)}")
