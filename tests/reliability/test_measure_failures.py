"""A measurement that cannot write its samples, or whose process is killed, is never reported as finished."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from tests.conftest import is_root, wattwise_bin

from wattwise.store import RunStatus, Store


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["WATTWISE_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    return env


def _samples(store: Store, run_id: int) -> int:
    return store.sample_count(run_id)


def test_disk_full_during_measure_ends_incomplete_keeps_samples_and_exits_non_zero(
    small_disk: Path, tmp_path: Path
) -> None:
    # leave ~700 kB of the 2 MiB: the run fills it within seconds at 10 ms
    (small_disk / "filler").write_bytes(b"\0" * (1300 * 1024))
    db = small_disk / "x.db"
    result = subprocess.run(
        [*wattwise_bin(), "measure", "--db", str(db), "--interval", "10ms", "--baseline", "0", "--", "sleep", "12"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "could not be written" in result.stderr
    (small_disk / "filler").unlink()  # room to read it back
    store = Store(f"sqlite:///{db}")
    run = store.list_runs()[0]
    assert run.status == RunStatus.INCOMPLETE
    assert "disk is full" in (run.error or "")
    assert "could not be written" in (run.error or "")
    assert _samples(store, run.id) > 0  # what was written is kept
    assert [p.name for p in store.phases(run.id)] == ["[RUNTIME]"]
    assert not list((tmp_path / "data" / "running").glob("*.json"))  # closed: no marker left


def _wait_for(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _wattwise_cgroups(pattern: str) -> list[Path]:
    from wattwise.providers.cgroup import CgroupMounts

    mounts = CgroupMounts.from_mountinfo()
    points = {m.mount_point for m in mounts.v1.values()} | ({mounts.v2.mount_point} if mounts.v2 else set())
    return [p for point in points for p in (point / "wattwise").glob(pattern)]


def _start_killable_measure(tmp_path: Path, db: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`wattwise measure -- sleep 300` started, waited for until its command runs in its cgroup."""
    process = subprocess.Popen(
        [*wattwise_bin(), "measure", "--db", str(db), "--interval", "50ms", "--baseline", "1s", "--", "sleep", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(tmp_path),
    )
    found: list[Path] = []

    def command_running() -> bool:
        found[:] = [p for p in _wattwise_cgroups(f"run-*-{process.pid}") if (p / "cgroup.procs").read_text().strip()]
        return bool(found)

    _wait_for(command_running)
    return process, found[0]


@pytest.mark.skipif(not is_root(), reason="cgroups need root")
def test_kill_9_of_measure_then_runs_recover_marks_crashed_and_removes_leftovers(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    process, cgroup = _start_killable_measure(tmp_path, db)
    command_pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    time.sleep(1.0)  # some runtime samples
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = Store(f"sqlite:///{db}")
    run = store.list_runs()[0]
    assert run.status == RunStatus.RUNNING  # nobody closed it
    assert run.owner_pid == process.pid and run.owner_host
    assert all(Path(f"/proc/{pid}").exists() for pid in command_pids)  # `sleep 300` was left behind
    before = _samples(store, run.id)
    assert before > 0

    result = subprocess.run([*wattwise_bin(), "runs", "recover", "--db", str(db)], capture_output=True, text=True,
                            timeout=120, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"recovered run {run.id}" in result.stderr
    run = store.get_run(run.id)
    assert run.status == RunStatus.CRASHED
    assert str(process.pid) in (run.error or "")
    assert _samples(store, run.id) == before  # samples kept
    phases = {p.name: p for p in store.phases(run.id)}
    assert set(phases) == {"[BASELINE]", "[RUNTIME]"}  # the open phase closed at the last sample
    assert phases["[RUNTIME]"].end_us > phases["[RUNTIME]"].start_us
    assert not cgroup.exists()
    assert not _wattwise_cgroups(f"run-{run.id}-{process.pid}")
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in command_pids), 10)
    # once recovered, nothing left to do
    again = subprocess.run([*wattwise_bin(), "runs", "recover", "--db", str(db), "--json"], capture_output=True,
                           text=True, timeout=120, env=_env(tmp_path))
    assert again.stdout.strip() == "[]"


@pytest.mark.skipif(not is_root(), reason="cgroups need root")
def test_kill_9_is_recovered_by_the_next_wattwise_command(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    process, cgroup = _start_killable_measure(tmp_path, db)
    process.send_signal(signal.SIGKILL)
    process.wait()
    markers = list((tmp_path / "data" / "running").glob("*.json"))
    assert len(markers) == 1
    # any command: here one that does not even open the database
    result = subprocess.run([*wattwise_bin(), "providers", "--help"], capture_output=True, text=True, timeout=120,
                            env=_env(tmp_path))
    assert result.returncode == 0
    assert "recovered run" in result.stderr
    store = Store(f"sqlite:///{db}")
    assert store.list_runs()[0].status == RunStatus.CRASHED
    assert not cgroup.exists()
    assert not list((tmp_path / "data" / "running").glob("*"))


def test_a_live_owner_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wattwise.measure.recovery import recover_runs
    from wattwise.measure.session import MeasurementSession, SessionOptions

    monkeypatch.setenv("WATTWISE_DATA_DIR", str(tmp_path / "data"))
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    session = MeasurementSession(store, SessionOptions(name="alive", providers=["cpu"]))
    run_id = session.open()
    session.start()
    try:
        assert recover_runs(store) == []  # this process owns it and is alive
        assert store.get_run(run_id).status == RunStatus.RUNNING
    finally:
        session.finish(RunStatus.FINISHED)
    assert store.get_run(run_id).status == RunStatus.FINISHED


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("foo://bar", "unknown database kind 'foo'"),
        ("/nonexistent-wattwise/dir/x.db", "does not exist"),
    ],
)
def test_bad_database_is_a_clear_error(db: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run([*wattwise_bin(), "runs", "list", "--db", db], capture_output=True, text=True,
                            timeout=120, env=_env(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("/nonexistent-wattwise").exists()  # not created silently


@pytest.mark.skipif(not is_root(), reason="chattr +i needs root")
def test_immutable_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    Store(f"sqlite:///{db}").close()
    subprocess.run(["chattr", "+i", str(db)], check=True)
    try:
        result = subprocess.run(
            [*wattwise_bin(), "measure", "--db", str(db), "--baseline", "0", "--", "true"],
            capture_output=True, text=True, timeout=120, env=_env(tmp_path),
        )
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert result.returncode == 2
    assert "readonly database" in result.stderr and "immutable" in result.stderr
    assert "Traceback" not in result.stderr


HOST_SCENARIO = """\
name: killed while running
author: wattwise tests
description: a host service and a long step
services:
  ticker:
    command: sleep 300
flow:
  - name: Work
    container: ticker
    commands:
      - type: console
        command: sleep 300
"""


@pytest.mark.skipif(not is_root(), reason="cgroups need root")
def test_kill_9_of_run_with_host_services_is_recovered(tmp_path: Path) -> None:
    """`wattwise run` (host backend) killed: the service and the step's processes, in the scenario's cgroups, are
    killed and the cgroups removed; the run is crashed with its samples and open phases."""
    scenario = tmp_path / "usage_scenario.yml"
    scenario.write_text(HOST_SCENARIO)
    db = tmp_path / "w.db"
    process = subprocess.Popen(
        [*wattwise_bin(), "run", str(scenario), "--backend", "host", "--dev-no-sleeps", "--interval", "50ms",
         "--db", str(db)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(tmp_path),
    )
    store = Store(f"sqlite:///{db}")

    def step_running() -> bool:
        if not db.exists():
            return False
        runs = store.list_runs()
        if not runs:
            return False
        token = (runs[0].settings or {}).get("run_token")
        cgroups = _wattwise_cgroups(f"scenario-{token}-*") if token else []
        return any((p / "cgroup.procs").read_text().split() for p in cgroups) and bool(store.sample_count(runs[0].id))

    _wait_for(step_running, 120)
    time.sleep(1.5)  # the flow step starts after the service
    run = store.list_runs()[0]
    token = run.settings["run_token"]
    cgroups = _wattwise_cgroups(f"scenario-{token}-*")
    pids = [int(p) for c in cgroups for p in (c / "cgroup.procs").read_text().split()]
    assert pids
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert store.get_run(run.id).status == RunStatus.RUNNING
    result = subprocess.run([*wattwise_bin(), "runs", "recover", "--db", str(db)], capture_output=True, text=True,
                            timeout=120, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    run = store.get_run(run.id)
    assert run.status == RunStatus.CRASHED
    assert _samples(store, run.id) > 0
    assert not _wattwise_cgroups(f"scenario-{token}-*")
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10)


def test_a_marker_whose_database_is_gone_is_retried_later_not_by_every_command(tmp_path: Path) -> None:
    import json
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()
    markers = tmp_path / "data" / "running"
    markers.mkdir(parents=True)
    marker = markers / f"{dead.pid}-7.json"
    marker.write_text(json.dumps({"url": "postgresql://nobody@127.0.0.1:1/gone", "run_id": 7,
                                  "host": socket.gethostname(), "pid": dead.pid, "start_ticks": 1, "cgroups": []}))
    (markers / "123-8.recovering-999999999").write_text("{}")  # its recoverer died: put back
    first = subprocess.run([*wattwise_bin(), "--help"], capture_output=True, text=True, timeout=120,
                           env=_env(tmp_path))
    assert first.returncode == 0 and "Traceback" not in first.stderr
    data = json.loads(marker.read_text())
    assert data["attempted_at"] > 0  # tried once, kept for later
    assert (markers / "123-8.json").exists()
    assert not list(markers.glob("*.recovering-*"))


@pytest.mark.skipif(not is_root() or shutil.which("podman") is None, reason="podman as root")
def test_recovery_removes_this_databases_labelled_networks_and_containers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import socket

    from wattwise.measure.recovery import recover_runs

    monkeypatch.setenv("WATTWISE_DATA_DIR", str(tmp_path / "data"))
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_id = store.create_run("killed", owner=(socket.gethostname(), dead.pid, 1))
    ours = hashlib.sha256(store.url.encode()).hexdigest()[:12]
    tag = uuid.uuid4().hex[:8]
    podman = ["podman", *shlex.split(os.environ.get("WATTWISE_PODMAN_ARGS", ""))]
    names = {"mine": f"ww-rec-{tag}-mine", "other": f"ww-rec-{tag}-other"}
    for who, key in (("mine", ours), ("other", "0123456789ab")):
        subprocess.run([*podman, "network", "create", "--label", f"wattwise.run_id={run_id}", "--label",
                        f"wattwise.store={key}", names[who]], check=True, capture_output=True)
    try:
        (recovered,) = recover_runs(store)
        assert recovered.status == RunStatus.CRASHED
        listed = subprocess.run([*podman, "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                                text=True, check=True).stdout.split()
        assert names["mine"] not in listed  # this database's run: removed
        assert names["other"] in listed  # same run id, another database: left alone
        assert any(r.startswith("network ") for r in recovered.removed)
    finally:
        subprocess.run([*podman, "network", "rm", "-f", *names.values()], capture_output=True, check=False)
