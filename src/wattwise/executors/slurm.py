"""Carbon-aware submission to Slurm: plan the start, then `sbatch --begin=<time>` with the user's arguments.

Slurm holds the job (reason BeginTime) until the planned start; the decision is printed and returned so it can
be logged. Nothing here talks to Slurm except through its own commands (sbatch, scontrol), so it works with any
cluster the user can submit to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime

from wattwise.errors import WattwiseError
from wattwise.executors.planning import StartPlan

_SUBMITTED_RE = re.compile(r"Submitted batch job (\d+)|^(\d+)(?:;\S+)?$", re.MULTILINE)


@dataclass(frozen=True)
class Submission:
    job_id: int | None
    argv: list[str]
    begin: str
    plan: StartPlan


def slurm_begin(start_s: float) -> str:
    """sbatch's --begin takes the controller's local time as YYYY-MM-DDTHH:MM:SS."""
    return datetime.fromtimestamp(round(start_s)).strftime("%Y-%m-%dT%H:%M:%S")


def sbatch_argv(plan: StartPlan, sbatch_args: list[str], sbatch: str = "sbatch") -> list[str]:
    if any(a == "--begin" or a.startswith("--begin=") or a == "-b" for a in sbatch_args):
        raise WattwiseError("do not pass --begin: wattwise sets it from the carbon plan")
    return [sbatch, f"--begin={slurm_begin(plan.start_s)}", *sbatch_args]


def submit(
    plan: StartPlan,
    sbatch_args: list[str],
    *,
    dry_run: bool = False,
    sbatch: str = "sbatch",
    env: dict[str, str] | None = None,
) -> Submission:
    argv = sbatch_argv(plan, sbatch_args, sbatch)
    begin = argv[1].split("=", 1)[1]
    if dry_run:
        return Submission(None, argv, begin, plan)
    if shutil.which(argv[0]) is None:
        raise WattwiseError(f"{argv[0]} not found: is the Slurm client installed and on PATH?")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        raise WattwiseError("sbatch did not answer within 60 s: is slurmctld reachable?") from None
    if result.returncode != 0:
        raise WattwiseError(f"sbatch failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    match = _SUBMITTED_RE.search(result.stdout)
    if match is None:
        raise WattwiseError(f"could not read the job id from sbatch's output: {result.stdout.strip()!r}")
    return Submission(int(match.group(1) or match.group(2)), argv, begin, plan)
