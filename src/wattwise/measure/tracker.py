"""Measure from inside Python: a context manager, a decorator, or start()/stop().

    import wattwise

    with wattwise.track("train") as t:
        t.phase("load")
        data = load()
        t.phase("fit")
        model = fit(data)
        t.note("fitted")
    print(t.result)                  # ≈ 812 J attributed to this process (23 % of the machine's 3.5 kJ), ...

    @wattwise.track()                # one stored run per call, named after the function
    def step(): ...

It measures with the same providers, sampler and session as `wattwise measure` (`MeasurementSession`) and
stores the run in the wattwise database (`db=`, else `$WATTWISE_DATABASE_URL`, else the default SQLite file).
The measured unit is this process: its CPU time (every thread, and the children it has waited for) against the
machine's busy CPU time gives its share of the machine's energy, as a cgroup does for `wattwise measure`.

Guarantees:
- No signal handlers and no threads left behind: sampling threads stop in `stop()` (works in a Jupyter cell).
- An exception inside `with` or a decorated call closes the run as `failed` (Ctrl-C: `interrupted`) with its
  samples, then propagates. A tracker still running when the interpreter exits is closed as `interrupted`.
- One tracker at a time per process: a second `start()` while one runs is refused with a clear error (use
  `t.phase(...)` for parts of a tracked block). Nested trackers would count the same energy twice. The pytest
  plugin's session tracker is an observer (`exclusive=False`): code under test may run its own trackers.
- `stop()` always stops sampling and closes the run, as `failed` if storing its phases failed.
- A coroutine or generator function cannot be decorated (only its creation would be measured): a clear error.
- Phases tile the tracked time: `t.phase(name)` ends the phase before it; `with t.phase(name):` ends at the
  block's end; time between phases is kept as an `(untracked)` phase, so the phases add up to `[RUNTIME]`
  (a gap shorter than the sampler's minimum reading gap, 25 ms, joins the next phase).
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from wattwise.errors import WattwiseError
from wattwise.measure.sampler import MIN_READ_GAP_S
from wattwise.units import J_PER_KWH, parse_duration_s

__all__ = ["PhaseResult", "TrackResult", "Tracker", "track"]

F = TypeVar("F", bound=Callable[..., Any])
UNIT_LABEL = "process"
RUNTIME = "[RUNTIME]"
UNTRACKED = "(untracked)"
#: gaps between phases shorter than this join the next phase: the sampler takes no two readings closer than
#: `MIN_READ_GAP_S` (an edge that close moves the reading before it), so such a gap holds no reading of its own
MIN_GAP_US = int(MIN_READ_GAP_S * 1e6)

_active_lock = threading.Lock()
_active: Tracker | None = None


@dataclass(frozen=True)
class PhaseResult:
    """Figures of one phase. `energy_j` is the whole machine's; `process_energy_j` is this process's share."""

    name: str
    duration_s: float
    energy_j: float | None
    process_energy_j: float | None
    process_cpu_time_s: float | None
    process_cpu_share: float | None
    mean_power_w: float | None
    carbon_g: float | None
    process_carbon_g: float | None
    estimated: bool

    @classmethod
    def from_summary(cls, phase: dict[str, Any], intensity_g_per_kwh: float, pue: float) -> PhaseResult:
        process_energy = phase.get("unit_energy_j")
        process_carbon = None
        if process_energy is not None:
            process_carbon = process_energy / J_PER_KWH * intensity_g_per_kwh * pue
        return cls(
            name=phase["name"],
            duration_s=phase["duration_s"],
            energy_j=phase.get("energy_j"),
            process_energy_j=process_energy,
            process_cpu_time_s=phase.get("unit_cpu_time_s"),
            process_cpu_share=phase.get("unit_cpu_share"),
            mean_power_w=phase.get("mean_power_w"),
            carbon_g=phase.get("carbon_g"),
            process_carbon_g=process_carbon,
            estimated=bool(phase.get("estimated")),
        )


@dataclass(frozen=True)
class TrackResult:
    """What a tracker measured. Figures from the load→power estimate are marked by `estimated`."""

    run_id: int
    name: str
    status: str
    total: PhaseResult
    phases: list[PhaseResult]
    intensity_g_per_kwh: float
    pue: float
    warnings: list[str] = field(default_factory=list)

    @property
    def estimated(self) -> bool:
        return self.total.estimated

    @property
    def duration_s(self) -> float:
        return self.total.duration_s

    @property
    def energy_j(self) -> float | None:
        """This process's energy (its share of the machine's); None where the share is unknown."""
        return self.total.process_energy_j

    @property
    def machine_energy_j(self) -> float | None:
        return self.total.energy_j

    @property
    def carbon_g(self) -> float | None:
        return self.total.process_carbon_g

    def phase(self, name: str) -> PhaseResult:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase {name!r} in run {self.run_id} (phases: {', '.join(p.name for p in self.phases)})")

    def __str__(self) -> str:
        from wattwise.units import format_si

        mark = "≈ " if self.estimated else ""
        t = self.total
        if t.process_energy_j is None:
            energy = f"{mark}{format_si(t.energy_j, 'J')} (whole machine; this process's share unknown)"
        else:
            share = f"{t.process_cpu_share:.0%}" if t.process_cpu_share is not None else "?"
            energy = (f"{mark}{format_si(t.process_energy_j, 'J')} attributed to this process "
                      f"({share} of the machine's {mark}{format_si(t.energy_j, 'J')})")
        carbon = format_si(t.process_carbon_g if t.process_carbon_g is not None else t.carbon_g, "g")
        return (f"run {self.run_id} '{self.name}' {self.status}: {energy}, {mark}{carbon} CO2e "
                f"in {t.duration_s:.3g} s")


class _Phase:
    """A phase of a running tracker; as a context manager it ends at the block's end."""

    def __init__(self, tracker: Tracker, name: str) -> None:
        self.tracker = tracker
        self.name = name

    def __enter__(self) -> _Phase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracker._end_phase(self)


