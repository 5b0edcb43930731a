"""Usage errors of every kind: one or two lines naming the problem and the --help to read, exit 2, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wattwise.cli import main

# (arguments, words the message must contain)
BAD_INVOCATIONS: list[tuple[list[str], list[str]]] = [
    (["runs", "shwo", "3"], ["No such command 'shwo'", "Did you mean 'show'", "wattwise runs --help"]),
    (["nosuchcommand"], ["No such command 'nosuchcommand'", "wattwise --help"]),
    (["runs", "list", "--limt", "3"], ["No such option: --limt", "--limit", "wattwise runs list --help"]),
    (["report"], ["Missing argument", "run_id", "wattwise report --help"]),
    (["runs", "show", "abc"], ["Invalid value for 'run_id'", "integer", "wattwise runs show --help"]),
    (["runs", "show", "1", "2"], ["unexpected extra argument", "wattwise runs show --help"]),
    (["sweep"], ["Missing argument", "wattwise sweep --help"]),
    (["measure", "--baselin", "2s", "--", "true"], ["No such option: --baselin", "--baseline"]),
    (["measure", "--interval"], ["--interval", "requires an argument"]),
    (["runs", "list", "--limit", "many"], ["Invalid value for '--limit'", "wattwise runs list --help"]),
    (["compare"], ["Missing argument"]),
    (["slurm", "submit", "--wait-hourz", "3", "--", "job.sbatch"], ["No such option: --wait-hourz"]),
]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("WATTWISE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["wattwise", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


@pytest.mark.parametrize(("argv", "words"), BAD_INVOCATIONS, ids=[" ".join(a) for a, _ in BAD_INVOCATIONS])
def test_usage_error_is_short_and_names_the_problem(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, err = _run(argv, capsys, monkeypatch, tmp_path)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("error:"), err
    flat = " ".join(err.split())
    for word in words:
        assert word in flat, (word, err)


def test_real_executable_prints_no_traceback_for_a_usage_error(run_cli) -> None:
    result = run_cli("runs", "shwo", "3")
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[0] == "error: No such command 'shwo'. Did you mean 'show'?"


def test_a_command_after_the_options_keeps_its_own_options(run_cli, tmp_path: Path) -> None:
    """Without `--`, the measured command starts at the first argument that is not an option of ours."""
    db = tmp_path / "w.db"
    result = run_cli(
        "measure", "--baseline", "0", "--db", str(db), "--json", "python3", "-c", "import sys; print(sys.argv[1:])", "-x"
    )
    assert result.returncode == 0, result.stderr
    assert "['-x']" in result.stderr  # with --json the command's output goes to stderr
    assert '"name": "python3 -c import sys; print(sys.argv[1:]) -x"' in result.stdout


def test_an_unforeseen_failure_is_one_line_and_the_traceback_is_there_on_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wattwise.cli import app

    def explode() -> None:
        raise RuntimeError("disk controller on fire")

    app.command("test-explode", hidden=True)(explode)
    try:
        monkeypatch.delenv("WATTWISE_DEBUG", raising=False)
        code, out, err = _run(["test-explode"], capsys, monkeypatch, tmp_path)
        assert code == 1 and "Traceback" not in out + err
        assert err.splitlines()[0] == "error: RuntimeError: disk controller on fire"
        assert "WATTWISE_DEBUG=1" in err
        monkeypatch.setenv("WATTWISE_DEBUG", "1")
        monkeypatch.setattr(sys, "argv", ["wattwise", "test-explode"])
        with pytest.raises(RuntimeError, match="on fire"):
            main()
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "test-explode"]
