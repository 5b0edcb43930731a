"""`wattwise cluster submit|jobs|cancel|machines|status|wake`, `wattwise client`, `wattwise jobs email|run-one`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from wattwise.clitools import DbOption, JsonOption, console

cluster_app = typer.Typer(
    help="Cluster mode: queue measurement jobs for dedicated machines, watch and cancel them, wake machines.",
    no_args_is_help=True,
)
jobs_app = typer.Typer(
    help="Cron-mode helpers of the cluster: send queued e-mails, process one job.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Client configuration (YAML, see docs/cluster.md). Default: $WATTWISE_CLIENT_CONFIG.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    app.command("client")(client)
    app.add_typer(jobs_app, name="jobs")


def _queue(db: str | None) -> Any:
    from wattwise.cluster.queue import ClusterQueue
    from wattwise.store import open_store

    return ClusterQueue(open_store(db))


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else ""


def _state(state: str) -> str:
    colour = {"WAITING": "yellow", "RUNNING": "cyan", "FINISHED": "green", "FAILED": "red"}.get(state, "white")
    return f"[{colour}]{state}[/]"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min ago"
    return f"{seconds / 3600:.1f}h ago"


# --- cluster submit ---------------------------------------------------------------------------------


@cluster_app.command("submit")
def submit(
    command: Annotated[
        list[str] | None, typer.Argument(help="A command to measure (after --), instead of a scenario.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Job name (default: the source).")] = None,
    machine: Annotated[
        str | None,
        typer.Option("--machine", "-m", help="Machine id to run on (default: the first free machine)."),
    ] = None,
    folder: Annotated[
        str | None, typer.Option("--folder", help="Folder with the usage_scenario (on the machine).")
    ] = None,
    git: Annotated[str | None, typer.Option("--git", help="Git repository URL with the usage_scenario.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Git branch or tag (default: HEAD).")] = None,
    filename: Annotated[
        str | None, typer.Option("--filename", "-f", help="Scenario file in the folder/repository.")
    ] = None,
    variables: Annotated[
        list[str] | None,
        typer.Option("--var", "--variable", help="NAME=VALUE for the scenario (env for commands); repeat."),
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="Send the result to this address.")] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Runs before a job whose clients keep dying is FAILED.")
    ] = 3,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Queue a job for a measurement machine.

    Examples:\n
      wattwise cluster submit --machine bench-1 --git https://github.com/org/app --branch main\n
      wattwise cluster submit --machine bench-1 --folder /srv/scenarios/app -f usage_scenario.yml --var PORT=8080\n
      wattwise cluster submit --name sleep --machine bench-1 --email me@example.org -- sleep 10
    """
    from wattwise.cluster.submission import JobRequest
    from wattwise.errors import WattwiseError

    parsed: dict[str, str] = {}
    for pair in variables or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WattwiseError(f"--var {pair!r}: use NAME=VALUE")
        if key in parsed:
            raise WattwiseError(f"--var {key} is given twice")
        parsed[key] = value
    folder_path = folder
    note = None
    if folder:
        resolved = Path(folder).expanduser()
        if resolved.exists() or not resolved.is_absolute():
            resolved = resolved.resolve()
        folder_path = str(resolved)
        if resolved.is_dir():
            scenario = resolved / (filename or "usage_scenario.yml")
            if not scenario.is_file():
                raise WattwiseError(f"no scenario file {scenario.name} in {resolved} (use --filename)")
        else:
            note = f"note: {resolved} does not exist here; it must exist on the machine that runs the job"
    default_name = " ".join(command) if command else (git or folder_path or "")
    request = JobRequest(
        name=(name or default_name)[:200],
        command=list(command) if command else None,
        folder=folder_path,
        git_url=git,
        branch=branch,
        filename=filename,
        variables=parsed,
        machine_id=machine,
        email=email,
        max_attempts=max_attempts,
    )
    job = _queue(db).jobs.submit(request)
    if as_json:
        print(json.dumps(job.to_dict()))
        return
    if note:
        console.print(note)
    target = job.machine_id or "any machine"
    console.print(f"queued job {job.id} '{job.name}' for {target} (state {job.state})")


