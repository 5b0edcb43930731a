"""`wattwise measure`: a [BASELINE] with nothing running, then [RUNTIME] with the command in its cgroup."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wattwise.errors import WattwiseError
from wattwise.measure.notes import parse_note_line
from wattwise.measure.output import StreamCapture
from wattwise.measure.process import start_process, stop_process
from wattwise.measure.session import MeasurementSession, SessionEnd, SessionOptions
from wattwise.providers.cgroup import CreatedCgroup
from wattwise.store import RunStatus, Store

UNIT_LABEL = "command"


@dataclass
class MeasureOptions:
    name: str | None = None
    interval_s: float = 0.1
    baseline_s: float = 5.0
    providers: list[str] | None = None
    read_notes_stdout: bool = False
    intensity_g_per_kwh: float | None = None
    country: str | None = None
    pue: float | None = None
    echo_output: bool = True  # pass the command's output through to the terminal
    env: dict[str, str] | None = None
    cwd: str | None = None
    tdp_w: float | None = None  # for the estimate provider
    power_curve: str | None = None  # calibration CSV for the estimate provider
    #: called with the run id as soon as the run exists (a cluster client records it with its job, so that a
    #: run left `running` by a client that died can be marked failed when the job is reclaimed)
    on_run_created: Callable[[int], None] | None = None


@dataclass
class MeasureResult:
    run_id: int
    status: str
    exit_code: int | None
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


ProgressCallback = Callable[[str, float, float | None], None]  # (phase, elapsed_s, total_s or None)


def resolve_command(argv: list[str]) -> str:
    if not argv:
        raise WattwiseError("no command given: use `wattwise measure -- CMD ARGS`")
    program = argv[0]
    found = shutil.which(program)
    if found is None:
        if os.sep in program and os.path.exists(program):
            raise WattwiseError(f"command is not executable: {program}")
        raise WattwiseError(f"command not found: {program}")
    return found


def _sleep_with_progress(phase: str, seconds: float, progress: ProgressCallback | None) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if progress:
            progress(phase, seconds - max(left, 0.0), seconds)
        if left <= 0:
            return
        time.sleep(min(0.1, left))


def measure_command(
    store: Store,
    argv: list[str],
    options: MeasureOptions | None = None,
    progress: ProgressCallback | None = None,
) -> MeasureResult:
    """Measure one command. The run is stored whatever happens; a failure is recorded, then re-raised
    only for Ctrl-C (KeyboardInterrupt) after the run is saved as interrupted."""
    options = options or MeasureOptions()
    if options.baseline_s < 0:
        raise WattwiseError("--baseline must not be negative")
    session = MeasurementSession(store, SessionOptions(
        name=options.name or " ".join(argv)[:200] or "measurement",
        kind="command",
        interval_s=options.interval_s,
        providers=options.providers,
        intensity_g_per_kwh=options.intensity_g_per_kwh,
        country=options.country,
        pue=options.pue,
        tdp_w=options.tdp_w,
        power_curve=options.power_curve,
        command=argv,
        settings={"baseline_s": options.baseline_s, "unit_label": UNIT_LABEL,
                  "read_notes_stdout": options.read_notes_stdout},
        on_run_created=options.on_run_created,
    ))
    run_id = session.open()
    try:
        executable = resolve_command(argv)
    except WattwiseError as exc:
        session.finish(RunStatus.FAILED, error=str(exc))
        raise

    status = RunStatus.FINISHED
    error: str | None = None
    exit_code: int | None = None
    cgroup: CreatedCgroup | None = None
    forward_to: list[subprocess.Popen[bytes]] = []
    restore_signals = _interrupt_on_termination(forward_to)
    process: subprocess.Popen[bytes] | None = None
    readers: list[StreamCapture] = []
    notes: list[tuple[int, str, str]] = []
    interrupted = False
    runtime_start = runtime_end = None
    baseline_stored = False
    baseline_start = session.start()
    if options.baseline_s > 0:
        session.begin_phase("[BASELINE]", baseline_start)
    try:
        if options.baseline_s > 0:
            _sleep_with_progress("[BASELINE]", options.baseline_s, progress)
        # the cgroup is made and attached (empty) before the edge: one reading ends [BASELINE] and starts
        # [RUNTIME], so the phases share it and no two readings fall a few ms apart
        cgroup = session.unit_cgroup(UNIT_LABEL, f"run-{run_id}-{os.getpid()}")
        runtime_start = session.boundary()
        if options.baseline_s > 0:
            session.add_phase("[BASELINE]", baseline_start, runtime_start)
            baseline_stored = True
        session.begin_phase("[RUNTIME]", runtime_start)
        process = start_process([executable, *argv[1:]], cgroup_procs=cgroup.procs_files if cgroup else (),
                                env=options.env, cwd=options.cwd)
        forward_to.append(process)

        def read_note(line: str) -> None:
            note = parse_note_line(line)
            if note is not None:
                notes.append((note[0], "command", note[1]))

        for stream, echo, on_line in (
            (process.stdout, sys.stdout, read_note if options.read_notes_stdout else None),
            (process.stderr, sys.stderr, None),
        ):
            assert stream is not None
            reader = StreamCapture(stream, on_line, echo=echo if options.echo_output else None)
            reader.start()
            readers.append(reader)
        if progress:  # the bar's own refresh shows the elapsed time
            progress("[RUNTIME]", 0.0, None)
        # one blocking wait: a poll loop with a timeout wakes up ~90 times a second (Popen.wait's back-off),
        # more CPU than the whole sampler; Ctrl-C and SIGTERM still interrupt it (KeyboardInterrupt)
        exit_code = process.wait()
        runtime_end = session.boundary()
        if exit_code != 0:
            status = RunStatus.FAILED
            error = f"{argv[0]} exited with code {exit_code}"
    except KeyboardInterrupt:
        interrupted = True
        status = RunStatus.INTERRUPTED
        error = "interrupted (Ctrl-C)"
        if process is not None:
            if process.poll() is None:
                stop_process(process, cgroup=cgroup)
            exit_code = process.returncode
    except WattwiseError as exc:
        status = RunStatus.FAILED
        error = str(exc)
    except Exception as exc:  # keep the samples whatever went wrong
        status = RunStatus.FAILED
        error = f"{type(exc).__name__}: {exc}"
    finally:
        end = _close(session, options, baseline_stored, baseline_start, runtime_start, runtime_end, cgroup,
                     readers, notes, status, error, exit_code)
    restore_signals()
    summary = session.summarize()
    if interrupted:
        raise KeyboardInterrupt
    return MeasureResult(run_id, end.status, exit_code, summary, end.warnings, end.error)


def _close(
    session: MeasurementSession,
    options: MeasureOptions,
    baseline_stored: bool,
    baseline_start: int,
    runtime_start: int | None,
    runtime_end: int | None,
    cgroup: CreatedCgroup | None,
    readers: list[StreamCapture],
    notes: list[tuple[int, str, str]],
    status: str,
    error: str | None,
    exit_code: int | None,
) -> SessionEnd:
    """Store the phases, output and notes, then close the run (always, even when storing them failed)."""
    store, run_id = session.store, session.run_id
    try:
        if options.baseline_s > 0 and not baseline_stored and runtime_start is None:
            session.add_phase("[BASELINE]", baseline_start, session.boundary())  # cut short (Ctrl-C)
        if runtime_start is not None and runtime_end is None:
            runtime_end = session.boundary()
        if cgroup is not None:
            cgroup.kill_all()  # children the command left behind
        for reader in readers:
            reader.join(timeout=5)
        session.stop_sampling()
        if runtime_start is not None and runtime_end is not None:
            session.add_phase("[RUNTIME]", runtime_start, runtime_end)
        for reader, stream_name in zip(readers, ("stdout", "stderr"), strict=False):
            if reader.text:
                store.add_log(run_id, "command", stream_name, reader.text)
        store.add_notes(run_id, notes)
    except Exception as exc:  # e.g. the disk is full: the run is closed below with the reason
        if status in (RunStatus.FINISHED, RunStatus.RUNNING):
            status = RunStatus.INCOMPLETE
        reason = f"storing the run's phases and output failed: {type(exc).__name__}: {exc}"
        error = f"{error}; {reason}" if error else reason
    return session.finish(status, error=error, exit_code=exit_code)


def _interrupt_on_termination(forward_to: list[subprocess.Popen[bytes]] | None = None) -> Callable[[], None]:
    """SIGTERM and SIGHUP (timeout, systemd, a closed terminal) end the measurement like Ctrl-C: the run is stored
    as interrupted with its samples, its cgroup removed. SIGUSR1 and SIGUSR2 (e.g. Slurm's warning before a time
    limit) are passed on to the measured command in `forward_to`, which decides what to do (checkpoint). Only on
    the main thread and where no one else handles those signals (a cluster client has its own handler). Returns
    the function that restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def forward(signum: int, frame: object) -> None:
        for process in forward_to or []:
            if process.poll() is None:
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, handler)
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        if forward_to is not None and signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, forward)

    def restore() -> None:
        for signum, old_handler in previous.items():
            signal.signal(signum, old_handler)

    return restore
