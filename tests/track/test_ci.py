"""`wattwise ci start|mark|end` with the real background agent, and `wattwise runs import` of what it wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from wattwise.store import Store


@pytest.fixture
def ci_env(tmp_path: Path) -> dict[str, str]:
    return {"WATTWISE_CI_DIR": str(tmp_path / "ci"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_REPOSITORY": "acme/shop", "GITHUB_JOB": "build"}


def test_steps_are_marked_summarised_and_importable(run_cli, ci_env: dict[str, str], tmp_path: Path) -> None:
    run_cli("ci", "start", "--intensity", "300", "--interval", "200ms", env=ci_env, check=True)
    sum(i * i for i in range(200_000))
    run_cli("ci", "mark", "install", env=ci_env, check=True)
    time.sleep(0.3)
    run_cli("ci", "mark", "unit | tests", env=ci_env, check=True)
    end = run_cli("ci", "end", "--label", "deploy", "--json", str(tmp_path / "energy.json"), env=ci_env, check=True)
    assert "| install |" in end.stdout and "| unit \\| tests |" in end.stdout and "| **total** |" in end.stdout
    assert Path(ci_env["GITHUB_STEP_SUMMARY"]).read_text() == end.stdout  # posted for the job's summary page
    document = json.loads((tmp_path / "energy.json").read_text())
    assert document["kind"] == "ci" and document["name"] == "acme/shop / build"
    assert document["settings"]["ci"]["GITHUB_JOB"] == "build"
    steps = [p for p in document["phases"] if p["parent"] == "[RUNTIME]"]
    assert [p["name"] for p in steps] == ["install", "unit | tests", "deploy"]
    total = next(p for p in document["phases"] if p["name"] == "[RUNTIME]")
    # the steps tile the run: their durations and energies add up to the total
    assert sum(p["duration_s"] for p in steps) == pytest.approx(total["duration_s"], abs=1e-6)
    assert sum(p["energy_j"] for p in steps) == pytest.approx(total["energy_j"], rel=1e-9)
    assert all(p["energy_j"] > 0 for p in steps)
    assert total["carbon_g"] == pytest.approx(total["energy_j"] / 3.6e6 * 300, rel=1e-9)

    db = tmp_path / "team.db"
    imported = run_cli("runs", "import", str(tmp_path / "energy.json"), "--db", str(db), "--json", check=True)
    run_id = json.loads(imported.stdout)["imported"][0]["run_id"]
    exported = run_cli("runs", "export", str(run_id), "--format", "json", "--db", str(db), check=True)
    again = json.loads(exported.stdout)
    # the same figures from the imported samples
    assert [(p["name"], p["energy_j"], p["duration_s"]) for p in again["phases"]] == [
        (p["name"], p["energy_j"], p["duration_s"]) for p in document["phases"]
    ]
    assert Store(f"sqlite:///{db}").get_run(run_id).status == "finished"


def test_a_mark_without_an_agent_is_a_clear_error(run_cli, ci_env: dict[str, str]) -> None:
    result = run_cli("ci", "mark", "x", env=ci_env)
    assert result.returncode == 2
    assert "no wattwise CI agent is running" in result.stderr and "Traceback" not in result.stderr


def agent_pid(start_stdout: str) -> int:
    return int(start_stdout.split("agent pid ")[1].split(",")[0])


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + 60  # hang guard only
    while not predicate():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_a_stopped_agent_closes_its_run_as_interrupted_and_end_uses_it(
    run_cli, ci_env: dict[str, str], tmp_path: Path
) -> None:
    start = run_cli("ci", "start", "--interval", "200ms", env=ci_env, check=True)
    run_cli("ci", "mark", "build", env=ci_env, check=True)
    os.kill(agent_pid(start.stdout), signal.SIGTERM)
    result_file = Path(ci_env["WATTWISE_CI_DIR"]) / "wattwise-ci.json"
    wait_for(result_file.exists, "the agent's document")
    document = json.loads(result_file.read_text())
    assert document["status"] == "interrupted" and "stopped before" in document["error"]

    # `ci end` with `if: always()` after a cancelled job: the document the agent left, said to be interrupted
    end = run_cli("ci", "end", "--json", str(tmp_path / "energy.json"), env=ci_env)
    assert end.returncode == 0, end.stderr
    assert "already stopped" in end.stderr and "ended as interrupted" in end.stderr
    assert "| build |" in end.stdout and "> ⚠ the run ended as interrupted: the CI agent was stopped" in end.stdout
    assert Path(ci_env["GITHUB_STEP_SUMMARY"]).read_text() == end.stdout
    assert (tmp_path / "energy.json").read_bytes() == result_file.read_bytes()
    # used once: a second `end` (or one in a later job) does not post this run again
    again = run_cli("ci", "end", env=ci_env)
    assert again.returncode == 2 and "no wattwise CI agent is running" in again.stderr


def test_a_document_of_an_earlier_job_is_not_taken_for_this_one(run_cli, ci_env: dict[str, str]) -> None:
    folder = Path(ci_env["WATTWISE_CI_DIR"])
    start = run_cli("ci", "start", env=ci_env, check=True)
    os.kill(agent_pid(start.stdout), signal.SIGTERM)
    wait_for((folder / "wattwise-ci.json").exists, "the agent's document")
    later = time.time() + 5  # as if this job's `ci start` came after the document was written
    os.utime(folder / "agent.started", (later, later))
    result = run_cli("ci", "end", env=ci_env)
    assert result.returncode == 2 and "no wattwise CI agent is running" in result.stderr


def test_the_agent_outlives_silent_and_vanishing_clients(run_cli, ci_env: dict[str, str], tmp_path: Path) -> None:
    folder = Path(ci_env["WATTWISE_CI_DIR"])
    start = run_cli("ci", "start", "--interval", "200ms", env=ci_env, check=True)
    pid = agent_pid(start.stdout)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(folder / "agent.sock"))  # connects and never sends a request
        # a client that sends a mark and leaves before the reply: the agent is stopped meanwhile, so that its
        # reply surely finds the connection closed
        os.kill(pid, signal.SIGSTOP)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
                gone.connect(str(folder / "agent.sock"))
                gone.sendall(b"mark vanished\n")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: "went away before the reply" in (folder / "agent.log").read_text(), "the agent's log line")
        # the silent connection does not hold up the others
        run_cli("ci", "mark", "tests", env=ci_env, check=True)
    end = run_cli("ci", "end", "--json", str(tmp_path / "energy.json"), env=ci_env)
    assert end.returncode == 0, end.stderr
    document = json.loads((tmp_path / "energy.json").read_text())
    assert document["status"] == "finished"
    steps = [p["name"] for p in document["phases"] if p["parent"] == "[RUNTIME]"]
    assert steps[:2] == ["vanished", "tests"]  # the vanished client's mark was still made
    assert "| vanished |" in end.stdout and "| tests |" in end.stdout


def test_a_group_writable_state_folder_is_refused(run_cli, ci_env: dict[str, str]) -> None:
    folder = Path(ci_env["WATTWISE_CI_DIR"])
    folder.mkdir()
    folder.chmod(0o775)
    for args in (("ci", "start"), ("ci", "mark", "x"), ("ci", "end")):
        result = run_cli(*args, env=ci_env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"the CI state folder {folder} is group-writable (mode 0775)" in " ".join(result.stderr.split())
    assert not (folder / "agent.log").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_state_folder_of_another_user_is_refused(run_cli, ci_env: dict[str, str]) -> None:
    folder = Path(ci_env["WATTWISE_CI_DIR"])
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    result = run_cli("ci", "start", env=ci_env)
    assert result.returncode == 2
    assert f"belongs to uid 65534, not to you (uid {os.getuid()})" in " ".join(result.stderr.split())


def test_a_new_state_folder_is_private_and_a_planted_log_link_is_refused(
    run_cli, ci_env: dict[str, str], tmp_path: Path
) -> None:
    folder = Path(ci_env["WATTWISE_CI_DIR"])
    start = run_cli("ci", "start", env=ci_env, check=True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    run_cli("ci", "end", env=ci_env, check=True)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (folder / "agent.log").unlink()
    (folder / "agent.log").symlink_to(victim)
    result = run_cli("ci", "start", env=ci_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{folder / 'agent.log'} is a symbolic link" in " ".join(result.stderr.split())
    assert victim.read_text() == "keep me\n"  # not truncated
    assert start.returncode == 0


def test_importing_something_else_is_a_clear_error(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "status": "finished", "phases": [], "metrics": [
        {"name": "power_w", "unit": "W", "kind": "gauge", "t_us": [1, 2], "values": [1.0]}]}))
    result = run_cli("runs", "import", str(bad), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert "metrics[0]: 2 times but 1 values" in result.stderr
    (tmp_path / "notjson.json").write_text("{")
    result = run_cli("runs", "import", str(tmp_path / "notjson.json"), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2 and "is not JSON" in result.stderr


def test_the_agent_closes_its_run_after_its_time_cap(tmp_path: Path) -> None:
    from wattwise.integrations.ci import AgentOptions, agent_main, check_state_dir

    folder = tmp_path / "ci"
    check_state_dir(folder, create=True)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = agent_main(AgentOptions(folder, "capped", interval_s=0.2, intensity_g_per_kwh=100, max_duration_s=0.5))
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    document = json.loads((folder / "wattwise-ci.json").read_text())
    assert code == 1 and document["status"] == "interrupted"
    assert document["error"] == "no `wattwise ci end` within 0.5 s"
    assert [p["name"] for p in document["phases"]] == ["[RUNTIME]"]
    assert not (folder / "agent.sock").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"phases": [{"name": "x", "start_us": "1", "end_us": 2}]}, "phases[0]: start_us and end_us must be whole"),
    ({"notes": [{"text": "no time"}]}, "notes[0] needs t_us and text"),
    ({"metrics": 5}, "metrics and phases must be lists"),
    ({"metrics": [{"name": "p", "unit": "W", "kind": "gauge", "t_us": 3, "values": [1]}]}, "must be lists"),
    ({"metrics": [{"name": "p", "unit": "W", "kind": "gauge", "t_us": [1], "values": [True]}]}, "finite numbers"),
])
def test_malformed_documents_are_clear_errors(change: dict, message: str, tmp_path: Path) -> None:
    from wattwise.errors import WattwiseError
    from wattwise.store.transfer import import_run_document

    document = {"name": "x", "status": "finished", "phases": [], "metrics": [], **change}
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(WattwiseError, match=re.escape(message)):
        import_run_document(store, document, source="f.json")
    assert store.list_runs() == []  # nothing was written
