"""The e-mail outbox (`cluster_emails`): e-mails are queued in the same transaction as the event they tell
about, and sent later by a client with ``smtp`` configured or by `wattwise jobs email` (cron mode).

Sending claims each e-mail for `CLAIM_S` seconds (``claimed_until``) before talking to the SMTP server, so
two senders do not send the same e-mail; a failed send is retried up to `MAX_SEND_ATTEMPTS` times, an
e-mail that cannot be built (e.g. a line break in a header) is given up at once.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection, func, insert, or_, select, update

from wattwise.cluster.database import EMAILS, ClusterDatabase
from wattwise.cluster.mail import build_message
from wattwise.cluster.records import OutgoingEmail
from wattwise.errors import WattwiseError
from wattwise.store.models import utcnow

MAX_SEND_ATTEMPTS = 5
CLAIM_S = 120


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
    errors: list[str] = field(default_factory=list)


def enqueue(connection: Connection, emails: Sequence[OutgoingEmail]) -> None:
    """Queue e-mails inside the caller's transaction (so they exist exactly when the event does)."""
    if not emails:
        return
    connection.execute(
        insert(EMAILS),
        [
            {
                "recipient": e.recipient,
                "subject": e.subject[:500],
                "body": e.body,
                "kind": e.kind,
                "job_id": e.job_id,
                "machine_id": e.machine_id,
                "created_at": utcnow(),
                "attempts": 0,
            }
            for e in emails
        ],
    )


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


class Outbox:
    """Queued e-mails: add, send, count."""

    def __init__(self, db: ClusterDatabase) -> None:
        self.db = db

    def queue(self, emails: Sequence[OutgoingEmail]) -> None:
        with self.db.transaction() as connection:
            enqueue(connection, emails)

    def pending_count(self) -> int:
        """E-mails not sent yet that will still be tried."""
        with self.db.transaction(write=False) as connection:
            return int(
                connection.scalar(
                    select(func.count())
                    .select_from(EMAILS)
                    .where(EMAILS.c.sent_at.is_(None), EMAILS.c.attempts < MAX_SEND_ATTEMPTS)
                )
                or 0
            )

    def send_pending(self, smtp: SmtpSettings, *, limit: int = 100) -> SendReport:
        """Send queued e-mails (oldest first). A server that cannot be reached leaves them queued."""
        report = SendReport()
        db = self.db
        now = db.now()
        with db.transaction() as connection:
            query = (
                select(EMAILS.c.id)
                .where(EMAILS.c.sent_at.is_(None), EMAILS.c.attempts < MAX_SEND_ATTEMPTS)
                .where(or_(EMAILS.c.claimed_until.is_(None), EMAILS.c.claimed_until < now))
                .order_by(EMAILS.c.id)
                .limit(limit)
            )
            if db.is_postgres:
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
            self._release([r["id"] for r in rows], str(exc))
            report.failed = len(rows)
            report.errors.append(str(exc))
            return report
        try:
            for row in rows:
                try:
                    message = build_message(smtp.from_address, row["recipient"], row["subject"], row["body"])
                except ValueError as exc:  # e.g. a line break in a header: retrying cannot help
                    self._give_up(row["id"], f"cannot build the e-mail: {exc}")
                    report.failed += 1
                    report.errors.append(f"e-mail {row['id']} to {row['recipient']}: {exc}")
                    continue
                try:
                    client.send_message(message)
                except (OSError, smtplib.SMTPException) as exc:
                    self._release([row["id"]], f"{type(exc).__name__}: {exc}")
                    report.failed += 1
                    report.errors.append(f"e-mail {row['id']} to {row['recipient']}: {exc}")
                    continue
                with db.transaction() as connection:
                    connection.execute(
                        update(EMAILS)
                        .where(EMAILS.c.id == row["id"])
                        .values(sent_at=db.now(), attempts=EMAILS.c.attempts + 1, claimed_until=None, last_error=None)
                    )
                report.sent += 1
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                pass
        return report

    def _give_up(self, email_id: int, error: str) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                update(EMAILS)
                .where(EMAILS.c.id == email_id)
                .values(attempts=MAX_SEND_ATTEMPTS, claimed_until=None, last_error=error[:2000])
            )

    def _release(self, ids: list[int], error: str) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                update(EMAILS)
                .where(EMAILS.c.id.in_(ids))
                .values(attempts=EMAILS.c.attempts + 1, claimed_until=None, last_error=error[:2000])
            )
