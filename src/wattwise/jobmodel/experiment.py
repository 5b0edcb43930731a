"""Measurement campaigns: run a command N times in variants, like a power meter's before/after recordings.

Each repetition of a variant is one recording: the meter starts, ``before_s`` of the idle machine, the
program (possibly stopped at an event and resumed), ``after_s`` of the idle machine, the meter stops. A
rest period without measurement separates recordings. Repetitions are interleaved (rep 1 of every
variant, then rep 2, ...) so that slow drifts (temperature, background load) spread over all variants.

Variants:

``full``
    the command, run to its end;
``after-checkpoint``
    stopped right after the k-th checkpoint is written (at the event that ends the k-th checkpoint
    phase), then resumed with the resume command to its end;
``before-checkpoint``
    stopped right before the k-th checkpoint (at the event that starts it), then resumed: the epoch's
    work is lost and done again;
``startup``
    stopped when the first work phase starts: what a start (and a resume) costs;
``idle``
    nothing runs: the baseline power of the machine.

Events are read live from the program: note lines ``<unix time> <label>`` on its stdout, lines
``<unix time>, <label>`` appended to the file named by $WATTWISE_EVENTS_FILE, and with
``stdout_events`` every other stdout line (timed on arrival). The phase map says which events start
which phases, and so where to stop. The program also gets $WATTWISE_VARIANT, $WATTWISE_REP and
$WATTWISE_RESUME (1 when it should resume from its checkpoint, else 0), so that each recording can keep
its checkpoints apart.

The power comes from a :class:`Meter`: anything with ``start()`` and ``stop() -> PowerTrace``.
:class:`SamplerMeter` samples wattwise's machine providers into a store run (so that the recording is
also a wattwise run, usable as ``run:ID``); :class:`FunctionMeter` polls a function returning watts.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wattwise.errors import ConfigError
from wattwise.jobmodel.meters import ExperimentError, FunctionMeter, Meter, PowerTrace, SamplerMeter
from wattwise.jobmodel.phasemap import PhaseMap
from wattwise.jobmodel.pinpoint import Event, write_pinpoint
from wattwise.jobmodel.program import EVENTS_ENV, Segment, StopRule, run_program

__all__ = [
    "EVENTS_ENV", "RESUME_VARIANTS", "VARIANTS", "CampaignOptions", "CampaignResult", "ExperimentError",
    "FunctionMeter", "Meter", "PowerTrace", "Recording", "SamplerMeter", "Segment", "VariantSummary", "record",
    "run_campaign", "run_program", "stop_rule", "summarize",
]

VARIANTS = ("full", "after-checkpoint", "before-checkpoint", "startup", "idle")
RESUME_VARIANTS = ("after-checkpoint", "before-checkpoint")


# -- stop rules from the phase map ------------------------------------------------------------------
def _mapped(events: list[Event], phasemap: PhaseMap) -> list[tuple[Event, tuple[str, str, bool]]]:
    out: list[tuple[Event, tuple[str, str, bool]]] = []
    for event in events:
        rule = phasemap.match(event.label)
        if rule is not None:
            key = (rule.phase, rule.section, rule.checkpoint)
            if not out or out[-1][1] != key:
                out.append((event, key))
    return out


def stop_rule(variant: str, phasemap: PhaseMap, epoch: int) -> StopRule | None:
    """When to stop the first execution of ``variant``."""
    if variant == "full":
        return None
    if variant == "startup":
        return lambda events: any(key[1] == "work" for _, key in _mapped(events, phasemap))
    if variant == "before-checkpoint":
        return lambda events: sum(key[2] for _, key in _mapped(events, phasemap)) >= epoch

    def after_checkpoint(events: list[Event]) -> bool:
        seen = 0
        for _, key in _mapped(events, phasemap):
            if seen >= epoch:
                return True  # the phase after the k-th checkpoint has started
            seen += key[2]
        return False

    if variant == "after-checkpoint":
        return after_checkpoint
    raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")


# -- campaigns -------------------------------------------------------------------------------------
@dataclass
class CampaignOptions:
    argv: list[str]
    resume_argv: list[str] | None = None  # default: argv
    runs: int = 3
    variants: tuple[str, ...] = ("full", "after-checkpoint", "before-checkpoint", "startup", "idle")
    epoch: int = 1  # k: stop around the k-th checkpoint
    rest_s: float = 30.0
    before_s: float = 30.0
    after_s: float = 30.0
    idle_s: float = 30.0  # length of the idle variant's middle part
    stop_signal: int = signal.SIGINT
    stdout_events: bool = False
    timeout_s: float | None = None
    cwd: str | None = None
    out_dir: Path | None = None  # write each recording as a pinpoint-like folder here

    def check(self) -> None:
        if not self.argv and any(v != "idle" for v in self.variants):
            raise ConfigError("no command given: use `wattwise experiment [OPTIONS] -- CMD ARGS`")
        for variant in self.variants:
            if variant not in VARIANTS:
                raise ConfigError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        if self.runs < 1:
            raise ConfigError(f"--runs must be at least 1, got {self.runs}")
        if self.epoch < 1:
            raise ConfigError(f"--epoch must be at least 1, got {self.epoch}")
        for name in ("rest_s", "before_s", "after_s", "idle_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.removesuffix('_s')} must not be negative")


@dataclass
class Recording:
    variant: str
    rep: int
    start_s: float  # recording start (= first launch − before_s)
    end_s: float  # recording end (= last exit + after_s)
    segments: list[Segment]
    energy_j: float  # job: first launch → last exit (idle: the middle part)
    duration_s: float
    window_energy_j: float  # whole recording, windows included
    folder: str | None = None
    run_id: int | None = None
    power_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "rep": self.rep, "start_s": self.start_s, "end_s": self.end_s,
            "energy_j": self.energy_j, "duration_s": self.duration_s, "window_energy_j": self.window_energy_j,
            "folder": self.folder, "run_id": self.run_id, "power_source": self.power_source,
            "segments": [{"argv": s.argv, "launch_s": s.launch_s, "exit_s": s.exit_s,
                          "exit_code": s.exit_code, "stopped": s.stopped, "events": len(s.events)}
                         for s in self.segments],
        }


@dataclass
class VariantSummary:
    variant: str
    n: int
    energy_mean_j: float
    energy_std_j: float
    duration_mean_s: float
    duration_std_s: float
    overhead_j: float | None = None  # mean energy − full run's mean energy
    overhead_rel: float | None = None
    overhead_std_j: float | None = None  # standard error of the difference of the means
    above_idle_mean_j: float | None = None  # energy − idle power × duration
    above_idle_overhead_j: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CampaignResult:
    options: CampaignOptions
    recordings: list[Recording] = field(default_factory=list)
    summaries: list[VariantSummary] = field(default_factory=list)
    idle_power_w: float | None = None

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "command": o.argv, "resume_command": o.resume_argv or o.argv, "runs": o.runs, "epoch": o.epoch,
            "before_s": o.before_s, "after_s": o.after_s, "rest_s": o.rest_s, "idle_s": o.idle_s,
            "idle_power_w": self.idle_power_w,
            "variants": [s.to_dict() for s in self.summaries],
            "recordings": [r.to_dict() for r in self.recordings],
        }


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(recordings: Sequence[Recording]) -> tuple[list[VariantSummary], float | None]:
    by_variant: dict[str, list[Recording]] = {}
    for r in recordings:
        by_variant.setdefault(r.variant, []).append(r)
    idle = by_variant.get("idle")
    idle_power = None
    if idle:
        total_s = sum(r.duration_s for r in idle)
        idle_power = sum(r.energy_j for r in idle) / total_s if total_s > 0 else None
    summaries = []
    full = by_variant.get("full")
    full_mean = float(np.mean([r.energy_j for r in full])) if full else None
    full_above = (float(np.mean([r.energy_j - idle_power * r.duration_s for r in full]))
                  if full and idle_power is not None else None)
    for variant in VARIANTS:
        recs = by_variant.get(variant)
        if not recs:
            continue
        energies = [r.energy_j for r in recs]
        durations = [r.duration_s for r in recs]
        summary = VariantSummary(variant, len(recs), float(np.mean(energies)), _std(energies),
                                 float(np.mean(durations)), _std(durations))
        if idle_power is not None and variant != "idle":
            summary.above_idle_mean_j = float(np.mean([r.energy_j - idle_power * r.duration_s for r in recs]))
        if full and full_mean is not None and variant in (*RESUME_VARIANTS, "startup"):
            summary.overhead_j = summary.energy_mean_j - full_mean
            summary.overhead_rel = summary.overhead_j / full_mean if full_mean else None
            full_energies = [r.energy_j for r in full]
            summary.overhead_std_j = math.sqrt(_std(energies) ** 2 / len(energies)
                                               + _std(full_energies) ** 2 / len(full_energies))
            if summary.above_idle_mean_j is not None and full_above is not None:
                summary.above_idle_overhead_j = summary.above_idle_mean_j - full_above
        summaries.append(summary)
    return summaries, idle_power


Progress = Callable[[str], None]


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def record(variant: str, rep: int, options: CampaignOptions, phasemap: PhaseMap, meter: Meter,
           progress: Progress | None = None) -> Recording:
    """One recording of one variant: before window, program (stop/resume), after window."""
    say = progress or (lambda _text: None)
    meter.start()
    segments: list[Segment] = []
    try:
        say(f"{variant} #{rep}: before window")
        recording_start = time.time()
        _sleep(options.before_s)
        if variant == "idle":
            say(f"{variant} #{rep}: idle")
            middle_start = time.time()
            _sleep(options.idle_s)
            middle_end = time.time()
        else:
            say(f"{variant} #{rep}: running")
            rule = stop_rule(variant, phasemap, options.epoch)
            env = {"WATTWISE_VARIANT": variant, "WATTWISE_REP": str(rep), "WATTWISE_RESUME": "0"}
            first = run_program(options.argv, stop_when=rule, stop_signal=options.stop_signal,
                                stdout_events=options.stdout_events, timeout_s=options.timeout_s,
                                cwd=options.cwd, env=env)
            segments.append(first)
            if rule is not None and not first.stopped:
                raise ExperimentError(
                    f"variant {variant}: the program ended (exit code {first.exit_code}) before the event to "
                    f"stop at was seen (events seen: {len(first.events)}); check the phase map, --epoch, "
                    f"and that the program logs its events"
                )
            if rule is None and first.exit_code != 0:
                raise ExperimentError(f"variant {variant}: {options.argv[0]!r} exited with code "
                                      f"{first.exit_code}; last output: {first.output[-500:]!r}")
            if variant in RESUME_VARIANTS:
                say(f"{variant} #{rep}: resuming")
                resume = run_program(options.resume_argv or options.argv, stdout_events=options.stdout_events,
                                     timeout_s=options.timeout_s, cwd=options.cwd,
                                     env={**env, "WATTWISE_RESUME": "1"})
                segments.append(resume)
                if resume.exit_code != 0:
                    raise ExperimentError(f"variant {variant}: the resumed program exited with code "
                                          f"{resume.exit_code}; last output: {resume.output[-500:]!r}")
            middle_start, middle_end = segments[0].launch_s, segments[-1].exit_s
        say(f"{variant} #{rep}: after window")
        _sleep(options.after_s)
    except BaseException as exc:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
        try:
            meter.stop(error=error)  # the samples so far are kept; a store run is marked failed
        except Exception:  # the first error is the one to report
            pass
        raise
    trace = meter.stop()
    start_s = middle_start - options.before_s if variant != "idle" else recording_start
    end_s = middle_end + options.after_s
    rec = Recording(variant, rep, start_s, end_s, segments, trace.energy_between(middle_start, middle_end),
                    middle_end - middle_start, trace.energy_between(start_s, end_s), run_id=trace.run_id,
                    power_source=trace.source)
    if trace.run_id is not None and isinstance(meter, SamplerMeter):
        _annotate_store_run(meter.store, trace.run_id, rec)
    if options.out_dir is not None:
        folder = Path(options.out_dir) / variant / f"rep-{rep}"
        events = _folder_events(rec)
        write_pinpoint(folder, trace.resample(start_s, end_s), start_s, end_s, events)
        rec.folder = str(folder)
    return rec


def _folder_events(rec: Recording) -> list[tuple[float, str]]:
    events: list[tuple[float, str]] = []
    for i, segment in enumerate(rec.segments):
        if i > 0:
            events.append((segment.launch_s, "wattwise: resume"))
        events += [(e.time_s, e.label) for e in segment.events]
        if segment.stopped:
            events.append((segment.exit_s, "wattwise: stopped"))
    if rec.variant == "idle":
        events = [(rec.start_s + (rec.end_s - rec.start_s) / 2, "wattwise: idle")]
    return sorted(events)


def _annotate_store_run(store: Any, run_id: int, rec: Recording) -> None:
    def us(t: float) -> int:
        return round(t * 1e6)

    if rec.segments:
        store.add_phase(run_id, "[BASELINE]", us(rec.start_s), us(rec.segments[0].launch_s))
        for segment in rec.segments:
            store.add_phase(run_id, "[RUNTIME]", us(segment.launch_s), us(segment.exit_s))
        notes = [(us(t), "experiment", label) for t, label in _folder_events(rec)]
        store.add_notes(run_id, notes)
    store.update_run(run_id, name=f"experiment {rec.variant} #{rec.rep}",
                     command=rec.segments[0].argv if rec.segments else None)


def run_campaign(options: CampaignOptions, phasemap: PhaseMap, meter: Meter,
                 progress: Progress | None = None, on_recording: Callable[[Recording], None] | None = None,
                 ) -> CampaignResult:
    """All recordings, interleaved by repetition, with rests between them."""
    options.check()
    result = CampaignResult(options)
    first = True
    for rep in range(1, options.runs + 1):
        for variant in options.variants:
            if not first and options.rest_s > 0:
                if progress:
                    progress(f"rest {options.rest_s:g} s")
                _sleep(options.rest_s)
            first = False
            rec = record(variant, rep, options, phasemap, meter, progress)
            result.recordings.append(rec)
            if on_recording:
                on_recording(rec)
    result.summaries, result.idle_power_w = summarize(result.recordings)
    if options.out_dir is not None:
        import json

        Path(options.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(options.out_dir) / "campaign.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n",
                                                             encoding="utf-8")
    return result