# --- cluster jobs / cancel --------------------------------------------------------------------------


@cluster_app.command("jobs")
def list_jobs(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="Only this state: WAITING, RUNNING, FINISHED, FAILED, CANCELLED."),
    ] = None,
    machine: Annotated[
        str | None, typer.Option("--machine", "-m", help="Only jobs for or run on this machine.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List cluster jobs, newest first.

    Example: wattwise cluster jobs --state WAITING --machine bench-1
    """
    queue = _queue(db)
    states = [s.upper() for s in state] if state else None
    jobs = queue.jobs.list_jobs(state=states, machine_id=machine, limit=limit)
    if as_json:
        print(json.dumps([j.to_dict() for j in jobs]))
        return
    from rich.table import Table

    now = queue.db.db_now()
    table = Table(title=f"Cluster jobs ({len(jobs)})")
    for column in ("id", "name", "source", "machine", "state", "tries", "run", "created", "error"):
        table.add_column(column)
    for job in jobs:
        state_text = _state(job.state)
        if job.state == "RUNNING" and job.lease_expires_at is not None and job.lease_expires_at < now:
            state_text += " [red](lease expired)[/]"
        elif job.cancel_requested and job.state == "RUNNING":
            state_text += " (cancelling)"
        machine_text = job.machine_id or "any"
        if job.running_machine_id and job.running_machine_id != job.machine_id:
            machine_text += f" → {job.running_machine_id}"
        table.add_row(
            str(job.id),
            job.name,
            f"{job.source_type}: {job.source}"[:60],
            machine_text,
            state_text,
            f"{job.attempts}/{job.max_attempts}",
            str(job.run_id or ""),
            _when(job.created_at),
            (job.error or "")[:80],
        )
    console.print(table)


@cluster_app.command("cancel")
def cancel(
    job_ids: Annotated[list[int], typer.Argument(help="Job ids (see `wattwise cluster jobs`).")],
    db: DbOption = None,
) -> None:
    """Cancel jobs: a WAITING job at once, a RUNNING one is stopped by its client.

    Example: wattwise cluster cancel 12 13
    """
    queue = _queue(db)
    for job_id in job_ids:
        console.print(f"job {job_id}: {queue.jobs.cancel(job_id)}")


# --- cluster machines / status ----------------------------------------------------------------------


@cluster_app.command("machines")
def machines(
    add: Annotated[str | None, typer.Option("--add", help="Register (or update) a machine with this id.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="With --add.")] = None,
    base_temperature: Annotated[
        float | None, typer.Option("--base-temperature", help="With --add: base temperature in °C.")
    ] = None,
    mac: Annotated[str | None, typer.Option("--mac", help="With --add: MAC address for wake-on-LAN.")] = None,
    pause: Annotated[str | None, typer.Option("--pause", help="Stop giving jobs to this machine.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Give jobs to this machine again.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="With --pause: why.")] = "paused by an operator",
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List the measurement machines; register, pause or resume one.

    Examples:\n
      wattwise cluster machines\n
      wattwise cluster machines --add bench-1 --description "NUC i5" --base-temperature 38 --mac 3c:ec:ef:01:02:03\n
      wattwise cluster machines --pause bench-1 --reason "BIOS update"
    """
    from wattwise.errors import WattwiseError

    queue = _queue(db)
    if sum(x is not None for x in (add, pause, resume)) > 1:
        raise WattwiseError("give one of --add, --pause, --resume")
    if add is not None:
        info = queue.machines.register(
            add, description=description, base_temperature_c=base_temperature, mac_address=mac
        )
        console.print(f"machine {info.id} registered")
        return
    if pause is not None:
        queue.machines.get(pause)
        queue.machines.set_accepts_jobs(pause, False, reason)
        queue.machines.record_status(pause, None, "paused", f"paused by an operator: {reason}")
        console.print(f"machine {pause} takes no jobs now ({reason})")
        return
    if resume is not None:
        queue.machines.get(resume)
        queue.machines.set_accepts_jobs(resume, True)
        queue.machines.record_status(resume, None, "resumed", "resumed by an operator")
        console.print(f"machine {resume} takes jobs again")
        return
    now = queue.db.db_now()
    infos = queue.machines.all()
    waiting = queue.jobs.waiting_counts()
    if as_json:
        rows = []
        for m in infos:
            row = m.to_dict(now)
            row["waiting_jobs"] = waiting.get(m.id, 0)
            rows.append(row)
        print(json.dumps(rows))
        return
    _machines_table(infos, waiting, now)


def _machines_table(infos: list[Any], waiting: dict[str | None, int], now: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Machines ({len(infos)})")
    for column in ("id", "description", "status", "jobs", "temp °C (base)", "heartbeat", "waiting", "paused"):
        table.add_column(column)
    for m in infos:
        online = m.is_online(now)
        status = m.status if online else f"[red]offline[/] (was {m.status})"
        temp = "" if m.current_temperature_c is None else f"{m.current_temperature_c:.1f}"
        if m.base_temperature_c is not None:
            temp += f" ({m.base_temperature_c:.1f})"
        table.add_row(
            m.id,
            m.description,
            status,
            "[green]yes[/]" if m.accepts_jobs else "[red]no[/]",
            temp,
            _age(m.seconds_since_heartbeat(now)),
            str(waiting.get(m.id, 0)),
            m.paused_reason or "",
        )
    console.print(table)
    if waiting.get(None):
        console.print(f"{waiting[None]} job(s) wait for any machine")


@cluster_app.command("status")
def status(
    machine: Annotated[str | None, typer.Option("--machine", "-m", help="History of this machine only.")] = None,
    history: Annotated[int, typer.Option("--history", help="How many status history entries.")] = 15,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The cluster at a glance: machines, jobs per state, the latest client status history.

    Example: wattwise cluster status --machine bench-1 --history 30
    """
    queue = _queue(db)
    now = queue.db.db_now()
    infos = queue.machines.all()
    waiting = queue.jobs.waiting_counts()
    counts = queue.jobs.state_counts()
    entries = queue.machines.status_history(machine, history)
    if as_json:
        print(
            json.dumps(
                {
                    "machines": [m.to_dict(now) for m in infos],
                    "jobs": counts,
                    "waiting": {k or "any": v for k, v in waiting.items()},
                    "history": [e.to_dict() for e in entries],
                }
            )
        )
        return
    _machines_table(infos, waiting, now)
    console.print("jobs: " + ", ".join(f"{_state(k)} {v}" for k, v in counts.items()))
    if entries:
        from rich.table import Table

        table = Table(title="Status history (newest first)")
        for column in ("time", "machine", "status", "job", "message"):
            table.add_column(column)
        for e in entries:
            table.add_row(_when(e.created_at), e.machine_id, e.status, str(e.job_id or ""), e.message[:120])
        console.print(table)


# --- cluster wake -----------------------------------------------------------------------------------


@cluster_app.command("wake")
def wake(
    target: Annotated[str, typer.Argument(help="MAC address (aa:bb:cc:dd:ee:ff), or a machine id with one.")],
    broadcast: Annotated[str, typer.Option("--broadcast", help="Broadcast address to send to.")] = "255.255.255.255",
    port: Annotated[int, typer.Option("--port", help="UDP port (7 or 9 usually).")] = 9,
    db: DbOption = None,
) -> None:
    """Send a Wake-on-LAN magic packet.

    Examples:\n
      wattwise cluster wake 3c:ec:ef:01:02:03 --broadcast 192.168.1.255\n
      wattwise cluster wake bench-1
    """
    from wattwise.cluster.submission import MAC_RE, normalize_mac
    from wattwise.cluster.wol import send_magic_packet
    from wattwise.errors import WattwiseError

    try:
        mac = normalize_mac(target)
    except WattwiseError:
        machine = _queue(db).machines.find(target)
        if machine is None:
            raise WattwiseError(f"{target!r} is neither a MAC address nor a machine id of the cluster") from None
        if not machine.mac_address or not MAC_RE.match(machine.mac_address):
            raise WattwiseError(
                f"machine {target} has no MAC address: `wattwise cluster machines --add {target} --mac MAC` "
                "or mac_address in its client configuration"
            ) from None
        mac = machine.mac_address
    send_magic_packet(mac, broadcast, port)
    console.print(f"sent wake-on-LAN packet for {mac} to {broadcast}:{port}")


# --- client -----------------------------------------------------------------------------------------


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _client(config_path: Path | None, db: str | None) -> Any:
    from wattwise.cluster.client import Client
    from wattwise.cluster.config import load_config
    from wattwise.config import resolve_database_url
    from wattwise.store import Store

    config = load_config(config_path)
    url = resolve_database_url(db or config.database)
    return Client(Store(url), config)


def client(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="One round (for cron), then exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    db: DbOption = None,
) -> None:
    """Run the measurement client of this machine: poll for its jobs, measure, report, clean up.

    It heartbeats, validates the control workload when due, waits for the temperature gate, claims one job
    at a time with a lease, and sleeps `sleep_time_s` (or runs the shutdown command) when idle.
    SIGTERM stops it; a running job goes back to the queue.

    Examples:\n
      wattwise client --config /etc/wattwise/client.yml\n
      wattwise client --config client.yml --once
    """
    _setup_logging(verbose)
    _client(config, db).run_forever(once=once)


# --- jobs email / run-one ---------------------------------------------------------------------------


@jobs_app.command("email")
def jobs_email(
    config: ConfigOption = None,
    smtp_host: Annotated[str | None, typer.Option("--smtp-host", help="Instead of --config.")] = None,
    smtp_port: Annotated[int, typer.Option("--smtp-port")] = 25,
    smtp_security: Annotated[str, typer.Option("--smtp-security", help="none, starttls or ssl.")] = "none",
    smtp_user: Annotated[
        str | None, typer.Option("--smtp-user", help="Login (password from $WATTWISE_SMTP_PASSWORD).")
    ] = None,
    sender: Annotated[str, typer.Option("--from", help="Sender address.")] = "wattwise@localhost",
    db: DbOption = None,
) -> None:
    """Send the queued cluster e-mails (cron mode), with the SMTP settings of --config or --smtp-*.

    Examples:\n
      wattwise jobs email --config /etc/wattwise/client.yml\n
      wattwise jobs email --smtp-host mail.example.org --smtp-port 587 --smtp-security starttls --from ww@example.org
    """
    import os

    from wattwise.cluster.config import load_config
    from wattwise.cluster.outbox import SmtpSettings
    from wattwise.cluster.queue import ClusterQueue
    from wattwise.errors import WattwiseError
    from wattwise.store import open_store

    if smtp_host:
        if smtp_security not in ("none", "starttls", "ssl"):
            raise WattwiseError(f"--smtp-security {smtp_security!r}: use none, starttls or ssl")
        smtp = SmtpSettings(
            smtp_host, smtp_port, smtp_user, os.environ.get("WATTWISE_SMTP_PASSWORD"), smtp_security, sender
        )
        database = db
    else:
        loaded = load_config(config)
        if loaded.smtp is None:
            raise WattwiseError(f"{loaded.path}: no 'smtp' section: cannot send e-mail")
        smtp = loaded.smtp
        database = db or loaded.database
    queue = ClusterQueue(open_store(database))
    total = failed = 0
    while True:
        report = queue.outbox.send_pending(smtp)
        total += report.sent
        failed += report.failed
        for error in report.errors or []:
            console.print(f"[red]e-mail failed:[/] {error}")
        if report.failed or report.sent == 0:
            break
    console.print(f"sent {total} e-mail(s); {queue.outbox.pending_count()} still queued")
    if failed:
        raise typer.Exit(1)


@jobs_app.command("run-one")
def jobs_run_one(
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    db: DbOption = None,
) -> None:
    """Process at most one job of this machine (cron mode): temperature gate, claim, measure, cleanup.

    Example (crontab): */5 * * * * wattwise jobs run-one --config /etc/wattwise/client.yml
    """
    _setup_logging(verbose)
    job = _client(config, db).run_one()
    if job is None:
        console.print("no job run")
    else:
        console.print(f"job {job.id} '{job.name}' processed")
