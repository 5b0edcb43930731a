"""Execute a plan on Slurm as a chain: one batch job per segment (chain mode, no operator rights needed).

Segment k is `sbatch --begin=<planned start> --time=<startup + work + lead> --signal=B:USR1@<lead>` with the
job's role in its environment; segment k+1 `--dependency=afterany:<k>`. The job's contract (docs/scheduling.md,
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

Nothing is left half-submitted: if one `sbatch` fails, the segments already submitted are cancelled.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from wattwise.closedloop.plan import ChainPlan
from wattwise.errors import WattwiseError

__all__ = ["DONE_FILE", "check_sbatch_args", "segment_argv", "slurm_time", "submit_chain", "submit_suspendable"]

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


def check_sbatch_args(sbatch_args: Sequence[str]) -> Path | None:
    """Refuse options wattwise sets, on the command line or as `#SBATCH` lines of the script. Returns the script."""
    if not sbatch_args:
        raise WattwiseError("give the batch script after `--` (and any sbatch options before it)")
    on_line = _reserved_in([a for a in sbatch_args if a.startswith("-")])
    if on_line:
        raise WattwiseError(f"do not pass {', '.join(sorted(set(on_line)))}: wattwise sets them for every segment "
                            "of the plan; nothing was submitted")
    script = next((Path(a) for a in sbatch_args if not a.startswith("-") and Path(a).is_file()), None)
    if script is None and "--wrap" not in " ".join(sbatch_args):
        raise WattwiseError(f"no batch script among {' '.join(sbatch_args)!r}: give an existing file (or --wrap)")
    if script is not None:
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


def segment_argv(plan: ChainPlan, index: int, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                 previous_job: int | None, lead_s: float, name: str, measure_db: str | None = None) -> list[str]:
    segment = plan.segments[index]
    env = {
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
    argv = [
        "sbatch", "--parsable",
        f"--begin={slurm_begin(segment.begin_s)}",
        f"--time={slurm_time(segment.startup_s + segment.work_s + lead_s + SIGNAL_SLACK_S)}",
        f"--signal=B:USR1@{max(1, round(lead_s))}",
        f"--job-name={name}-{index}",
        "--export=ALL," + ",".join(f"{k}={v}" for k, v in env.items()),
    ]
    if previous_job is not None:
        argv.append(f"--dependency=afterany:{previous_job}")
    return [*argv, *sbatch_args]


def _measure_env(measure_db: str | None) -> dict[str, str]:
    """With `--measure`: each segment runs under `wattwise measure`, storing into the plan's database."""
    return {"WATTWISE_MEASURE": "1", "WATTWISE_PLAN_DB": measure_db} if measure_db else {}


def submit_chain(plan: ChainPlan, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                 lead_s: float = 30.0, name: str = "wattwise", env: dict[str, str] | None = None,
                 dry_run: bool = False, first_index: int = 0, previous_job: int | None = None,
                 earlier_jobs: Sequence[int] = (), measure_db: str | None = None) -> list[dict[str, Any]]:
    """Submit the segments from `first_index` on (after `previous_job`, when a chain is re-planned); returns
    [{index, job_id, argv}]. All or nothing. `chain.json` lists `earlier_jobs` and the new ones."""
    check_sbatch_args(sbatch_args)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    submitted: list[dict[str, Any]] = []
    previous = previous_job
    for index in range(first_index, len(plan.segments)):
        argv = segment_argv(plan, index, sbatch_args, plan_id=plan_id, checkpoint_dir=checkpoint_dir,
                            previous_job=previous, lead_s=lead_s, name=name, measure_db=measure_db)
        if dry_run:
            submitted.append({"index": index, "job_id": None, "argv": argv})
            continue
        previous = _sbatch(argv, env, index, [s["job_id"] for s in submitted])
        submitted.append({"index": index, "job_id": previous, "argv": argv})
    if not dry_run:
        (checkpoint_dir / CHAIN_FILE).write_text(json.dumps({
            "plan_id": plan_id, "jobs": [*earlier_jobs, *(s["job_id"] for s in submitted)]}) + "\n")
    return submitted


def submit_suspendable(plan: ChainPlan, sbatch_args: Sequence[str], *, plan_id: int, checkpoint_dir: Path,
                       lead_s: float = 30.0, name: str = "wattwise", env: dict[str, str] | None = None,
                       dry_run: bool = False, measure_db: str | None = None) -> list[dict[str, Any]]:
    """Suspend mode: one job from the first window to the deadline; the agent suspends and resumes it."""
    check_sbatch_args(sbatch_args)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
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
            "--export=ALL," + ",".join(f"{k}={v}" for k, v in variables.items()), *sbatch_args]
    if dry_run:
        return [{"index": 0, "job_id": None, "argv": argv}]
    job_id = _sbatch(argv, env, 0, [])
    (checkpoint_dir / CHAIN_FILE).write_text(json.dumps({"plan_id": plan_id, "jobs": [job_id]}) + "\n")
    return [{"index": 0, "job_id": job_id, "argv": argv}]


def _sbatch(argv: list[str], env: dict[str, str] | None, index: int, submitted: list[int]) -> int:
    """Run one sbatch; on failure cancel what this submission already made and raise."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        cancel_jobs(submitted, env)
        raise WattwiseError(f"sbatch could not run ({exc}); the {len(submitted)} segment(s) already submitted "
                            "were cancelled") from None
    match = _ID_RE.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        cancel_jobs(submitted, env)
        raise WattwiseError(f"sbatch failed for segment {index} ({done.returncode}): "
                            f"{done.stderr.strip() or done.stdout.strip()}; the {len(submitted)} segment(s) "
                            "already submitted were cancelled")
    return int(match.group(1))


def cancel_jobs(job_ids: Sequence[int | None], env: dict[str, str] | None = None) -> None:
    ids = [str(j) for j in job_ids if j is not None]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60, env=env, check=False)
