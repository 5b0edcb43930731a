"""One measurement session: the machine providers, a stored run, the sampler, unit cgroups, closing the run and
its summary. Every runner that measures work on this machine goes through it (`wattwise measure`, scenarios,
job-model experiments, cluster jobs).

    session = MeasurementSession(store, SessionOptions(name="build", command=argv))
    run_id = session.open()              # providers chosen, run created (owner recorded), nothing sampled yet
    t0 = session.start()                 # sampling starts; a reading of every provider at t0
    ...
    t1 = session.boundary()              # a reading of every provider now: use it as a phase edge
    session.add_phase("[BASELINE]", t0, t1)
    cgroup = session.unit_cgroup("command", f"run-{run_id}-{os.getpid()}")   # attached, removed at finish
    ...
    end = session.finish(RunStatus.FINISHED, exit_code=0)   # last readings, samples written, run closed
    summary = session.summarize()        # per-phase figures, also stored with the run

Guarantees:
- Phase edges are readings: `start()`, `boundary()` and `finish()` read every provider at that instant, so a
  counter is split exactly at the edge and a gauge has a value there (no interpolation across a power step).
- `finish()` is the only place a run is closed. It never reports `finished` for a run whose samples could not
  all be written: such a run ends `incomplete` (or keeps `failed`/`interrupted`) with the reason in `error`.
  It removes the session's cgroups (killing what is left in them) whatever else fails.
- While the run is open its owner (host, pid, process start time) is stored with it and a marker file is kept in
  the data directory, so that a run whose owner was killed is found and closed as `crashed` by
  `wattwise.measure.recovery` (on the next wattwise command, or `wattwise runs recover`).
- A baseline phase during which the machine was already busy (≥ `BUSY_BASELINE` of its CPUs) is a warning on the
  run: runtime minus baseline means little then.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise.carbon.static import resolve_grid_factor, resolve_pue
from wattwise.errors import WattwiseError
from wattwise.measure.clock import Clock
from wattwise.measure.sampler import Sampler
from wattwise.providers import default_machine_providers
from wattwise.providers.base import Provider, ProviderError
from wattwise.providers.cgroup import CgroupProvider, CreatedCgroup, create_unit_cgroup
from wattwise.providers.estimate import EstimatedPowerProvider, default_power_curve
from wattwise.providers.procstat import CpuTimes, read_cpu_times, utilization_between

if TYPE_CHECKING:
    from wattwise.store import Store

__all__ = ["BUSY_BASELINE", "MeasurementSession", "SessionEnd", "SessionOptions", "baseline_busy_share"]

#: a [BASELINE] with the machine's CPUs busier than this (fraction of all CPUs) gets a warning
BUSY_BASELINE = 0.5


@dataclass
class SessionOptions:
    name: str
    kind: str = "command"  # command | scenario | experiment
    interval_s: float = 0.1
    providers: list[str] | None = None  # exactly these machine providers; None: every available one
    intensity_g_per_kwh: float | None = None
    country: str | None = None
    pue: float | None = None
    tdp_w: float | None = None  # for the estimate provider
    power_curve: str | None = None  # calibration CSV for the estimate provider
    command: Any = None  # stored with the run (argv, or a scenario path)
    scenario: str | None = None  # the scenario's source text
    settings: dict[str, Any] = field(default_factory=dict)  # added to the run's settings
    #: called with the run id as soon as the run exists (a cluster client records it with its job)
    on_run_created: Callable[[int], None] | None = None


@dataclass(frozen=True)
class SessionEnd:
    """How the run was closed: the status stored (may be worse than asked for) and the reason."""

    status: str
    error: str | None
    warnings: list[str]
    samples_lost: int


class MeasurementSession:
    def __init__(self, store: Store, options: SessionOptions, *, clock: Clock | None = None) -> None:
        if options.interval_s < 0.01:
            raise WattwiseError(f"--interval must be at least 10ms, got {options.interval_s * 1000:g}ms")
        self.store = store
        self.options = options
        self.clock = clock or Clock()
        self.run_id = 0
        self.providers: list[Provider] = []
        self.settings: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.sampler: Sampler | None = None
        self.cgroups: list[CreatedCgroup] = []
        self.end: SessionEnd | None = None
        self._cpu_at: dict[int, CpuTimes] = {}  # boundary t_us -> the machine's CPU times then
        self._marker: Any = None
        self._reserve: Path | None = None
        self._sampling_stopped = False

    # --- opening ---------------------------------------------------------------------------------
    def open(self) -> int:
        """Choose the providers, create the run (status `running`, owner recorded) and attach the providers."""
        from wattwise.measure.process import process_start_ticks
        from wattwise.measure.recovery import RunMarker

        options = self.options
        grid = resolve_grid_factor(options.intensity_g_per_kwh, options.country)
        pue = resolve_pue(options.pue)
        providers, skipped = default_machine_providers(options.providers)
        if options.tdp_w is not None or options.power_curve:
            for provider in providers:
                if isinstance(provider, EstimatedPowerProvider):
                    provider.curve = default_power_curve(options.tdp_w, options.power_curve)
        self.providers = providers
        self.settings = {
            "interval_s": options.interval_s,
            "providers": [p.name for p in providers],
            "providers_skipped": skipped,
            "intensity_g_per_kwh": grid.intensity_g_per_kwh,
            "intensity_source": grid.source,
            "pue": pue,
            "power_curve": next((p.curve.source for p in providers if isinstance(p, EstimatedPowerProvider)), None),
            **options.settings,
        }
        if "git" not in self.settings:  # the commit measured, for `wattwise timeline` (a scenario's --uri sets it)
            from wattwise.measure.gitinfo import git_info

            self.settings["git"] = git_info(os.getcwd())
        if os.environ.get("WATTWISE_PLAN_ID") and "slurm" not in self.settings:
            # a segment of a plan run on Slurm (`wattwise slurm submit --measure`): `model fit --plan` finds it
            self.settings["slurm"] = {"plan_id": os.environ["WATTWISE_PLAN_ID"],
                                      "segment": int(os.environ.get("WATTWISE_SEGMENT") or 0),
                                      "job_id": os.environ.get("SLURM_JOB_ID")}
        estimated = not any(p.name in ("rapl", "ipmi") for p in providers)
        host, pid = socket.gethostname(), os.getpid()
        start_ticks = process_start_ticks(pid)
        self.run_id = self.store.create_run(
            options.name[:200] or "measurement",
            options.kind,
            command=options.command,
            machine=host,
            settings=self.settings,
            estimated=estimated,
            scenario=options.scenario,
            owner=(host, pid, start_ticks),
        )
        self._marker = RunMarker.create(self.store.url, self.run_id, host, pid, start_ticks)
        self._reserve = _reserve_space(self.store, self.run_id)
        if options.on_run_created is not None:
            options.on_run_created(self.run_id)
        self.sampler = Sampler(self.store, self.run_id, clock=self.clock)
        for provider in providers:
            self.sampler.attach(provider, options.interval_s if provider.default_interval_s < 1 else None)
        return self.run_id

    # --- during the run --------------------------------------------------------------------------
    def start(self) -> int:
        """Start sampling; returns the time of a reading of every provider (the start of the first phase)."""
        t_us = self._sampler().start()
        self._snapshot_cpu(t_us)
        return t_us

    def boundary(self) -> int:
        """Read every provider now; the returned time is the phase edge to use."""
        t_us = self._sampler().sample_now()
        self._snapshot_cpu(t_us)
        return t_us

    def _snapshot_cpu(self, t_us: int) -> None:
        try:
            self._cpu_at[t_us] = read_cpu_times()
        except ProviderError:
            pass

    def begin_phase(self, name: str, start_us: int, *, parent: str | None = None) -> None:
        """Say which phase is open: if the owner is killed, recovery closes it at the last stored sample."""
        if self._marker is not None:
            self._marker.set_phase(name, start_us, parent)

    def add_phase(self, name: str, start_us: int, end_us: int, *, hidden: bool = False,
                  parent: str | None = None) -> None:
        """Store a finished phase (edges from `start()`/`boundary()`)."""
        self.store.add_phase(self.run_id, name, start_us, end_us, hidden=hidden, parent=parent)
        if self._marker is not None and (self._marker.data.get("phase") or {}).get("name") == name:
            self._marker.set_phase(None)
        if name == "[BASELINE]":
            self._check_baseline(start_us, end_us)

    def _check_baseline(self, start_us: int, end_us: int) -> None:
        before, after = self._cpu_at.get(start_us), self._cpu_at.get(end_us)
        busy = baseline_busy_share(before, after) if before is not None and after is not None else None
        if busy is not None and busy >= BUSY_BASELINE:
            self.warn(
                f"the machine was already busy during [BASELINE] ({busy:.0%} of its CPUs): figures above the "
                "baseline mean little; measure on a quieter machine or with a longer baseline"
            )

    def unit_cgroup(self, label: str, name: str) -> CreatedCgroup | None:
        """Create a cgroup for a unit, attach its provider (while still empty: its first CPU time counts) and
        remove it at `finish()`. None (with a warning) where cgroups cannot be created."""
        try:
            cgroup = create_unit_cgroup(label, name)
        except ProviderError as exc:
            self.warn(f"no cgroup for {label}, its own CPU and memory are not attributed: {exc}")
            return None
        self.cgroups.append(cgroup)
        if self._marker is not None:
            self._marker.add_cgroups([str(p.parent) for p in cgroup.procs_files])
        self._sampler().attach(CgroupProvider(cgroup.unit), self.options.interval_s, label=label)
        return cgroup

    def attach(self, provider: Provider, interval_s: float | None = None, label: str | None = None) -> bool:
        """Sample one more provider (e.g. a unit's cgroup or network namespace)."""
        return self._sampler().attach(provider, interval_s, label=label)

    def detach(self, provider: Provider) -> None:
        self._sampler().detach(provider)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # --- closing ---------------------------------------------------------------------------------
    def finish(self, status: str, *, error: str | None = None, exit_code: int | None = None,
               warnings: list[str] | None = None) -> SessionEnd:
        """Last readings, every sample written (retrying), cgroups removed, the run closed. Idempotent.

        Raises WattwiseError only when the run itself could not be closed (the database is gone or full); it then
        stays `running` with its marker, and recovery closes it later."""
        from wattwise.store import RunStatus

        if self.end is not None:
            return self.end
        try:
            self.stop_sampling()
        finally:
            for cgroup in self.cgroups:
                cgroup.kill_all()
                cgroup.remove()
        lost = self.sampler.samples_lost if self.sampler is not None else 0
        sampler_warnings = self.sampler.warnings if self.sampler is not None else []
        all_warnings = list(dict.fromkeys([*(warnings or []), *self.warnings, *sampler_warnings]))
        if lost and self.sampler is not None:
            reason = (f"{lost} of {lost + self.sampler.samples_written} samples could not be written "
                      f"({self.sampler.write_error or 'unknown error'}); the run keeps what was written")
            if status in (RunStatus.FINISHED, RunStatus.RUNNING):
                status = RunStatus.INCOMPLETE
            error = f"{error}; {reason}" if error else reason
        try:
            try:
                self.store.finish_run(self.run_id, status, error=error, exit_code=exit_code, warnings=all_warnings)
            except Exception:
                if not self._release_reserve():
                    raise
                self.store.finish_run(self.run_id, status, error=error, exit_code=exit_code, warnings=all_warnings)
        except Exception as exc:
            if self._marker is not None:
                self._marker.set_outcome(status, error)
            raise WattwiseError(
                f"run {self.run_id} could not be closed in the database ({type(exc).__name__}: {exc}); it stays "
                f"'running' until `wattwise runs recover` closes it as {status}"
            ) from exc
        if self._marker is not None:
            self._marker.remove()
        self._release_reserve()
        self.end = SessionEnd(status, error, all_warnings, lost)
        return self.end

    def stop_sampling(self) -> None:
        """Last reading of every provider, every sample written (or counted lost), providers closed. Called by
        `finish()`; call it earlier to store phases and logs after the last samples. When sample writes failed
        (a full disk), the space reserved at `open()` is given back so that the run can still be closed."""
        if self._sampling_stopped or self.sampler is None:
            return
        self._sampling_stopped = True
        self.sampler.stop()
        if self.sampler.write_error is not None:
            self._release_reserve()

    def summarize(self) -> dict[str, Any]:
        """Per-phase figures of the closed run (also stored as the run's results when it can be written)."""
        from wattwise.analysis import summarize_run

        summary: dict[str, Any] = summarize_run(self.store, self.run_id)
        try:
            self.store.update_run(self.run_id, results=summary)
        except Exception as exc:  # a cache: the run page computes it again
            summary.setdefault("warnings", []).append(f"the summary could not be stored: {type(exc).__name__}")
        return summary

    def _release_reserve(self) -> bool:
        if self._reserve is None:
            return False
        try:
            self._reserve.unlink()
        except OSError:
            pass
        self._reserve = None
        return True

    def _sampler(self) -> Sampler:
        if self.sampler is None:
            raise RuntimeError("MeasurementSession.open() first")
        return self.sampler


def baseline_busy_share(before: CpuTimes, after: CpuTimes) -> float | None:
    """The machine's busy share of all CPUs between two readings (None when no CPU time passed)."""
    if after.total_s <= before.total_s:
        return None
    return utilization_between(before, after)


#: bytes kept free next to a SQLite database while a run is open, given back when the disk fills up so that the
#: run's phases, output and status can still be written
RESERVE_BYTES = 256 * 1024


def _reserve_space(store: Store, run_id: int) -> Path | None:
    database = store.engine.url.database if store.engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return None
    path = Path(database).expanduser().with_name(f".{Path(database).name}.wattwise-reserve-{run_id}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return path
