"""E-mails of the cluster: composed when something happens, queued in the database (`cluster_emails`) in
the same transaction as the event, and sent later by a client or by `wattwise jobs email` (cron mode).

Sending claims each e-mail for a while (``claimed_until``) before talking to the SMTP server, so two senders
do not send the same e-mail; a failed send is retried up to `MAX_SEND_ATTEMPTS` times.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sqlalchemy import or_, select, update

from wattwise.cluster.queue import EMAILS, ClusterQueue, JobInfo, OutgoingEmail
from wattwise.errors import WattwiseError
from wattwise.store import Store

MAX_SEND_ATTEMPTS = 5
CLAIM_S = 120
LOG_TAIL_LINES = 40


@dataclass
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: str = "none"  # none | starttls | ssl
    from_address: str = "wattwise@localhost"
    timeout_s: float = 30.0


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    errors: list[str] | None = None


def _link(web_url: str | None, run_id: int | None) -> str:
    if not web_url or run_id is None:
        return ""
    return f"{web_url.rstrip('/')}/runs/{run_id}"


def _fmt(value: Any, unit: str, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g} {unit}"


def _phase_lines(summary: dict[str, Any] | None) -> list[str]:
    if not summary:
        return []
    lines = []
    for phase in summary.get("phases", []):
        if phase.get("hidden"):
            continue
        approx = "≈" if phase.get("estimated") else ""
        lines.append(
            f"  {phase['name']}: {_fmt(phase.get('duration_s'), 's')}, "
            f"energy {approx}{_fmt(phase.get('energy_j'), 'J')}, "
            f"mean power {approx}{_fmt(phase.get('mean_power_w'), 'W')}, "
            f"carbon {approx}{_fmt(phase.get('carbon_g'), 'g')}"
        )
    return lines


def job_finished_email(
    job: JobInfo, machine_id: str, run_id: int | None, summary: dict[str, Any] | None, web_url: str | None
) -> OutgoingEmail | None:
    if not job.email:
        return None
    lines = [
        f"Job {job.id} '{job.name}' finished on machine {machine_id}.",
        "",
        f"Source: {job.source_type} {job.source}"
        + (f" (branch {job.branch})" if job.branch else "")
        + (f", file {job.filename}" if job.filename and job.source_type != "command" else ""),
        f"Run id: {run_id if run_id is not None else 'none'}",
    ]
    phases = _phase_lines(summary)
    if phases:
        lines += ["", "Phases:", *phases]
    link = _link(web_url, run_id)
    if link:
        lines += ["", f"Results: {link}"]
    return OutgoingEmail(
        job.email,
        f"[wattwise] job {job.id} '{job.name}' finished on {machine_id}",
        "\n".join(lines) + "\n",
        "job-finished",
        job.id,
        machine_id,
    )


def job_failed_email(
    job: JobInfo,
    machine_id: str,
    run_id: int | None,
    error: str | None,
    log_tail: str,
    web_url: str | None,
    state: str = "FAILED",
) -> OutgoingEmail | None:
    if not job.email:
        return None
    word = "was cancelled" if state == "CANCELLED" else "failed"
    lines = [
        f"Job {job.id} '{job.name}' {word} on machine {machine_id}.",
        "",
        f"Error: {error or 'unknown'}",
        f"Source: {job.source_type} {job.source}",
        f"Run id: {run_id if run_id is not None else 'none'}",
    ]
    link = _link(web_url, run_id)
    if link:
        lines.append(f"Run: {link}")
    if log_tail.strip():
        lines += ["", "Last lines of the log:", "", log_tail.rstrip()]
    return OutgoingEmail(
        job.email,
        f"[wattwise] job {job.id} '{job.name}' {word} on {machine_id}",
        "\n".join(lines) + "\n",
        "job-failed" if state != "CANCELLED" else "job-cancelled",
        job.id,
        machine_id,
    )


def lease_failure_email(
    job_id: int, name: str, recipient: str, machine_id: str | None, error: str
) -> OutgoingEmail:
    body = (
        f"Job {job_id} '{name}' failed: {error}.\n\nLast machine: {machine_id or 'unknown'}.\n"
        "Check the client's log on that machine (journalctl -u wattwise-client@…).\n"
    )
    return OutgoingEmail(
        recipient, f"[wattwise] job {job_id} '{name}' failed", body, "job-failed", job_id, machine_id
    )


def control_workload_email(recipient: str, machine_id: str, passed: bool, message: str) -> OutgoingEmail:
    word = "passed: the machine takes jobs again" if passed else "FAILED: the machine stopped taking jobs"
    body = f"Control-workload validation on machine {machine_id} {word}.\n\n{message}\n"
    return OutgoingEmail(
        recipient,
        f"[wattwise] {machine_id}: control workload {'ok' if passed else 'unstable'}",
        body,
        "control-workload",
        None,
        machine_id,
    )


def machine_notice_email(recipient: str, machine_id: str, subject: str, message: str) -> OutgoingEmail:
    return OutgoingEmail(
        recipient,
        f"[wattwise] {machine_id}: {subject}",
        message.rstrip() + "\n",
        "machine-notice",
        None,
        machine_id,
    )


def run_log_tail(store: Store, run_id: int | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a run's stored output (stderr after stdout)."""
    if run_id is None:
        return ""
    try:
        entries = store.logs(run_id)
    except Exception:
        return ""
    text_lines: list[str] = []
    for entry in entries:
        prefix = "" if entry.stream == "stdout" else f"[{entry.stream}] "
        text_lines += [prefix + line for line in entry.text.splitlines()]
    return "\n".join(text_lines[-lines:])


