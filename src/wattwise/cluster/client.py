"""The measurement machine's client: polls the database for jobs meant for its machine (the server never
contacts a machine), measures them, reports, cleans up, and saves power when idle.

One round (`Client.iteration`):

1. heartbeat and status; expired leases of any machine are reclaimed;
2. control-workload validation when due (may pause or release the machine);
3. queued e-mails are sent (when SMTP is configured);
4. if the machine accepts jobs and one is waiting: temperature gate, atomic claim with a lease, execution
   (a `LeaseKeeper` thread renews the lease and watches for cancellation), the result recorded together
   with the run id, then the cleanup command;
5. with nothing to do: the shutdown command (power saving) when configured, else sleep ``sleep_time_s``.

Database outages are survived: the round is retried with a growing pause, and a running job keeps going
while its lease is still valid. A client that cannot renew its lease for ``lease_s - heartbeat_interval_s``
stops its job itself, since another client may take the job once the lease expires.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from wattwise.cluster import mail
from wattwise.cluster.config import ClientConfig
from wattwise.cluster.control import ControlWorkload
from wattwise.cluster.database import is_database_unavailable
from wattwise.cluster.executors import ExecutionContext, ExecutionResult, Executor, default_executors, run_logged
from wattwise.cluster.lease import LeaseKeeper, finish_job, first_line, release_job
from wattwise.cluster.models import JobState, MachineStatus
from wattwise.cluster.outcome import Action, JobEnd, JobFacts, how_job_ended
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import JobInfo, OutgoingEmail
from wattwise.cluster.temperature import TemperatureGate
from wattwise.errors import WattwiseError
from wattwise.store import Store

log = logging.getLogger("wattwise.cluster.client")

MAX_BACKOFF_S = 30.0


@dataclass
class _Current:
    job: JobInfo
    cancel: threading.Event


class Client:
    def __init__(
        self,
        store: Store,
        config: ClientConfig,
        *,
        executors: dict[str, Executor] | None = None,
        client_id: str | None = None,
        temperature_reader: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.queue = ClusterQueue(store)
        self.machine_id = config.machine_id
        self.executors = executors if executors is not None else default_executors(config.executors)
        self.client_id = client_id or f"{config.machine_id}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self._sleep = sleep
        self._last_status: tuple[str, str] | None = None
        self._current: _Current | None = None
        self._idle_since = time.monotonic()
        self._gate_failed_notified = False
        if config.workdir:
            self.workdir = Path(config.workdir).expanduser()
        else:
            from wattwise.config import data_dir

            self.workdir = data_dir() / "cluster-work"
        self.gate: TemperatureGate | None = None
        if config.temperature is not None:
            self.gate = TemperatureGate(
                config.temperature,
                read=temperature_reader,
                sleep=self._wait,
                report=self._gate_report,
            )
        self.control: ControlWorkload | None = None
        if config.control_workload is not None:
            self.control = ControlWorkload(
                self.queue,
                config.control_workload,
                self.machine_id,
                self.executors,
                lambda: self._context(self.stop_event),  # stopping the client stops the control workload too
            )

    # --- status -----------------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self.stop_event.wait(seconds)

    def set_status(
        self,
        status: str,
        message: str = "",
        *,
        temperature_c: float | None = None,
        job_id: int | None = None,
        run_id: int | None = None,
        force: bool = False,
    ) -> None:
        """Heartbeat; a history entry when the status or message changed (or `force`)."""
        changed = force or self._last_status != (status, message)
        self.queue.machines.heartbeat(
            self.machine_id,
            self.client_id,
            status,
            message,
            temperature_c=temperature_c,
            job_id=job_id,
            run_id=run_id,
            record=changed,
        )
        if changed:
            log.info(
                "[%s] %s%s",
                status,
                message,
                f" (job {job_id})" if job_id and str(job_id) not in message else "",
            )
        self._last_status = (status, message)

    def beat(self) -> None:
        """A heartbeat that keeps the current status (no history entry)."""
        status, message = self._last_status or (MachineStatus.IDLE, "")
        self.queue.machines.heartbeat(self.machine_id, self.client_id, status, message, record=False)

    def _gate_report(self, status: str, temperature_c: float | None, message: str) -> None:
        if status == "ok":
            return
        self.set_status(
            MachineStatus.COOLDOWN if status == "cooldown" else MachineStatus.WARMUP,
            message,
            temperature_c=temperature_c,
        )

    def start(self) -> None:
        """Register (or update) the machine and say that this client started."""
        config = self.config
        self.queue.machines.register(
            self.machine_id,
            description=config.description or None,
            base_temperature_c=config.temperature.base_temperature_c if config.temperature else None,
            mac_address=config.mac_address,
            sleep_time_s=config.sleep_time_s,
            client_id=self.client_id,
            hostname=socket.gethostname(),
        )
        self.set_status(MachineStatus.STARTING, f"client {self.client_id} started (pid {os.getpid()})", force=True)

    def request_stop(self, *_: object) -> None:
        """Stop after the current step; a running job is stopped and given back to the queue."""
        self.stop_event.set()
        current = self._current
        if current is not None:
            current.cancel.set()

    # --- the loop ---------------------------------------------------------------------------------
    def run_forever(self, *, once: bool = False) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
        backoff = 1.0
        started = False
        while not self.stop_event.is_set():
            try:
                if not started:
                    self.start()
                    started = True
                worked = self.iteration()
                backoff = 1.0
            except Exception as exc:
                if is_database_unavailable(exc):
                    log.warning("database unavailable (%s); retrying in %.0fs", first_line(exc), backoff)
                elif isinstance(exc, WattwiseError):
                    log.error("%s", exc)
                    self._safe_status(MachineStatus.ERROR, str(exc))
                else:
                    log.error("round failed: %s", "".join(traceback.format_exception(exc)).rstrip())
                    self._safe_status(MachineStatus.ERROR, first_line(exc))
                if once:
                    raise
                self._wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2, max(self.config.sleep_time_s, 1.0))
                continue
            if once:
                break
            if not worked:
                self._wait(self.config.sleep_time_s)
        if self.stop_event.is_set():
            self._safe_status(MachineStatus.STOPPED, f"client {self.client_id} stopped")

    def _safe_status(self, status: str, message: str) -> None:
        try:
            self.set_status(status, message)
        except Exception as exc:
            log.warning("cannot record status %s: %s", status, first_line(exc))

    def iteration(self) -> bool:
        """One round; True when a job ran."""
        self.beat()
        self.queue.jobs.reclaim_expired(client_id=self.client_id)
        machine = self.queue.machines.get(self.machine_id)
        if self.control is not None and self.control.due(machine, self.queue.db.db_now()):
            self.validate_control()
            machine = self.queue.machines.get(self.machine_id)
        self.send_emails()
        if self.stop_event.is_set():
            return False
        if not machine.accepts_jobs:
            self.set_status(MachineStatus.PAUSED, machine.paused_reason or "paused")
            return False
        if not self.queue.jobs.has_waiting(self.machine_id):
            self.set_status(MachineStatus.IDLE, "no job waiting")
            self.maybe_shutdown()
            return False
        job = self.process_one()
        self.send_emails()
        return job is not None

    def process_one(self) -> JobInfo | None:
        """Temperature gate, claim, run, cleanup. The job, or None when none was run."""
        if self.gate is not None and not self.temperature_ok():
            return None
        if self.stop_event.is_set():
            return None
        claimed_at = time.monotonic()  # the lease runs from when the claim was sent, not when it returned
        job = self.queue.jobs.claim(self.machine_id, self.client_id, self.config.lease_s, reclaim=False)
        if job is None:
            self.set_status(MachineStatus.IDLE, "no job for this machine now")
            return None
        self.run_job(job, claimed_at=claimed_at)
        self.cleanup(job.id)
        self._idle_since = time.monotonic()
        return job

    # --- one job ----------------------------------------------------------------------------------
    def _context(self, cancel: threading.Event, job: JobInfo | None = None) -> ExecutionContext:
        def run_started(run_id: int) -> None:
            if job is None or job.id == 0:
                return
            try:
                self.queue.jobs.set_run_id(job.id, self.client_id, run_id)
            except Exception as exc:
                log.warning("job %s: cannot note run %s yet: %s", job.id, run_id, first_line(exc))

        return ExecutionContext(
            store=self.store,
            machine_id=self.machine_id,
            client_id=self.client_id,
            cancel=cancel,
            workdir=self.workdir,
            measure=self.config.measure,
            log=log.info,
            run_started=run_started,
        )

    def run_job(self, job: JobInfo, claimed_at: float | None = None) -> str | None:
        """Execute a claimed job under its lease and record how it ended (`how_job_ended`). Returns the final
        state recorded (None: the job went back to the queue or the lease was lost)."""
        cancel = threading.Event()
        keeper = LeaseKeeper(
            self.queue,
            job.id,
            self.client_id,
            self.machine_id,
            self.config.lease_s,
            self.config.heartbeat_interval_s,
            cancel,
            claimed_at=claimed_at,
        )
        keeper.start()  # first: the lease must be renewed whatever happens next
        self._current = _Current(job, cancel)
        if self.stop_event.is_set():  # a stop that came between the claim and now: do not start the job
            cancel.set()
        try:
            try:
                self.set_status(
                    MachineStatus.JOB,
                    f"job {job.id} '{job.name}' (attempt {job.attempts} of {job.max_attempts})",
                    job_id=job.id,
                )
            except Exception as exc:  # a status line is not worth losing the job over
                log.warning("job %s: status not recorded: %s", job.id, first_line(exc))
            try:
                result, database_failed = self._execute(job, cancel)
            except KeyboardInterrupt:
                release_job(keeper, "client interrupted (Ctrl-C or SIGTERM during a scenario)")
                raise
            self._current = None
            facts = JobFacts(
                ok=result.ok,
                error=result.error,
                lease_lost=keeper.lost,
                fenced=keeper.fenced,
                stopping=self.stop_event.is_set() and cancel.is_set() and not keeper.cancel_requested,
                cancel_requested=keeper.cancel_requested,
                database_failed=database_failed or keeper.renewal_failures > 0,
                attempts_left=job.attempts < job.max_attempts,
            )
            end = how_job_ended(facts)
            if end.action == Action.FINISH and not result.ok and not facts.database_failed and self._database_gone():
                # a run that failed because its samples could not be written: not the job's fault
                end = how_job_ended(replace(facts, database_failed=True))
            return self._record_end(job, keeper, result, end)
        finally:
            self._current = None
            keeper.stop()

    def _execute(self, job: JobInfo, cancel: threading.Event) -> tuple[ExecutionResult, bool]:
        """The executor's result, and whether it failed because the database was unavailable."""
        executor = self.executors.get(job.source_type)
        if executor is None:
            return ExecutionResult(False, error=f"this client has no executor for {job.source_type!r} jobs"), False
        try:
            return executor.execute(job, self._context(cancel, job)), False
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failed = ExecutionResult(
                False,
                error=f"{type(exc).__name__}: {exc}",
                log_tail="".join(traceback.format_exception(exc))[-4000:],
            )
            return failed, is_database_unavailable(exc)

    def _database_gone(self) -> bool:
        try:
            self.queue.db.db_now()
        except Exception as exc:
            return is_database_unavailable(exc)
        return False

    def _record_end(self, job: JobInfo, keeper: LeaseKeeper, result: ExecutionResult, end: JobEnd) -> str | None:
        if end.action == Action.DROP:
            message = f"job {job.id}: {end.reason} (run {result.run_id})"
            self._safe_record("job-lease-lost", message, job.id, result.run_id)
            return None
        if end.action == Action.RELEASE:
            release_job(keeper, end.reason, count_attempt=end.count_attempt)
            return None
        assert end.state is not None
        if end.state == JobState.FINISHED:
            email = mail.job_finished_email(job, self.machine_id, result.run_id, result.summary, self.config.web_url)
        else:
            email = mail.job_failed_email(
                job, self.machine_id, result.run_id, end.error, result.log_tail, self.config.web_url, end.state
            )
        emails: list[OutgoingEmail] = [email] if email is not None else []
        recorded = finish_job(keeper, job.name, end.state, result.run_id, end.error, emails)
        return end.state if recorded else None

    def _safe_record(self, status: str, message: str, job_id: int | None = None, run_id: int | None = None) -> None:
        try:
            self.queue.machines.record_status(
                self.machine_id, self.client_id, status, message, job_id=job_id, run_id=run_id
            )
        except Exception as exc:
            log.warning("cannot record status: %s", first_line(exc))
        log.info("[%s] %s", status, message)

    # --- around jobs ------------------------------------------------------------------------------
    def temperature_ok(self) -> bool:
        assert self.gate is not None and self.config.temperature is not None
        base = self.config.temperature.base_temperature_c
        if base is None:
            base = self.queue.machines.get(self.machine_id).base_temperature_c
        if base is None:
            raise WattwiseError(
                f"temperature gate: machine {self.machine_id!r} has no base temperature: set "
                "temperature.base_temperature_c in the client configuration or run "
                f"`wattwise cluster machines --add {self.machine_id} --base-temperature C`"
            )
        result = self.gate.check(base)
        if result.ok:
            self._gate_failed_notified = False
            return True
        self.set_status(MachineStatus.TEMPERATURE_GATE_FAILED, result.message, temperature_c=result.temperature_c)
        if self.config.notify_email and not self._gate_failed_notified:
            self.queue.outbox.queue(
                [
                    mail.machine_notice_email(
                        self.config.notify_email,
                        self.machine_id,
                        "temperature gate gave up",
                        f"{result.message}\n\nJobs stay queued; the client tries again every "
                        f"{self.config.sleep_time_s:g}s.",
                    )
                ]
            )
            self._gate_failed_notified = True
        return False

    def validate_control(self) -> None:
        assert self.control is not None
        if self.gate is not None and not self.temperature_ok():
            return
        self.set_status(MachineStatus.CONTROL_WORKLOAD, "running the control-workload validation")
        result = self.control.validate()
        if self.stop_event.is_set():  # cut short by a stop: judge nothing, pause nothing
            log.info("control workload: stopped before it finished; not judged")
            return
        self._safe_record(f"control-workload-{'passed' if result.passed else 'failed'}", result.message)
        self.control.apply(result, self.config.notify_email)
        self.cleanup(None)

    def cleanup(self, job_id: int | None) -> None:
        command = self.config.cleanup_command
        if not command:
            return
        self.set_status(MachineStatus.CLEANUP, f"cleanup: {' '.join(command)}", job_id=job_id)
        ok, message = run_logged(command, self.config.cleanup_timeout_s)
        self._safe_record("cleanup" if ok else "cleanup-failed", message, job_id)
        if not ok and self.config.notify_email:
            try:
                self.queue.outbox.queue(
                    [
                        mail.machine_notice_email(
                            self.config.notify_email, self.machine_id, "cleanup command failed", message
                        )
                    ]
                )
            except Exception as exc:
                log.warning("cannot queue e-mail: %s", first_line(exc))

    def maybe_shutdown(self) -> None:
        command = self.config.shutdown_command
        if not command or time.monotonic() - self._idle_since < self.config.shutdown_idle_s:
            return
        self.set_status(MachineStatus.SHUTDOWN, f"queue empty: {' '.join(command)}")
        _ok, message = run_logged(command, 120)
        self._safe_record("shutdown", message)
        self._idle_since = time.monotonic()

    def send_emails(self) -> None:
        if self.config.smtp is None:
            return
        try:
            report = self.queue.outbox.send_pending(self.config.smtp)
        except Exception as exc:  # e-mail must never stop the client's rounds
            log.warning("e-mail: %s", first_line(exc))
            return
        if report.sent or report.failed:
            log.info(
                "e-mail: %d sent, %d failed%s",
                report.sent,
                report.failed,
                f" ({report.errors[0]})" if report.errors else "",
            )

    # --- cron mode --------------------------------------------------------------------------------
    def run_one(self) -> JobInfo | None:
        """`wattwise jobs run-one`: register, then process at most one job (gate, claim, run, cleanup)."""
        if threading.current_thread() is threading.main_thread():  # cron's SIGTERM gives the job back, too
            signal.signal(signal.SIGTERM, self.request_stop)
        self.start()
        self.queue.jobs.reclaim_expired(client_id=self.client_id)
        machine = self.queue.machines.get(self.machine_id)
        if not machine.accepts_jobs:
            self.set_status(MachineStatus.PAUSED, machine.paused_reason or "paused")
            return None
        if not self.queue.jobs.has_waiting(self.machine_id):
            self.set_status(MachineStatus.IDLE, "no job waiting")
            return None
        job = self.process_one()
        if job is not None:
            self.set_status(MachineStatus.IDLE, f"job {job.id} done")
        return job
