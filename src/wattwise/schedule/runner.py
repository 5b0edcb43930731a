"""Running a sweep: every cell on Dask distributed, local or on a cluster, each result saved as it arrives.

* Local (the default): a ``LocalCluster`` of ``workers`` processes (one per CPU), started and stopped here;
  one worker runs the cells in this process. ``scheduler="tcp://host:8786"``: the cells run on an existing
  Dask cluster (``dask scheduler`` + ``dask worker``, dask-jobqueue on Slurm, dask-kubernetes, …). The same
  cell function, :func:`wattwise.schedule.sweep.run_cell`, runs everywhere.
* The :class:`~wattwise.schedule.sweep.SweepContext` (grid, carbon traces, job trace) is scattered to the
  workers once; a cell carries only its configuration.
* With ``out``, finished cells are appended to ``out/cells/part-*.parquet`` (one file per flush, written to a
  temporary name and renamed, so a file is complete or absent). ``resume=True`` reads them back and runs
  only the missing cells; a cell is written once per sweep directory (a result that arrives twice, e.g. after
  a worker was lost and its task rerun, is kept once). ``out/sweep.json`` records the grid, so a resume with a
  different grid is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError, WattwiseError
from wattwise.schedule.policies import is_exact
from wattwise.schedule.sweep import Grid, SweepContext, run_cells, wait_group

Progress = Callable[[int, int], None]
#: seconds between two flushes of finished cells to disk (environment: WATTWISE_SWEEP_FLUSH_S)
FLUSH_S = 2.0


class CellStore:
    """The finished cells of one sweep directory (``DIR/cells/part-*.parquet``)."""

    def __init__(self, out: Path, grid: Grid, *, resume: bool) -> None:
        self.dir = out / "cells"
        self.run_id = uuid.uuid4().hex[:12]
        self.rows: dict[str, dict[str, Any]] = {}
        self.pending: list[dict[str, Any]] = []
        self._flushed_at = time.monotonic()
        stamp = {"grid": str(grid.source), "grid_sha256": _grid_hash(grid)}
        meta = out / "sweep.json"
        existing = sorted(self.dir.glob("part-*.parquet")) if self.dir.is_dir() else []
        if existing and not resume:
            raise ConfigError(f"{out} already holds {len(existing)} result file(s) of a sweep; add --resume to "
                              "continue it, or choose another --out")
        if resume and meta.is_file():
            old = json.loads(meta.read_text(encoding="utf-8"))
            if old.get("grid_sha256") != stamp["grid_sha256"]:
                raise ConfigError(f"{out} holds a sweep of another grid ({old.get('grid')}, changed since?); "
                                  "resume only with the same grid file, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(exist_ok=True)
        meta.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        for tmp in self.dir.glob(".tmp-*"):
            tmp.unlink()  # a flush cut short by a kill
        if resume:
            import pyarrow.parquet as pq

            for part in existing:
                for row in pq.read_table(part).to_pylist():
                    self.rows.setdefault(row["cell"], row)

    def done(self) -> set[str]:
        return set(self.rows)

    def add(self, cell: str, figures: dict[str, Any]) -> bool:
        """Keep a finished cell (once); flush now and then. False if the cell was already kept."""
        if cell in self.rows:
            return False
        row = {"cell": cell, **figures, "run_id": self.run_id}
        self.rows[cell] = row
        self.pending.append(row)
        if time.monotonic() - self._flushed_at >= float(os.environ.get("WATTWISE_SWEEP_FLUSH_S", FLUSH_S)):
            self.flush()
        return True

    def flush(self) -> None:
        if not self.pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"part-{time.time_ns():020d}-{self.run_id}.parquet"
        tmp = self.dir / f".tmp-{name}"
        pq.write_table(pa.Table.from_pylist(self.pending), tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        tmp.rename(self.dir / name)
        self.pending = []
        self._flushed_at = time.monotonic()


def _grid_hash(grid: Grid) -> str:
    return hashlib.sha256(grid.source.read_bytes()).hexdigest()


@contextlib.contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise WattwiseError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def run(grid: Grid, *, workers: int | None = None, scheduler: str | None = None, out: Path | None = None,
        resume: bool = False, progress: Progress | None = None,
        context: SweepContext | None = None) -> list[dict[str, Any]]:
    """All rows of the sweep, in grid order (duplicate configurations simulated once). ``progress(done,
    total)`` counts the cells to compute in this run. ``KeyboardInterrupt`` saves what has finished."""
    context = context or SweepContext.load(grid)
    configs = grid.configs()
    keys = [context.key(c) for c in configs]
    unique: dict[str, dict[str, Any]] = {}
    for key, config in zip(keys, configs, strict=True):
        unique.setdefault(key, config)
    store = CellStore(out, grid, resume=resume) if out is not None else None
    figures: dict[str, dict[str, Any]] = dict(store.rows) if store is not None else {}
    todo = [(k, c) for k, c in unique.items() if k not in figures]
    total = len(todo)
    if progress:
        progress(0, total)
    tasks = _tasks(todo)

    def keep(key: str, row: dict[str, Any]) -> None:
        if key in figures:
            return
        figures[key] = row
        if store is not None:
            store.add(key, row)
        if progress:
            progress(len(figures) - (len(unique) - total), total)

    try:
        _execute(context, tasks, workers or os.cpu_count() or 1, scheduler, keep)
    finally:
        if store is not None:
            store.flush()
    rows = []
    for key, config in zip(keys, configs, strict=True):
        row = {k: v for k, v in figures[key].items() if k not in ("cell", "run_id")}
        rows.append({**config, "arrivals": len(grid.arrivals_h) if context.trace_jobs is None else None, **row,
                     "cell": key})
    return rows


def _execute(context: SweepContext, tasks: list[list[tuple[str, dict[str, Any]]]], workers: int,
             scheduler: str | None, keep: Callable[[str, dict[str, Any]], None]) -> None:
    if scheduler is None and (workers <= 1 or len(tasks) <= 1):
        for task in tasks:
            for (key, _), row in zip(task, run_cells(context, [c for _, c in task]), strict=True):
                keep(key, row)
    elif tasks:
        _run_dask(context, tasks, workers, scheduler, keep)


def _tasks(todo: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """One task per group of cells that differ only in their waiting time (they share one program), the
    slowest (long windows, long jobs, suspend-resume) first for a good load balance."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, config in todo:
        groups.setdefault(wait_group(config), []).append((key, config))

    def cost(task: list[tuple[str, dict[str, Any]]]) -> float:
        c = max((config for _, config in task), key=lambda config: config["wait_h"])
        return float((c["wait_h"] + c["length_h"]) * c["length_h"] * (4 if is_exact(c["policy"]) else 1))

    return sorted(groups.values(), key=cost, reverse=True)


def _run_dask(context: SweepContext, tasks: list[list[tuple[str, dict[str, Any]]]], workers: int,
              scheduler: str | None, keep: Callable[[str, dict[str, Any]], None]) -> None:
    from distributed import as_completed

    with _client(workers, scheduler) as client:
        [shared] = client.scatter([context], broadcast=True)
        futures = {client.submit(run_cells, shared, [c for _, c in task], key=f"cells-{task[0][0]}",
                                 pure=False): [k for k, _ in task] for task in tasks}
        try:
            for future, rows in as_completed(futures, with_results=True):
                for key, row in zip(futures[future], rows, strict=True):
                    keep(key, row)
        except BaseException:
            client.cancel(list(futures))
            raise