class Tracker:
    """Measures what runs between `start()` and `stop()` in this process; see the module docstring."""

    def __init__(
        self,
        name: str | None = None,
        *,
        db: str | None = None,
        interval: str | float = "1s",
        country: str | None = None,
        intensity_g_per_kwh: float | None = None,
        pue: float | None = None,
        providers: list[str] | None = None,
        output: str | None = None,
        output_dir: str | Path = ".",
        project_name: str = "wattwise",
        git: bool = True,
        exclusive: bool = True,
    ) -> None:
        if output not in (None, "codecarbon"):
            raise WattwiseError(f"output={output!r} is not known: use None or 'codecarbon'")
        self.name = name
        self.db = db
        self.interval_s = parse_duration_s(interval) if isinstance(interval, str) else float(interval)
        self.country = country
        self.intensity_g_per_kwh = intensity_g_per_kwh
        self.pue = pue
        self.providers = providers
        self.output = output
        self.output_dir = Path(output_dir)
        self.project_name = project_name
        self.git = git
        #: False for an observer that other trackers may run inside (the pytest plugin's session tracker)
        self.exclusive = exclusive
        self.result: TrackResult | None = None
        #: with the decorator: the result of the latest call
        self.last_result: TrackResult | None = None
        self._session: Any = None
        self._t0 = 0
        self._phases: list[tuple[str, int, int]] = []
        self._open_phase: _Phase | None = None
        self._open_since = 0
        self._last_edge = 0
        self._notes: list[tuple[int, str, str]] = []

    # --- life cycle ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._session is not None

    def start(self) -> Tracker:
        global _active
        from wattwise.config import resolve_database_url
        from wattwise.measure.session import MeasurementSession, SessionOptions
        from wattwise.providers.process import ProcessProvider
        from wattwise.store import Store

        with _active_lock:
            if self.exclusive and _active is not None:
                raise WattwiseError(
                    f"a wattwise tracker is already running in this process ('{_active.name}'): trackers do not "
                    "nest (the energy would be counted twice); use t.phase(...) for parts of a tracked block"
                )
            if self.exclusive:
                _active = self
        try:
            settings: dict[str, Any] = {"unit_label": UNIT_LABEL, "python": sys.version.split()[0]}
            if not self.git:
                settings["git"] = None  # else the session records the checkout of the working directory
            store = Store(resolve_database_url(self.db))
            session = MeasurementSession(store, SessionOptions(
                name=self.name or "python", kind="python", interval_s=self.interval_s, providers=self.providers,
                intensity_g_per_kwh=self.intensity_g_per_kwh, country=self.country, pue=self.pue,
                command=list(sys.argv), settings=settings,
            ))
            try:
                session.open()
                if not session.attach(ProcessProvider(label=UNIT_LABEL), self.interval_s, label=UNIT_LABEL):
                    session.warn("this process's CPU time could not be read: only whole-machine figures")
                self._t0 = session.start()
            except BaseException:
                if session.run_id:
                    session.finish("failed", error="the tracker could not start sampling")
                raise
        except BaseException:
            with _active_lock:
                if _active is self:
                    _active = None
            raise
        self._session = session
        self._phases, self._notes, self._open_phase = [], [], None
        self._last_edge = self._t0
        self.result = None
        atexit.register(self._at_exit)
        return self

    def stop(self, *, status: str = "finished", error: str | None = None) -> TrackResult:
        """Close the run (last readings, samples written, sampling threads stopped) and return its figures."""
        global _active
        session = self._session
        if session is None:
            raise WattwiseError("this tracker is not running: call start() first (or use it with `with`)")
        closed = None
        try:
            end = session.boundary()
            if self._open_phase is not None:
                self._close_phase(self._open_phase.name, end)
            if self._phases and end - self._last_edge >= MIN_GAP_US:
                self._phases.append((UNTRACKED, self._last_edge, end))
            elif self._phases and self._phases[-1][2] < end:  # a sub-millisecond tail joins the last phase
                last = self._phases[-1]
                self._phases[-1] = (last[0], last[1], end)
            session.add_phase(RUNTIME, self._t0, end)
            for name, start_us, end_us in self._phases:
                session.add_phase(name, start_us, end_us, parent=RUNTIME)
            if self._notes:
                session.store.add_notes(session.run_id, self._notes)
            closed = session.finish(status, error=error)
            summary = session.summarize()
            result = self._result(summary, closed.status, closed.warnings)
        finally:
            if closed is None:  # something failed above: sampling still stops and the run is still closed
                try:
                    session.finish("failed", error="the tracker could not store its phases")
                except Exception:
                    pass
            self._session = None
            atexit.unregister(self._at_exit)
            with _active_lock:
                if _active is self:
                    _active = None
        self.result = result
        if self.output == "codecarbon":
            from wattwise.measure.codecarbon_csv import append_emissions_row

            append_emissions_row(self.output_dir / "emissions.csv", result, project_name=self.project_name)
        return result

    def _at_exit(self) -> None:
        if self._session is not None:
            self.stop(status="interrupted", error="the interpreter exited while the tracker was running")

    # --- inside the run --------------------------------------------------------------------------
    def phase(self, name: str) -> _Phase:
        """Start a phase now (ending the one before). Use as `with t.phase("x"):` to end it at the block's end."""
        session = self._require_running()
        if not name or name.startswith("[") or name == UNTRACKED:
            raise WattwiseError(f"phase name {name!r} is not allowed: give a non-empty name not starting with '['")
        edge = session.boundary()
        if self._open_phase is not None:
            self._close_phase(self._open_phase.name, edge)
        since = edge
        if edge - self._last_edge < MIN_GAP_US:
            since = self._last_edge  # a gap below any reading's resolution: the phase starts at the last edge
        else:
            # time since start() or since the last phase ended: kept so that the phases add up to the runtime
            self._phases.append((UNTRACKED, self._last_edge, edge))
        self._open_phase = _Phase(self, name)
        self._open_since = since
        return self._open_phase

    def note(self, text: str) -> None:
        """A timestamped note, shown with the run (report, dashboard)."""
        session = self._require_running()
        self._notes.append((session.clock.now_us(), "python", str(text)))

    def _end_phase(self, phase: _Phase) -> None:
        if self._session is None or self._open_phase is not phase:
            return  # already ended by a later phase() or by stop()
        self._close_phase(phase.name, self._session.boundary())

    def _close_phase(self, name: str, end_us: int) -> None:
        self._phases.append((name, self._open_since, end_us))
        self._open_phase = None
        self._last_edge = end_us

    def _require_running(self) -> Any:
        if self._session is None:
            raise WattwiseError("this tracker is not running: call start() first (or use it with `with`)")
        return self._session

    def _result(self, summary: dict[str, Any], status: str, warnings: list[str]) -> TrackResult:
        intensity = float(summary.get("intensity_g_per_kwh") or 0.0)
        pue = float(summary.get("pue") or 1.0)
        phases = [PhaseResult.from_summary(p, intensity, pue) for p in summary["phases"]]
        total = next(p for p in phases if p.name == RUNTIME)
        return TrackResult(summary["run_id"], summary["name"], status, total,
                           [p for p in phases if p.name != RUNTIME], intensity, pue, list(warnings))

    # --- context manager and decorator -----------------------------------------------------------
    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.stop()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop(status="interrupted", error="interrupted (KeyboardInterrupt)")
        else:
            self.stop(status="failed", error=f"{exc_type.__name__}: {exc}")

    def __call__(self, func: F) -> F:
        """As a decorator: each call is one stored run, named after the function unless a name was given."""
        import inspect

        if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func) or \
                inspect.isasyncgenfunction(func):
            raise WattwiseError(
                f"@wattwise.track() on {func.__qualname__}: a coroutine or generator function returns at once and "
                "runs later, so only its creation would be measured; use `with wattwise.track(...)` inside it")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracker = replace_tracker(self, name=self.name or func.__qualname__)
            try:
                with tracker:
                    return func(*args, **kwargs)
            finally:
                self.last_result = tracker.result

        return wrapper  # type: ignore[return-value]


def replace_tracker(template: Tracker, **changes: Any) -> Tracker:
    """A fresh tracker with the template's settings (a decorated function gets one per call)."""
    kwargs: dict[str, Any] = {
        "name": template.name, "db": template.db, "interval": template.interval_s, "country": template.country,
        "intensity_g_per_kwh": template.intensity_g_per_kwh, "pue": template.pue, "providers": template.providers,
        "output": template.output, "output_dir": template.output_dir, "project_name": template.project_name,
        "git": template.git, "exclusive": template.exclusive,
    }
    kwargs.update(changes)
    return Tracker(**kwargs)


def track(name: str | None = None, **options: Any) -> Tracker:
    """`with wattwise.track("name") as t:` or `@wattwise.track()`; options as for `Tracker`."""
    return Tracker(name, **options)

