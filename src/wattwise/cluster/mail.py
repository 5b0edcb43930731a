"""E-mails of the cluster, composed (pure functions: values in, an `OutgoingEmail` out) when something
happens: a job finished, failed or was cancelled, a job's client lost its lease for good, the control
workload passed or failed, a machine notice. They are queued and sent by `wattwise.cluster.outbox`.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from wattwise.cluster.records import JobInfo, OutgoingEmail


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


def build_message(from_address: str, recipient: str, subject: str, body: str) -> EmailMessage:
    """The e-mail as sent; ValueError when a header cannot be written (e.g. a line break in it)."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=from_address.rsplit("@", 1)[-1] or None)
    message.set_content(body)
    return message
