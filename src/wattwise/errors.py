"""Every error wattwise raises on purpose, in one hierarchy.

Errors meant for the person at the terminal derive from `WattwiseError`: the CLI prints their message (which
names the file, line, key, value and what is allowed) without a traceback and exits 2. Each is defined here
and re-exported by the module that raises it, so both `wattwise.errors.TraceError` and
`wattwise.carbon.trace.TraceError` name the same class.

    Exception
     └── WattwiseError ............... a problem the user can fix
          ├── ConfigError ............ a setting or an argument has a value that cannot be used
          ├── DatabaseError .......... store: the database cannot be read or written
          ├── ProviderError .......... providers: a provider cannot open or read its source
          │    └── DcmiUnavailable ... providers.ipmi: the BMC gives no DCMI power readings
          ├── TraceError ............. carbon.trace: a carbon-intensity trace file or query is not valid
          ├── IntensityError ......... carbon.live: a live source gives no intensity now
          ├── ScenarioError .......... measure.scenario: a usage scenario is not valid (every problem, with lines)
          ├── EngineError ............ measure.scenario.engine: a container engine command failed
          ├── StepFailed ............. measure.scenario: a flow step or service command failed
          ├── RunCancelled ........... measure.scenario: the caller cancelled the run
          ├── ExperimentError ........ jobmodel: a campaign cannot run or a recording went wrong
          ├── ModelError ............. jobmodel: a job model file or value is not valid
          ├── FitError ............... jobmodel.fit: the runs cannot be fitted together
          ├── PhaseMapError .......... jobmodel.phasemap: a phase map file is not valid
          ├── RunError ............... jobmodel.pinpoint: a measured run cannot be used
          ├── JobTraceError .......... schedule.jobs: a job trace file is not valid
          ├── Infeasible ............. schedule.solvers: no schedule fits the job's window
          ├── PromQLError ............ monitor.promql: the access guard cannot read the expression
          ├── AccessDenied ........... monitor.promql: the expression selects series the user may not read
          └── PrometheusError ........ monitor.aggregate: Prometheus is unreachable or rejected a query

Not user errors, and so not here: `measure.scenario.runner.ScenarioInterrupted` (a `KeyboardInterrupt`: Ctrl-C
during a scenario, after cleanup) and the parsers' internal signals (`yamlguard.LimitExceeded`, a
`yaml.YAMLError` turned into a `ScenarioError` by the loader).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "AccessDenied",
    "ConfigError",
    "DatabaseError",
    "DcmiUnavailable",
    "EngineError",
    "ExperimentError",
    "FitError",
    "Infeasible",
    "IntensityError",
    "JobTraceError",
    "ModelError",
    "PhaseMapError",
    "PromQLError",
    "PrometheusError",
    "ProviderError",
    "RunCancelled",
    "RunError",
    "ScenarioError",
    "StepFailed",
    "TraceError",
    "WattwiseError",
]


class WattwiseError(Exception):
    """A problem the user can fix (bad input, missing file, unavailable provider)."""


class ConfigError(WattwiseError):
    """A setting or an argument has a value that cannot be used."""


# -- store, providers, carbon -----------------------------------------------------------------------------
class DatabaseError(WattwiseError):
    """The database cannot be read or written (read-only, full, unreachable)."""


class ProviderError(WattwiseError):
    """A provider could not open or read its source."""


class DcmiUnavailable(ProviderError):
    """The BMC does not support, or has not activated, DCMI power readings."""


class TraceError(WattwiseError):
    """A carbon-intensity trace file or query is not valid."""


class IntensityError(WattwiseError):
    """A source could not give an intensity now (network, HTTP status, unexpected response)."""


# -- measure: usage scenarios -----------------------------------------------------------------------------
class _Where(Protocol):
    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...


class _Finding(Protocol):
    """What `ScenarioError` needs of a `measure.scenario.problems.Problem`."""

    @property
    def location(self) -> _Where | None: ...


class ScenarioError(WattwiseError):
    """A scenario file that cannot be used; `problems` lists every finding with its line and key path."""

    def __init__(self, file: str, problems: Sequence[_Finding]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.location.file, p.location.line) if p.location else ("", 0))
        count = len(self.problems)
        head = f"{file} is not a valid usage scenario ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))

    @property
    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class EngineError(WattwiseError):
    """A container engine command failed; the message carries its output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class StepFailed(WattwiseError):
    """A flow step or a service command failed; `output` and `exit_code` are the command's."""

    def __init__(self, message: str, output: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.output = output
        self.exit_code = exit_code


class RunCancelled(WattwiseError):
    """The caller set RunOptions.cancel."""


# -- jobmodel ---------------------------------------------------------------------------------------------
class ExperimentError(WattwiseError):
    """A campaign cannot run or a recording went wrong."""


class ModelError(WattwiseError):
    """A job model (file or value) is not valid; the message names the file, the key path and what is
    allowed."""


class FitError(WattwiseError):
    """The runs cannot be fitted together."""


class PhaseMapError(WattwiseError):
    """A phase map file is not valid; the message names the file, the key path and what is allowed."""


class RunError(WattwiseError):
    """A measured run (folder or database run) cannot be used; the message names the file and line."""


# -- schedule ---------------------------------------------------------------------------------------------
class JobTraceError(WattwiseError):
    """A job trace file is not valid; the message names the file and the line."""


class Infeasible(WattwiseError):
    """No schedule fits the job's window (or the free capacity in it)."""


# -- monitor ----------------------------------------------------------------------------------------------
class PromQLError(WattwiseError):
    """The expression cannot be read by the guard."""


class AccessDenied(WattwiseError):
    """The expression selects series the user may not read."""


class PrometheusError(WattwiseError):
    """Prometheus could not be reached or rejected a query."""