def build_message(smtp: SmtpSettings, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = smtp.from_address
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=smtp.from_address.rsplit("@", 1)[-1] or None)
    message.set_content(body)
    return message


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    try:
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_s, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
    except (OSError, smtplib.SMTPException) as exc:
        raise WattwiseError(f"cannot reach the SMTP server {smtp.host}:{smtp.port}: {exc}") from exc
    return client


def send_pending(queue: ClusterQueue, smtp: SmtpSettings, *, limit: int = 100) -> SendReport:
    """Send queued e-mails (oldest first). A server that cannot be reached leaves them queued."""
    report = SendReport(errors=[])
    now = queue._now()
    with queue.transaction() as connection:
        query = (
            select(EMAILS.c.id)
            .where(EMAILS.c.sent_at.is_(None), EMAILS.c.attempts < MAX_SEND_ATTEMPTS)
            .where(or_(EMAILS.c.claimed_until.is_(None), EMAILS.c.claimed_until < now))
            .order_by(EMAILS.c.id)
            .limit(limit)
        )
        if queue.is_postgres:
            query = query.with_for_update(skip_locked=True)
        ids = list(connection.scalars(query))
        if not ids:
            return report
        rows = (
            connection.execute(
                update(EMAILS)
                .where(EMAILS.c.id.in_(ids))
                .values(claimed_until=now + timedelta(seconds=CLAIM_S))
                .returning(EMAILS.c.id, EMAILS.c.recipient, EMAILS.c.subject, EMAILS.c.body)
            )
            .mappings()
            .all()
        )
    rows = sorted(rows, key=lambda r: r["id"])
    try:
        client = _connect(smtp)
    except WattwiseError as exc:
        _release(queue, [r["id"] for r in rows], str(exc))
        report.failed = len(rows)
        report.errors.append(str(exc))  # type: ignore[union-attr]
        return report
    try:
        for row in rows:
            try:
                message = build_message(smtp, row["recipient"], row["subject"], row["body"])
            except ValueError as exc:  # e.g. a line break in a header: retrying cannot help
                _give_up(queue, row["id"], f"cannot build the e-mail: {exc}")
                report.failed += 1
                report.errors.append(f"e-mail {row['id']} to {row['recipient']}: {exc}")  # type: ignore[union-attr]
                continue
            try:
                client.send_message(message)
            except (OSError, smtplib.SMTPException) as exc:
                _release(queue, [row["id"]], f"{type(exc).__name__}: {exc}")
                report.failed += 1
                report.errors.append(f"e-mail {row['id']} to {row['recipient']}: {exc}")  # type: ignore[union-attr]
                continue
            with queue.transaction() as connection:
                connection.execute(
                    update(EMAILS)
                    .where(EMAILS.c.id == row["id"])
                    .values(
                        sent_at=queue._now(),
                        attempts=EMAILS.c.attempts + 1,
                        claimed_until=None,
                        last_error=None,
                    )
                )
            report.sent += 1
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return report


def _give_up(queue: ClusterQueue, email_id: int, error: str) -> None:
    with queue.transaction() as connection:
        connection.execute(
            update(EMAILS)
            .where(EMAILS.c.id == email_id)
            .values(attempts=MAX_SEND_ATTEMPTS, claimed_until=None, last_error=error[:2000])
        )


def _release(queue: ClusterQueue, ids: list[int], error: str) -> None:
    with queue.transaction() as connection:
        connection.execute(
            update(EMAILS)
            .where(EMAILS.c.id.in_(ids))
            .values(attempts=EMAILS.c.attempts + 1, claimed_until=None, last_error=error[:2000])
        )


def pending_count(queue: ClusterQueue) -> int:
    from sqlalchemy import func

    with queue.transaction(write=False) as connection:
        return int(
            connection.scalar(
                select(func.count())
                .select_from(EMAILS)
                .where(EMAILS.c.sent_at.is_(None), EMAILS.c.attempts < MAX_SEND_ATTEMPTS)
            )
            or 0
        )
