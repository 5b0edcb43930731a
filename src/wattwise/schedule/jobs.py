"""Job traces for the scheduling test bed.

Two formats, recognised from the header line:

* GAIA: comma-separated ``arrival_time,length,cpus`` (seconds, seconds, count). Every job is a
  constant-power job drawing ``cpus × cpu_power_w`` (default 10 W per CPU), or follows ``default_model``
  (``--model JOB.json``) when one is given: its startup, then its work phases repeated to the job's length.
* Carbs: pipe-separated ``arrival_time|length|cpus|name|args``; ``name`` chooses the job model:

  ``constant``
      ``args`` is the power in watts (empty: as for GAIA rows).
  ``phases``
      ``args`` is a Python literal: a list of work phases, or a dict ``{'startup': [...], 'work': [...]}``;
      a phase is ``{'name': str, 'duration': s, 'power': W, 'is_checkpoint': bool}`` (``duration_s`` and
      ``power_w`` are accepted too).
  ``ml``
      ``args`` is a dict of the keyword parameters of :func:`wattwise.jobmodel.ml`: ``epochs``,
      ``start_s``, ``start_w``, ``train_s``, ``train_w``, ``evaluate_s``, ``evaluate_w``, ``save_s``,
      ``save_w`` and optionally ``load_s``, ``load_w``; startup = start (+ load), work = epochs × (train,
      evaluate, save as a checkpoint).
  ``mocked-constant-from-phases``
      ``args`` as for ``phases``; the job is then replaced by a constant-power job with the same duration
      and energy and no startup (:func:`wattwise.jobmodel.constant_from_phases`).

In both formats ``length`` is the job's work in seconds: the model's work phases are repeated cyclically
(the last one cut) to last ``length``; the startup phases come on top of it, once per (re)start. An optional
column ``waiting_time`` (seconds) gives a job its own waiting time instead of the global one. Times are in
seconds unless ``time_unit`` says ``min`` or ``h`` (some GAIA traces are in hours).
Args are read with :func:`ast.literal_eval`, never evaluated. Errors name the file and the line.
"""

from __future__ import annotations

import ast
import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wattwise.errors import JobTraceError as JobTraceError
from wattwise.jobmodel import JobModel, ModelError, constant, constant_from_phases, ml

DEFAULT_CPU_POWER_W = 10.0
#: units of the time columns of a job trace (GAIA's traces differ: PAI in seconds, Azure in hours)
TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}
JOB_KINDS = ("constant", "phases", "ml", "mocked-constant-from-phases")
_REQUIRED = ("arrival_time", "length", "cpus")
_KNOWN = (*_REQUIRED, "name", "args", "waiting_time")


@dataclass(frozen=True, eq=False)
class Job:
    """One job of a trace. ``model`` is complete: startup phases + work phases lasting ``length_s``."""

    id: int
    arrival_s: float
    length_s: float
    cpus: int
    model: JobModel
    kind: str = "constant"
    wait_s: float | None = None

    @property
    def startup_s(self) -> float:
        return self.model.startup_s


def make_job(job_id: int, arrival_s: float, length_s: float, cpus: int = 1, *, base: JobModel | None = None,
             power_w: float | None = None, kind: str = "constant", wait_s: float | None = None,
             averaged: bool = False) -> Job:
    """A job whose model is ``base`` tiled to ``length_s`` (or constant ``power_w``, default 10 W per CPU);
    ``averaged`` replaces it by its constant-power average without startup."""
    if base is None:
        model = constant(length_s, power_w if power_w is not None else cpus * DEFAULT_CPU_POWER_W)
    else:
        model = base.tiled(length_s)
    if averaged and (model.startup or len(model.work) > 1):
        model = constant_from_phases(model)
        kind = "mocked-constant-from-phases" if kind != "constant" else kind
    return Job(job_id, arrival_s, length_s, cpus, model, kind, wait_s)


def averaged_job(job: Job) -> Job:
    """The job with its model replaced by the constant-power average (no startup)."""
    if not job.model.startup and len(job.model.work) <= 1:
        return job
    return replace(job, model=constant_from_phases(job.model), kind="mocked-constant-from-phases")


