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
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wattwise.errors import ConfigError, WattwiseError
from wattwise.jobmodel.phasemap import PhaseMap
from wattwise.jobmodel.pinpoint import Event, write_pinpoint

VARIANTS = ("full", "after-checkpoint", "before-checkpoint", "startup", "idle")
RESUME_VARIANTS = ("after-checkpoint", "before-checkpoint")
EVENTS_ENV = "WATTWISE_EVENTS_FILE"


class ExperimentError(WattwiseError):
    """A campaign cannot run or a recording went wrong."""


# -- meters -------------------------------------------------------------------------------------------
@dataclass
class PowerTrace:
    """Samples of a recording: sample i has ``power_w[i]`` from ``times_s[i]`` to the next sample."""

    times_s: np.ndarray
    power_w: np.ndarray
    source: str = ""
    run_id: int | None = None

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        if len(self.times_s) == 0:
            return 0.0
        edges = np.append(self.times_s, self.times_s[-1] + (self.times_s[-1] - self.times_s[-2]
                                                            if len(self.times_s) > 1 else 0.0))
        lo = np.clip(edges[:-1], t0_s, t1_s)
        hi = np.clip(edges[1:], t0_s, t1_s)
        return float(np.sum(self.power_w * (hi - lo)))

    def resample(self, start_s: float, end_s: float) -> np.ndarray:
        """Values on an even grid over [start_s, end_s) with as many points as samples in it (hold)."""
        inside = int(np.count_nonzero((self.times_s >= start_s) & (self.times_s < end_s)))
        n = max(inside, 1)
        grid = start_s + np.arange(n) * ((end_s - start_s) / n)
        index = np.clip(np.searchsorted(self.times_s, grid, side="right") - 1, 0, len(self.power_w) - 1)
        return self.power_w[index]


class Meter(Protocol):
    def start(self) -> None:
        """Begin recording power."""

    def stop(self, error: str | None = None) -> PowerTrace:
        """Stop and return what was recorded since start(); `error` says the recording failed."""


class FunctionMeter:
    """Polls ``read_w()`` every ``interval_s`` on a thread."""

    def __init__(self, read_w: Callable[[], float], interval_s: float = 0.1,
                 source: str = "function") -> None:
        if interval_s <= 0:
            raise ConfigError("meter interval must be above 0")
        self.read_w = read_w
        self.interval_s = interval_s
        self.source = source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._times: list[float] = []
        self._values: list[float] = []
        self._error: Exception | None = None

    def _loop(self) -> None:
        next_t = time.monotonic()
        while True:
            try:
                value = float(self.read_w())
            except Exception as exc:  # reported by stop()
                self._error = exc
                return
            self._times.append(time.time())
            self._values.append(value)
            next_t += self.interval_s
            if self._stop.wait(max(0.0, next_t - time.monotonic())):
                break

    def start(self) -> None:
        self._times, self._values, self._error = [], [], None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="wattwise-meter")
        self._thread.start()

    def stop(self, error: str | None = None) -> PowerTrace:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._error is not None:
            raise ExperimentError(f"the {self.source} meter failed: {self._error}") from self._error
        self._times.append(time.time())
        self._values.append(float(self.read_w()))
        return PowerTrace(np.array(self._times), np.array(self._values), self.source)


class SamplerMeter:
    """wattwise's machine providers (RAPL, IPMI, GPU, or the estimate) sampled into a store run per
    recording; the machine power is rebuilt from the stored series like for `model fit run:ID`."""

    def __init__(self, store: Any, name: str = "experiment", providers: list[str] | None = None,
                 interval_s: float = 0.1) -> None:
        self.store = store
        self.name = name
        self.providers = providers
        self.interval_s = interval_s
        self.run_id: int | None = None
        self._sampler: Any = None

    def start(self) -> None:
        import socket

        from wattwise.measure.sampler import Sampler
        from wattwise.providers import default_machine_providers

        providers, skipped = default_machine_providers(self.providers)
        self.run_id = self.store.create_run(
            self.name, "command", machine=socket.gethostname(),
            settings={"interval_s": self.interval_s, "providers": [p.name for p in providers],
                      "providers_skipped": skipped, "experiment": True},
            estimated=not any(p.name in ("rapl", "ipmi") for p in providers),
        )
        self._sampler = Sampler(self.store, self.run_id)
        for provider in providers:
            self._sampler.attach(provider, self.interval_s if provider.default_interval_s < 1 else None)
        self._sampler.start()

    def stop(self, error: str | None = None) -> PowerTrace:
        """Stop sampling; the store run is marked failed (or interrupted on Ctrl-C) when `error` is given."""
        from wattwise.analysis.phases import load_series
        from wattwise.jobmodel.storerun import choose_power_series, power_on_grid

        assert self._sampler is not None and self.run_id is not None, "start() first"
        warnings = self._sampler.stop()
        if error is None:
            self.store.finish_run(self.run_id, "finished", warnings=warnings)
        else:
            status = "interrupted" if error == "interrupted" else "failed"
            self.store.finish_run(self.run_id, status, error=error, warnings=warnings)
        source, chosen = choose_power_series(load_series(self.store, self.run_id))
        if not chosen:
            raise ExperimentError(f"run:{self.run_id}: the providers gave no power series ({source})")
        edges, power = power_on_grid(chosen)
        return PowerTrace(edges[:-1], power, source, self.run_id)


