"""Every command block of the README (and the runnable `wattwise` commands of docs/*.md) works as written.

Commands run through bash, in order, in a scratch directory that holds what a reader has next to them
(the repository's `examples/` and `data/`, a Makefile, a `./train.py`, an `./app` folder), against a
temporary database that already holds ten finished runs (so `runs show 3` and `compare 4 5 6 --vs 7 8 9`
have runs to work on). A command fails the test when it exits with an error. Commands that need hardware
that is absent, run for minutes, serve until stopped, or stand for the reader's own files are skipped with
the reason listed in SKIP.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: command prefix (after `wattwise ` or as written) → why it is not run here
SKIP: dict[str, str] = {
    "bash scripts/setup.sh": "sets up the environment this test already runs in (the measure after && is run)",
    "bash scripts/test.sh": "runs the whole test suite",
    "wattwise run ": "starts real containers for tens of seconds (tests/scenario runs the example scenarios)",
    "wattwise serve": "serves until stopped (tests/web serves the same app)",
    "wattwise client": "the measurement machine's client runs until stopped (tests/cluster)",
    "wattwise exporter --listen": "serves until stopped (the --once form is run)",
    "wattwise slurm submit": "submits to Slurm with the reader's forecast.csv and job.sbatch (tests/executors)",
    "wattwise monitor-api": "needs a Prometheus with wattwise's recording rules (tests/monitor)",
    "wattwise monitor-proxy": "serves until stopped (tests/monitor)",
    "wattwise sweep": "runs for minutes on Dask (tests/schedule runs small sweeps)",
    "wattwise simulate ... ": "an elided command line",
    "wattwise timeline": "needs a git repository with measured commits",
    "wattwise ci ": "a CI agent for a runner (tests/ci)",
    "wattwise runs import energy.json --db postgresql://ci-db": "an example database host",
    "wattwise cluster": "needs the team's PostgreSQL host and measurement machines (tests/cluster)",
    "wattwise validate usage_scenario.yml": "the reader's own scenario file",
    "wattwise validate --uri ~/shop": "the reader's own project folder",
    "wattwise model synth model.json": "the reader's own model file",
    "wattwise model fit runs ": "the folders written by the model synth line above",
    "wattwise model cv runs ": "the folders written by the model synth line above",
    "wattwise model plot runs/run-1": "the folders written by the model synth line above",
    "wattwise exporter --once --mountinfo tree/": "a fixture tree of the reader's own",
    "wattwise exporter --once --interval 1 | grep": "the grep finds unit lines only where Slurm jobs or containers run",
    "wattwise simulate --jobs data/jobs/alibaba-pai-1k.csv --carbon data/carbon/DE-2024-hourly-electricitymaps.csv"
    " --model my-job.json": "the reader's own job model",
}
#: documents whose ```console/```bash blocks are run (commands starting with `wattwise`)
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def commands(path: Path) -> list[tuple[int, str]]:
    """(line, command) of each command in the ```console / ```bash blocks: `$ ` prompts in console blocks,
    every line in bash blocks; `\\` continuations joined, `# comments` dropped."""
    out: list[tuple[int, str]] = []
    lang: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            lang = None if lang is not None else (fence.group(1) or "text")
            continue
        if lang not in ("console", "bash", "sh", "shell"):
            continue
        if pending is not None:
            text = pending[1] + " " + line.strip()
        elif lang == "console":
            if not line.startswith("$ "):
                continue
            text, pending = line[2:].strip(), (number, "")
        else:
            text, pending = line.strip(), (number, "")
        start = pending[0] if pending else number
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        text = re.sub(r"\s+#.*$", "", text).strip()
        if text and not text.startswith("#"):
            out.append((start, text))
    return out


def skip_reason(command: str) -> str | None:
    for prefix, reason in SKIP.items():
        if command.startswith(prefix):
            return reason
    if "wattwise" not in command.split()[0] and not command.startswith("bash "):
        return "not a wattwise command"
    return None


def test_commands_are_found() -> None:
    found = commands(ROOT / "README.md")
    texts = [c for _, c in found]
    assert "wattwise compare 4 5 6 --vs 7 8 9" in texts
    assert any(t.startswith("wattwise simulate --jobs") and "--out out/pai" in t for t in texts)
    assert len(found) >= 20


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    from wattwise.analysis.synthetic import scenario_run, simple_run
    from wattwise.store import Store

    ws = tmp_path_factory.mktemp("reader")
    for name in ("examples", "data", "scripts"):
        (ws / name).symlink_to(ROOT / name)
    (ws / "Makefile").write_text("all:\n\tpython3 -c 'sum(range(100000))'\n")
    train = ws / "train.py"
    train.write_text("#!/usr/bin/env python3\nprint(sum(i * i for i in range(200_000)))\n")
    train.chmod(0o755)
    (ws / "app").mkdir()
    (ws / "app" / "usage_scenario.yml").write_text((ROOT / "examples/web-busybox/usage_scenario.yml").read_text())
    (ws / ".venv").symlink_to(BIN.parent)
    data_dir = ws / "wattwise-data"
    env = dict(os.environ)
    env.pop("WATTWISE_DATABASE_URL", None)
    env.update(
        WATTWISE_DATA_DIR=str(data_dir),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        COLUMNS="160",
        WATTWISE_TDP_W="20",
    )
    # ten finished runs, as a reader who has measured before has (runs show 3, compare 4 5 6 --vs 7 8 9)
    from wattwise.config import resolve_database_url

    old = os.environ.get("WATTWISE_DATA_DIR")
    os.environ["WATTWISE_DATA_DIR"] = str(data_dir)
    try:
        store = Store(resolve_database_url(None))
    finally:
        if old is None:
            os.environ.pop("WATTWISE_DATA_DIR")
        else:
            os.environ["WATTWISE_DATA_DIR"] = old
    scenario_run(store, sci={"TE": 1_000_000, "R_d": "request"})
    for energy in (100, 102, 99, 101, 130, 128, 131, 129, 127):
        simple_run(store, energy)
    return ws, env


def _all_commands() -> list[tuple[str, int, str]]:
    return [(doc, line, cmd) for doc in DOCS for line, cmd in commands(ROOT / doc)]


@pytest.mark.parametrize(("doc", "line", "command"), _all_commands(), ids=lambda v: str(v)[:60])
def test_command_works_as_written(workspace: tuple[Path, dict[str, str]], doc: str, line: int, command: str) -> None:
    if command.startswith("bash scripts/setup.sh && "):  # the environment is set up: run the command after it
        command = command.split("&& ", 1)[1]
    reason = skip_reason(command)
    if reason:
        pytest.skip(f"{doc}:{line}: {reason}")
    ws, env = workspace
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{doc}:{line}: `{command}` exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )
    assert "Traceback" not in result.stderr
