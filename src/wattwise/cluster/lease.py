"""The lease of a running job, kept from the client's side.

`LeaseKeeper` renews the lease every ``interval_s`` and stops the job (sets its ``cancel`` event) when the job
was cancelled, when the lease is no longer ours, or when it could not be renewed for ``lease_s - interval_s``
(self-fencing: after that another client may take the job, so it must not be running here any more). A
watchdog thread fences even while a renew call hangs. `while_lease_lasts` retries a database write through
an outage for as long as the lease may still be ours; `finish_job` and `release_job` are the two last writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from wattwise.cluster.database import is_database_unavailable
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import OutgoingEmail

log = logging.getLogger("wattwise.cluster.client")


def first_line(exc: BaseException) -> str:
    """'TypeName: the first line of the message', for one-line log entries."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class LeaseKeeper(threading.Thread):
    """Renews a job's lease every `interval_s` while it runs. Sets `cancel` when the job was cancelled,
    when the lease was lost, or when it could not be renewed for `lease_s - interval_s` (self-fencing)."""

    def __init__(
        self,
        queue: ClusterQueue,
        job_id: int,
        client_id: str,
        machine_id: str,
        lease_s: float,
        interval_s: float,
        cancel: threading.Event,
        claimed_at: float | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"wattwise-lease-{job_id}")
        self.queue = queue
        self.job_id = job_id
        self.client_id = client_id
        self.machine_id = machine_id
        self.lease_s = lease_s
        self.interval_s = interval_s
        self.cancel = cancel
        # the claim took the lease; count from when it was sent (a slow answer must not stretch the lease)
        self.last_renewed = claimed_at if claimed_at is not None else time.monotonic()
        self.lost = False
        self.fenced = False
        self.cancel_requested = False
        self.renewal_failures = 0
        self._halt = threading.Event()

    @property
    def lease_left_s(self) -> float:
        return self.lease_s - (time.monotonic() - self.last_renewed)

    def start(self) -> None:
        super().start()
        # the fence must not depend on a renew call returning: a call can hang for minutes in a network partition
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"wattwise-fence-{self.job_id}")
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._halt.wait(min(0.5, self.interval_s / 2)):
            if not self.fenced and not self.lost and self.lease_left_s <= self.interval_s:
                self.fenced = True
                log.error(
                    "job %s: the lease was not renewed in time (%.1fs left); stopping the job before it expires",
                    self.job_id,
                    self.lease_left_s,
                )
                self.cancel.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            sent = time.monotonic()
            try:
                renewal = self.queue.jobs.renew(self.job_id, self.client_id, self.lease_s, machine_id=self.machine_id)
            except Exception as exc:
                self.renewal_failures += 1
                if self.lease_left_s <= self.interval_s and not self.fenced:
                    self.fenced = True
                    log.error(
                        "job %s: cannot renew the lease (%s); stopping the job before the lease expires",
                        self.job_id,
                        first_line(exc),
                    )
                    self.cancel.set()
                else:
                    log.warning(
                        "job %s: lease renewal failed, database unavailable? (%s); %.0fs of lease left",
                        self.job_id,
                        first_line(exc),
                        self.lease_left_s,
                    )
                continue
            if not renewal.ok:
                self.lost = True
                log.error("job %s: the lease is no longer ours; stopping the job", self.job_id)
                self.cancel.set()
                return
            self.last_renewed = sent
            if renewal.cancel_requested and not self.cancel_requested:
                self.cancel_requested = True
                log.info("job %s: cancel requested; stopping it", self.job_id)
                self.cancel.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def while_lease_lasts(keeper: LeaseKeeper, what: str, action: Callable[[], bool]) -> bool | None:
    """Run a database write, retrying through an outage while the lease may still be ours. None: gave up
    (the job returns to the queue when its lease expires)."""
    pause = 0.5
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_database_unavailable(exc) or keeper.lost or keeper.lease_left_s <= 0:
                log.error(
                    "job %s: cannot %s (%s); the job is reclaimed when its lease expires",
                    keeper.job_id,
                    what,
                    first_line(exc),
                )
                return None
            log.warning("job %s: cannot %s yet (%s); retrying", keeper.job_id, what, first_line(exc))
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def finish_job(
    keeper: LeaseKeeper,
    name: str,
    state: str,
    run_id: int | None,
    error: str | None,
    emails: Sequence[OutgoingEmail],
) -> bool:
    """Record the job's final state (with its run, e-mails and a status entry) while the lease is ours,
    retrying through a database outage. False: not recorded (the lease was lost, or it ran out)."""
    job_id = keeper.job_id
    message = f"job {job_id} '{name}' {state}" + (f" (run {run_id})" if run_id else "")
    message += f": {error}" if error else ""
    ok = while_lease_lasts(
        keeper,
        f"record {state}",
        lambda: keeper.queue.jobs.finish(
            job_id, keeper.client_id, state, run_id=run_id, error=error, emails=emails, message=message
        ),
    )
    if ok is False:
        log.error("job %s: lease lost before the result could be recorded (run %s)", job_id, run_id)
    elif ok:
        log.info("job %s %s%s", job_id, state, f" (run {run_id})" if run_id else "")
    return bool(ok)


def release_job(keeper: LeaseKeeper, reason: str, *, count_attempt: bool = False) -> None:
    """Give the job back to the queue while the lease is ours (retrying through a database outage)."""
    released = while_lease_lasts(
        keeper,
        "give the job back",
        lambda: keeper.queue.jobs.release(keeper.job_id, keeper.client_id, reason, count_attempt=count_attempt),
    )
    if released:
        log.info("job %s: %s", keeper.job_id, reason)