# -- running the program -----------------------------------------------------------------------------
@dataclass
class Segment:
    """One execution of the program inside a recording."""

    argv: list[str]
    launch_s: float
    exit_s: float
    exit_code: int | None
    stopped: bool  # stopped by the campaign at an event
    events: list[Event]
    output: str = ""


#: a note line with Unix seconds and a fraction, e.g. "1700000000.25 Start training" (the integer forms with
#: 10, 13, 16 or 19 digits are read by wattwise.measure.notes)
_SECONDS_NOTE = re.compile(r"^\s*(\d{10}\.\d+)\s+(\S.*)$")


class _EventSource:
    """Collects events live from stdout and the events file."""

    def __init__(self, events_file: Path, stdout_events: bool) -> None:
        self.events_file = events_file
        self.stdout_events = stdout_events
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._file_pos = 0
        self._file_line = 0

    def add(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def read_stdout(self, stream: Any) -> None:
        from wattwise.measure.notes import parse_note_line

        for raw in iter(stream.readline, b""):
            now = time.time()
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            seconds = _SECONDS_NOTE.match(line)
            note = parse_note_line(line)
            if seconds is not None:
                self.add(Event(float(seconds.group(1)), seconds.group(2).strip()))
            elif note is not None:
                self.add(Event(note[0] / 1e6, note[1]))
            elif self.stdout_events and line.strip():
                self.add(Event(now, line.strip()))

    def poll_file(self) -> None:
        try:
            with self.events_file.open("rb") as handle:
                handle.seek(self._file_pos)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1
        self._file_pos += complete
        for raw in data[:complete].decode(errors="replace").splitlines():
            self._file_line += 1
            time_text, comma, label = raw.partition(",")
            try:
                t = float(time_text)
            except ValueError:
                continue
            if comma and label.strip() and math.isfinite(t):
                self.add(Event(t, label.strip(), self._file_line))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)


StopRule = Callable[[list[Event]], bool]  # events so far (time order) → stop now?


def run_program(argv: Sequence[str], *, stop_when: StopRule | None = None, stop_signal: int = signal.SIGINT,
                stdout_events: bool = False, env: dict[str, str] | None = None, cwd: str | None = None,
                timeout_s: float | None = None, grace_s: float = 10.0) -> Segment:
    """Run ``argv`` to its end, or until ``stop_when(events)`` says so (then signal its process group)."""
    if not argv:
        raise ExperimentError("no command given")
    with tempfile.TemporaryDirectory(prefix="wattwise-events-") as tmp:
        events_file = Path(tmp) / "events.csv"
        source = _EventSource(events_file, stdout_events)
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env[EVENTS_ENV] = str(events_file)
        launch = time.time()
        try:
            process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env=full_env, cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise ExperimentError(f"could not start {argv[0]!r}: {exc.strerror}") from None
        reader = threading.Thread(target=source.read_stdout, args=(process.stdout,), daemon=True)
        reader.start()
        stopped = False
        try:
            while process.poll() is None:
                source.poll_file()
                if stop_when is not None and not stopped:
                    events = sorted(source.snapshot(), key=lambda e: e.time_s)
                    if stop_when(events):
                        stopped = True
                        _signal_group(process, stop_signal)
                        try:
                            process.wait(timeout=grace_s)
                        except subprocess.TimeoutExpired:
                            _signal_group(process, signal.SIGKILL)
                        break
                if timeout_s is not None and time.time() - launch > timeout_s:
                    _signal_group(process, signal.SIGKILL)
                    process.wait()
                    raise ExperimentError(f"{argv[0]!r} ran longer than the timeout ({timeout_s:g} s)")
                try:
                    process.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            raise
        process.wait()
        exit_s = time.time()
        reader.join(timeout=5)
        source.poll_file()
    events = sorted(source.snapshot(), key=lambda e: e.time_s)
    return Segment(list(argv), launch, exit_s, process.returncode, stopped, events, "\n".join(source.lines))


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- stop rules from the phase map ------------------------------------------------------------------
def _mapped(events: list[Event], phasemap: PhaseMap) -> list[tuple[Event, tuple[str, str, bool]]]:
    out = []
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
    if trace.run_id is not None and hasattr(meter, "store"):
        _annotate_store_run(meter.store, trace.run_id, rec)  # type: ignore[attr-defined]
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
