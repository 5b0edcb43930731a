"""Sweeps on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on loopback, started here.

The cluster's table equals the local run's; a worker killed mid-sweep loses no cell and duplicates none; an
interrupted `wattwise sweep` (SIGINT) keeps its finished cells and `--resume` recomputes none of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from wattwise.schedule.runner import run
from wattwise.schedule.sweep import load_grid

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CARBON = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"
STRIP = ("elapsed_s", "cpu_s")

# 5 policies × 3 lengths × 4 waits × 2 startups × 2 months × 2 forecast errors = 480 cells, all distinct
GRID = f"""
carbon: {CARBON}
months: [2024-07, 2024-08]
resolution: 15min
arrivals_h: [0, 30]
phases:
  alt: [{{name: high, duration_s: 1800, power_w: 200}}, {{name: low, duration_s: 1800, power_w: 100}}]
grid:
  policy: [agnostic, carbon-time, oracle, wait-awhile, suspend-resume]
  phases: alt
  length_h: [1, 2, 3]
  wait_h: [2, 4, 8, 12]
  startup_min: [0, 15]
  startup_w: 100
  forecast_error: [0, 0.2]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_workers(address: str, n: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout_s  # hang guard only
    with Client(address, timeout="60s") as client:
        while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
            assert proc.poll() is None, "the dask scheduler exited"
            assert time.monotonic() < deadline, "the Dask workers did not connect"
            time.sleep(0.2)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.log = (tmp / "dask.log").open("wb")
        self.scheduler = subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--dashboard-address", ":0", "--no-show"], stdout=self.log, stderr=subprocess.STDOUT)
        self.workers: list[subprocess.Popen[bytes]] = []
        for i in range(2):
            self.start_worker(f"w{i}")
        wait_for_workers(self.address, 2, self.scheduler)

    def start_worker(self, name: str) -> None:
        self.workers.append(subprocess.Popen(
            [str(BIN / "dask"), "worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "1",
             "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", ":0", "--local-directory",
             str(self.tmp / name)], stdout=self.log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yml"
    path.write_text(GRID, encoding="utf-8")
    return path


# slower cells (100 arrivals each, per-job policies), so that SIGINT arrives mid-sweep: 96 cells
SLOW_GRID = GRID.replace("arrivals_h: [0, 30]", "arrivals_h: {every: 1, count: 100}").replace(
    "[agnostic, carbon-time, oracle, wait-awhile, suspend-resume]", "[threshold, carbon-time, oracle]").replace(
    "length_h: [1, 2, 3]", "length_h: [1, 2]").replace("forecast_error: [0, 0.2]", "forecast_error: 0.2")


def table(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in STRIP} for r in rows]


def saved_cells(out: Path) -> list[dict]:
    return [row for part in sorted((out / "cells").glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]


def test_cluster_table_equals_local_and_survives_a_killed_worker(cluster: Cluster, grid_file: Path,
                                                                  tmp_path: Path) -> None:
    grid = load_grid(grid_file)
    local = run(grid, workers=1)
    assert len(local) == 480
    assert len({r["cell"] for r in local}) == 480
    assert {r["month"] for r in local} == {"2024-07", "2024-08"} and {r["zone"] for r in local} == {"DE"}

    # the same cells on the cluster, one of its two workers killed once a tenth of the cells are done
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not killed and done >= total // 10:
            victim = cluster.workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed.append(done)

    out = tmp_path / "out"
    remote = run(grid, scheduler=cluster.address, out=out, progress=progress)
    assert killed and killed[0] < 480
    assert table(remote) == table(local)
    cells = saved_cells(out)
    assert sorted(r["cell"] for r in cells) == sorted(r["cell"] for r in local)  # each once, none lost
    cluster.start_worker("w2")  # back to two workers for the next test
    wait_for_workers(cluster.address, 2, cluster.scheduler)


def test_sigint_then_resume_recomputes_nothing_done(cluster: Cluster, tmp_path: Path) -> None:
    grid_file = tmp_path / "slow.yml"
    grid_file.write_text(SLOW_GRID, encoding="utf-8")
    n = len(load_grid(grid_file).configs())
    assert n == 96
    out = tmp_path / "out"
    cmd = [str(BIN / "wattwise"), "sweep", str(grid_file), "--out", str(out), "--scheduler", cluster.address,
           "--no-plots"]
    env = {**os.environ, "WATTWISE_SWEEP_FLUSH_S": "0.2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300  # hang guard only
    while not list((out / "cells").glob("part-*.parquet")) if (out / "cells").is_dir() else True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    first = saved_cells(out)
    if proc.returncode == 0:  # pragma: no cover - the sweep beat the signal; nothing to resume
        pytest.skip("the sweep finished before SIGINT arrived")
    assert proc.returncode == 130, err.decode()
    assert b"--resume" in err
    assert 0 < len(first) < n
    assert not (out / "results.csv").exists()

    done = subprocess.run([*cmd, "--resume"], capture_output=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr.decode()
    cells = saved_cells(out)
    assert len(cells) == n and len({r["cell"] for r in cells}) == n  # each cell written once
    first_run = {r["run_id"] for r in first}
    assert len(first_run) == 1
    # the cells saved before the interruption are still those rows, and the resumed run computed only the rest
    assert [r for r in cells if r["run_id"] in first_run] == first
    assert sum(r["run_id"] not in first_run for r in cells) == n - len(first)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == n + 1


def test_resume_refuses_another_grid_and_plain_rerun_refuses_old_results(grid_file: Path, tmp_path: Path) -> None:
    from wattwise.errors import ConfigError

    small = tmp_path / "small.yml"
    small.write_text(GRID.replace("[agnostic, carbon-time, oracle, wait-awhile, suspend-resume]", "agnostic")
                     .replace("[2024-07, 2024-08]", "[2024-07]"), encoding="utf-8")
    out = tmp_path / "out"
    rows = run(load_grid(small), workers=1, out=out)
    assert len(rows) == 48
    with pytest.raises(ConfigError, match="--resume"):
        run(load_grid(small), workers=1, out=out)
    assert len(run(load_grid(small), workers=1, out=out, resume=True)) == 48
    assert len(saved_cells(out)) == 48  # nothing rerun, nothing written twice
    with pytest.raises(ConfigError, match="another grid"):
        run(load_grid(grid_file), workers=1, out=out, resume=True)
