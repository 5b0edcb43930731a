"""`wattwise measure`: a [BASELINE] with nothing running, then [RUNTIME] with the command in its cgroup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wattwise.carbon.static import resolve_grid_factor, resolve_pue
from wattwise.errors import WattwiseError
from wattwise.measure.clock import Clock
from wattwise.measure.notes import parse_note_line
from wattwise.measure.output import StreamCapture
from wattwise.measure.sampler import Sampler
from wattwise.providers import default_machine_providers
from wattwise.providers.base import ProviderError
from wattwise.providers.cgroup import CgroupProvider, CreatedCgroup, create_unit_cgroup
from wattwise.providers.estimate import EstimatedPowerProvider, default_power_curve
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
    if options.interval_s < 0.01:
        raise WattwiseError(f"--interval must be at least 10ms, got {options.interval_s * 1000:g}ms")
    if options.baseline_s < 0:
        raise WattwiseError("--baseline must not be negative")
    grid = resolve_grid_factor(options.intensity_g_per_kwh, options.country)
    pue = resolve_pue(options.pue)
    providers, skipped = default_machine_providers(options.providers)
    if options.tdp_w is not None or options.power_curve:
        for provider in providers:
            if isinstance(provider, EstimatedPowerProvider):
                provider.curve = default_power_curve(options.tdp_w, options.power_curve)
    name = options.name or " ".join(argv)[:200] or "measurement"
    settings = {
        "interval_s": options.interval_s,
        "baseline_s": options.baseline_s,
        "providers": [p.name for p in providers],
        "providers_skipped": skipped,
        "intensity_g_per_kwh": grid.intensity_g_per_kwh,
        "intensity_source": grid.source,
        "pue": pue,
        "unit_label": UNIT_LABEL,
        "read_notes_stdout": options.read_notes_stdout,
        "power_curve": next((p.curve.source for p in providers if isinstance(p, EstimatedPowerProvider)), None),
    }
    estimated = not any(p.name in ("rapl", "ipmi") for p in providers)
    run_id = store.create_run(
        name, "command", command=argv, machine=socket.gethostname(), settings=settings, estimated=estimated
    )
    if options.on_run_created is not None:
        options.on_run_created(run_id)
    try:
        executable = resolve_command(argv)
    except WattwiseError as exc:
        store.finish_run(run_id, RunStatus.FAILED, error=str(exc))
        raise

    clock = Clock()
    sampler = Sampler(store, run_id, clock=clock)
    for provider in providers:
        sampler.attach(provider, options.interval_s if provider.default_interval_s < 1 else None)
    status = RunStatus.FINISHED
    error: str | None = None
    exit_code: int | None = None
    cgroup: CreatedCgroup | None = None
    restore_signals = _interrupt_on_termination()
    process: subprocess.Popen[bytes] | None = None
    readers: list[StreamCapture] = []
    notes: list[tuple[int, str, str]] = []
    interrupted = False
    runtime_start = runtime_end = None
    baseline_stored = False
    sampler.start()
    baseline_start = clock.now_us()
    try:
        if options.baseline_s > 0:
            _sleep_with_progress("[BASELINE]", options.baseline_s, progress)
        baseline_end = sampler.sample_now()
        if options.baseline_s > 0:
            store.add_phase(run_id, "[BASELINE]", baseline_start, baseline_end)
            baseline_stored = True
        try:
            cgroup = create_unit_cgroup(UNIT_LABEL, f"run-{run_id}-{os.getpid()}")
        except ProviderError as exc:
            sampler.warnings.append(f"no cgroup for the command, its own CPU and memory are not attributed: {exc}")
        procs_files = [str(p) for p in cgroup.procs_files] if cgroup else []

        def _enter_cgroup() -> None:  # runs in the child between fork and exec
            pid = str(os.getpid())
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write(pid)

        if cgroup is not None:  # attached while the cgroup is still empty: the command's first CPU time counts
            sampler.attach(CgroupProvider(cgroup.unit), options.interval_s, label=UNIT_LABEL)
        runtime_start = sampler.sample_now()
        try:
            process = subprocess.Popen(
                [executable, *argv[1:]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_enter_cgroup if procs_files else None,
                env=_env(options.env),
                cwd=options.cwd,
                start_new_session=False,
            )
        except OSError as exc:
            raise WattwiseError(f"could not start {argv[0]}: {exc.strerror}") from exc

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
        started = time.monotonic()
        while process.poll() is None:
            if progress:
                progress("[RUNTIME]", time.monotonic() - started, None)
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        exit_code = process.returncode
        runtime_end = sampler.sample_now()
        if exit_code != 0:
            status = RunStatus.FAILED
            error = f"{argv[0]} exited with code {exit_code}"
    except KeyboardInterrupt:
        interrupted = True
        status = RunStatus.INTERRUPTED
        error = "interrupted (Ctrl-C)"
        if process is not None:
            if process.poll() is None:
                _terminate(process, cgroup)
            exit_code = process.returncode
    except WattwiseError as exc:
        status = RunStatus.FAILED
        error = str(exc)
    except Exception as exc:  # keep the samples whatever went wrong
        status = RunStatus.FAILED
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if options.baseline_s > 0 and not baseline_stored and runtime_start is None:
            store.add_phase(run_id, "[BASELINE]", baseline_start, clock.now_us())  # cut short (Ctrl-C)
        if runtime_start is not None and runtime_end is None:
            runtime_end = clock.now_us()
        warnings: list[str] = []
        try:
            if cgroup is not None:
                cgroup.kill_all()  # children the command left behind
            for reader in readers:
                reader.join(timeout=5)
            warnings = sampler.stop()
            if runtime_start is not None and runtime_end is not None:
                store.add_phase(run_id, "[RUNTIME]", runtime_start, runtime_end)
            for reader, stream_name in zip(readers, ("stdout", "stderr"), strict=False):
                if reader.text:
                    store.add_log(run_id, "command", stream_name, reader.text)
            store.add_notes(run_id, notes)
        finally:  # whatever failed above (e.g. the database went away), the cgroup goes and the run is closed
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.remove()
            try:
                store.finish_run(run_id, status, error=error, exit_code=exit_code, warnings=warnings)
            except Exception:
                if status == RunStatus.FINISHED:
                    raise
    restore_signals()
    from wattwise.analysis import summarize_run

    summary = summarize_run(store, run_id)
    store.update_run(run_id, results=summary)
    if interrupted:
        raise KeyboardInterrupt
    return MeasureResult(run_id, status, exit_code, summary, warnings, error)


def _interrupt_on_termination() -> Callable[[], None]:
    """SIGTERM and SIGHUP (timeout, systemd, a closed terminal) end the measurement like Ctrl-C: the run is stored
    as interrupted with its samples, its cgroup removed. Only on the main thread and where no one else handles
    those signals (a cluster client has its own handler). Returns the function that restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old_handler in previous.items():
            signal.signal(signum, old_handler)

    return restore


def _env(extra: dict[str, str] | None) -> dict[str, str] | None:
    if not extra:
        return None
    env = dict(os.environ)
    env.update(extra)
    return env


def _terminate(process: subprocess.Popen[bytes], cgroup: CreatedCgroup | None) -> None:
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            if cgroup is not None:
                cgroup.kill_all()
            process.kill()
            process.wait()