def read_jobs(path: str | Path, *, default_model: JobModel | None = None,
              cpu_power_w: float = DEFAULT_CPU_POWER_W, averaged: bool = False, time_unit: str = "s") -> list[Job]:
    """Read a GAIA or Carbs job trace (see the module doc). Job ids are the 0-based data row numbers.
    ``time_unit`` (s, min, h) is the unit of arrival_time, length and waiting_time in the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobTraceError(f"{path}: job trace file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobTraceError(f"{path}: cannot read job trace: {exc}") from None
    return parse_jobs(text, source=str(path), default_model=default_model, cpu_power_w=cpu_power_w,
                      averaged=averaged, time_unit=time_unit)


def parse_jobs(text: str, *, source: str = "<jobs>", default_model: JobModel | None = None,
               cpu_power_w: float = DEFAULT_CPU_POWER_W, averaged: bool = False, time_unit: str = "s") -> list[Job]:
    if time_unit not in TIME_UNITS:
        raise JobTraceError(f"unknown time unit {time_unit!r} for job traces; allowed: {', '.join(TIME_UNITS)}")
    scale = TIME_UNITS[time_unit]
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise JobTraceError(f"{source}: job trace is empty")
    header_line = lines[header_index].lstrip("\ufeff")
    delimiter = "|" if "|" in header_line else ","
    header = [h.strip() for h in header_line.split(delimiter)]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise JobTraceError(
            f"{source}:{header_index + 1}: header {header_line.strip()!r} lacks {', '.join(missing)}; expected "
            "GAIA 'arrival_time,length,cpus' or Carbs 'arrival_time|length|cpus|name|args' "
            "(optional column: waiting_time)"
        )
    unknown = [c for c in header if c not in _KNOWN]
    if unknown:
        raise JobTraceError(f"{source}:{header_index + 1}: unknown column(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(_KNOWN)}")
    col = {name: header.index(name) for name in header}
    jobs: list[Job] = []
    for offset, line in enumerate(lines[header_index + 1:]):
        number = header_index + 2 + offset
        if not line.strip():
            continue
        cells = line.split("|", len(header) - 1) if delimiter == "|" else next(csv.reader(io.StringIO(line)))
        if len(cells) != len(header):
            raise JobTraceError(f"{source}:{number}: expected {len(header)} fields ({delimiter.join(header)}), "
                                f"got {len(cells)}")
        where = f"{source}:{number}"
        arrival = _number(cells[col["arrival_time"]], where, "arrival_time", minimum=0.0) * scale
        length = _number(cells[col["length"]], where, "length", minimum=0.0, strict=True) * scale
        cpus_value = _number(cells[col["cpus"]], where, "cpus", minimum=1.0)
        if cpus_value != int(cpus_value):
            raise JobTraceError(f"{where}: cpus must be a whole number ≥ 1, got {cells[col['cpus']].strip()!r}")
        cpus = int(cpus_value)
        wait = None
        if "waiting_time" in col and cells[col["waiting_time"]].strip():
            wait = _number(cells[col["waiting_time"]], where, "waiting_time", minimum=0.0) * scale
        name = cells[col["name"]].strip() if "name" in col else ""
        args = cells[col["args"]].strip() if "args" in col else ""
        try:
            job = _job_from_row(len(jobs), arrival, length, cpus, wait, name, args, where, default_model,
                                cpu_power_w)
        except ModelError as exc:
            raise JobTraceError(f"{where}: {exc}") from None
        jobs.append(averaged_job(job) if averaged else job)
    if not jobs:
        raise JobTraceError(f"{source}: job trace has a header but no jobs")
    return jobs


def _job_from_row(job_id: int, arrival: float, length: float, cpus: int, wait: float | None, name: str,
                  args: str, where: str, default_model: JobModel | None, cpu_power_w: float) -> Job:
    if not name:
        if args:
            raise JobTraceError(f"{where}: args given without a job model name")
        if default_model is not None:
            return make_job(job_id, arrival, length, cpus, base=default_model, kind="model", wait_s=wait)
        return make_job(job_id, arrival, length, cpus, power_w=cpus * cpu_power_w, wait_s=wait)
    if name not in JOB_KINDS:
        raise JobTraceError(f"{where}: unknown job model name {name!r}; allowed: {', '.join(JOB_KINDS)}")
    value = _literal(args, where) if args else None
    if name == "constant":
        if value is None:
            power = cpus * cpu_power_w
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
                and value >= 0:
            power = float(value)
        else:
            raise JobTraceError(f"{where}: args of a constant job must be its power in W (a number ≥ 0), "
                                f"got {args!r}")
        return make_job(job_id, arrival, length, cpus, power_w=power, wait_s=wait)
    if value is None:
        raise JobTraceError(f"{where}: a {name!r} job needs args (see `wattwise simulate --help`)")
    if name == "ml":
        if not isinstance(value, Mapping):
            raise JobTraceError(f"{where}: args of an ml job must be a dict of ml() parameters (epochs, start_s, "
                                f"start_w, train_s, train_w, evaluate_s, evaluate_w, save_s, save_w[, load_s, "
                                f"load_w]), got {type(value).__name__}")
        try:
            base = ml(**dict(value))
        except TypeError as exc:
            raise JobTraceError(f"{where}: args of an ml job: {exc}") from None
        return make_job(job_id, arrival, length, cpus, base=base, kind="ml", wait_s=wait)
    if isinstance(value, list):
        data: Any = {"work": value}
    elif isinstance(value, Mapping):
        data = value
    else:
        raise JobTraceError(f"{where}: args of a {name!r} job must be a list of work phases or a dict with "
                            f"'startup' and 'work' lists, got {type(value).__name__}")
    base = JobModel.from_dict(data, source="args")
    if base.work_s <= 0:
        raise JobTraceError(f"{where}: the work phases of a {name!r} job last 0 s")
    return make_job(job_id, arrival, length, cpus, base=base, kind=name, wait_s=wait,
                    averaged=name == "mocked-constant-from-phases")


def _literal(text: str, where: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise JobTraceError(f"{where}: args {_short(text)!r} is not a Python literal: {exc}") from None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(cell: str, where: str, column: str, minimum: float | None, strict: bool = False) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        what = "is empty" if not text else f"is not a number: {text!r}"
        raise JobTraceError(f"{where}: {column} {what}") from None
    if not math.isfinite(value):
        raise JobTraceError(f"{where}: {column} must be finite, got {text!r}")
    if minimum is not None and (value < minimum or (strict and value <= minimum)):
        relation = ">" if strict else "≥"
        raise JobTraceError(f"{where}: {column} must be {relation} {minimum:g}, got {text!r}")
    return value
