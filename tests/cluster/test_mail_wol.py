"""E-mail through a real SMTP server on loopback (aiosmtpd), and Wake-on-LAN packets received on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from wattwise.cluster.database import EMAILS
from wattwise.cluster.mail import job_failed_email, job_finished_email
from wattwise.cluster.outbox import SmtpSettings
from wattwise.cluster.queue import ClusterQueue
from wattwise.cluster.records import OutgoingEmail
from wattwise.cluster.submission import JobRequest
from wattwise.cluster.wol import magic_packet
from wattwise.errors import WattwiseError

from .conftest import SmtpServer, free_port, invoke

SUMMARY = {
    "phases": [
        {"name": "[BASELINE]", "duration_s": 5.0, "energy_j": 50.0, "mean_power_w": 10.0, "carbon_g": 0.005,
         "estimated": False, "hidden": False},
        {"name": "[RUNTIME]", "duration_s": 12.5, "energy_j": 312.5, "mean_power_w": 25.0, "carbon_g": 0.03,
         "estimated": False, "hidden": False},
    ]
}


def _job(queue: ClusterQueue) -> Any:
    queue.machines.register("bench-1")
    return queue.jobs.submit(JobRequest(name="app", git_url="https://example.org/app.git", branch="main",
                                   machine_id="bench-1", email="dev@example.org"))


def test_job_emails_are_composed_with_summary_link_and_log_tail(sqlite_queue: ClusterQueue) -> None:
    job = _job(sqlite_queue)
    finished = job_finished_email(job, "bench-1", 17, SUMMARY, "https://wattwise.example.org/")
    assert finished is not None and finished.recipient == "dev@example.org"
    assert finished.subject == "[wattwise] job 1 'app' finished on bench-1"
    assert "[RUNTIME]: 12.5 s, energy 312.5 J, mean power 25 W" in finished.body
    assert "Results: https://wattwise.example.org/runs/17" in finished.body
    failed = job_failed_email(job, "bench-1", 18, "app exited with code 3", "line 1\nboom", None)
    assert failed is not None and failed.kind == "job-failed"
    assert "Error: app exited with code 3" in failed.body and failed.body.rstrip().endswith("line 1\nboom")
    no_email = sqlite_queue.jobs.submit(JobRequest(name="quiet", command=["true"]))
    assert job_finished_email(no_email, "bench-1", 1, None, None) is None


def test_queued_emails_are_sent_once_through_smtp(sqlite_queue: ClusterQueue, smtp_server: SmtpServer) -> None:
    job = _job(sqlite_queue)
    email = job_finished_email(job, "bench-1", 17, SUMMARY, "https://wattwise.example.org")
    assert email is not None
    sqlite_queue.outbox.queue([email, OutgoingEmail("ops@example.org", "second", "body two\n", "machine-notice")])
    smtp = SmtpSettings(smtp_server.host, smtp_server.port, from_address="wattwise@example.org")
    report = sqlite_queue.outbox.send_pending(smtp)
    assert (report.sent, report.failed) == (2, 0)
    assert sqlite_queue.outbox.send_pending(smtp).sent == 0  # nothing is sent twice
    messages = smtp_server.parsed()
    assert [m["To"] for m in messages] == ["dev@example.org", "ops@example.org"]
    assert messages[0]["From"] == "wattwise@example.org"
    assert messages[0]["Subject"] == "[wattwise] job 1 'app' finished on bench-1"
    assert "https://wattwise.example.org/runs/17" in messages[0].get_content()
    assert [e.rcpt_tos for e in smtp_server.messages] == [["dev@example.org"], ["ops@example.org"]]
    with sqlite_queue.db.transaction(write=False) as connection:
        rows = connection.execute(select(EMAILS.c.sent_at, EMAILS.c.attempts)).all()
    assert all(sent is not None and attempts == 1 for sent, attempts in rows)


def test_unreachable_smtp_server_leaves_emails_queued(sqlite_queue: ClusterQueue) -> None:
    sqlite_queue.outbox.queue([OutgoingEmail("ops@example.org", "s", "b", "machine-notice")])
    report = sqlite_queue.outbox.send_pending(SmtpSettings("127.0.0.1", free_port(), timeout_s=5))
    assert (report.sent, report.failed) == (0, 1) and "cannot reach the SMTP server" in report.errors[0]
    assert sqlite_queue.outbox.pending_count() == 1
    with sqlite_queue.db.transaction(write=False) as connection:
        row = connection.execute(select(EMAILS.c.attempts, EMAILS.c.last_error, EMAILS.c.claimed_until)).one()
    assert row[0] == 1 and "cannot reach" in row[1] and row[2] is None


def test_jobs_email_command_sends_the_queue(
    sqlite_url: str, sqlite_queue: ClusterQueue, smtp_server: SmtpServer, run_cli: Callable[..., Any]
) -> None:
    sqlite_queue.outbox.queue([OutgoingEmail(f"u{i}@example.org", f"s{i}", "b", "job-finished") for i in range(3)])
    result = run_cli("jobs", "email", "--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port),
                     "--from", "ww@example.org", "--db", sqlite_url)
    assert result.returncode == 0, result.stderr
    assert "sent 3 e-mail(s); 0 still queued" in result.stdout
    assert len(smtp_server.messages) == 3
    result = invoke("jobs", "email", "--smtp-host", "127.0.0.1", "--smtp-port", str(free_port()), "--db", sqlite_url)
    assert result.exit_code == 0, result.exception  # nothing queued, nothing to fail
    sqlite_queue.outbox.queue([OutgoingEmail("u@example.org", "s", "b", "job-finished")])
    result = invoke("jobs", "email", "--smtp-host", "127.0.0.1", "--smtp-port", str(free_port()), "--db", sqlite_url)
    assert result.exit_code == 1 and "e-mail failed: cannot reach the SMTP server" in result.stdout


# --- Wake-on-LAN --------------------------------------------------------------------------------------


def test_magic_packet_layout() -> None:
    packet = magic_packet("3c-ec-ef-01-02-0a")
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("3cecef01020a") * 16
    with pytest.raises(WattwiseError, match="not a MAC address"):
        magic_packet("3c:ec:ef:01:02:zz")


@pytest.fixture
def udp_listener() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def test_wake_sends_a_real_packet(udp_listener: socket.socket, run_cli: Callable[..., Any], sqlite_url: str) -> None:
    port = str(udp_listener.getsockname()[1])
    result = run_cli("cluster", "wake", "3C:EC:EF:01:02:0A", "--broadcast", "127.0.0.1", "--port", port)
    assert result.returncode == 0, result.stderr
    assert "sent wake-on-LAN packet for 3c:ec:ef:01:02:0a to 127.0.0.1:" in result.stdout
    data, _ = udp_listener.recvfrom(1024)
    assert data == b"\xff" * 6 + bytes.fromhex("3cecef01020a") * 16
    # by machine id, with the MAC address registered for it (in this process: the CLI is slow to start)
    assert invoke("cluster", "machines", "--add", "bench-1", "--mac", "aa:bb:cc:dd:ee:ff", "--db", sqlite_url).exit_code == 0
    result = invoke("cluster", "wake", "bench-1", "--broadcast", "127.0.0.1", "--port", port, "--db", sqlite_url)
    assert result.exit_code == 0, result.exception
    data, _ = udp_listener.recvfrom(1024)
    assert data[6:12] == bytes.fromhex("aabbccddeeff")
    result = invoke("cluster", "wake", "bench-2", "--db", sqlite_url)
    assert isinstance(result.exception, WattwiseError)
    assert "'bench-2' is neither a MAC address nor a machine id of the cluster" in str(result.exception)
    invoke("cluster", "machines", "--add", "bench-3", "--db", sqlite_url)
    result = invoke("cluster", "wake", "bench-3", "--db", sqlite_url)
    assert "machine bench-3 has no MAC address" in str(result.exception)
