"""Runs stored by wattwise (machine power + notes) as a source for fitting, on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from wattwise.cli import app
from wattwise.jobmodel.fit import fit_runs
from wattwise.jobmodel.pinpoint import RunError, read_pinpoint
from wattwise.jobmodel.storerun import power_on_grid, read_store_run
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store

from .conftest import AFTER_S, BEFORE_S


def store_from_pinpoint(store: Store, folder: Path, as_counter: bool = False) -> int:
    """Copy a pinpoint run into the store as `wattwise measure` would record it."""
    run = read_pinpoint(folder, before_s=BEFORE_S, after_s=AFTER_S)
    run_id = store.create_run(folder.name)
    t_us = (run.edges_s * 1e6).round().astype(np.int64)
    if as_counter:
        metric = store.add_metric(run_id, MetricSpec("rapl_energy_j", "J", Kind.COUNTER, "package-0"), "rapl")
        energy = np.concatenate([[0.0], np.cumsum(run.power_w * np.diff(run.edges_s))])
        store.add_samples([(metric, int(t), float(v)) for t, v in zip(t_us, energy, strict=True)])
    else:
        metric = store.add_metric(run_id, MetricSpec("estimated_power_w", "W", Kind.GAUGE, "machine"), "estimate")
        store.add_samples([(metric, int(t), float(v)) for t, v in zip(t_us[:-1], run.power_w, strict=True)]
                          + [(metric, int(t_us[-1]), float(run.power_w[-1]))])
    store.add_phase(run_id, "[BASELINE]", int(t_us[0]), round(run.launch_s * 1e6))
    store.add_phase(run_id, "[RUNTIME]", round(run.launch_s * 1e6), round(run.exit_s * 1e6))
    store.add_notes(run_id, [(round(e.time_s * 1e6), "command", e.label) for e in run.events])
    store.finish_run(run_id, "finished", exit_code=0)
    return run_id


@pytest.fixture
def db(tmp_path: Path, run_folders: list[Path]) -> Path:
    path = tmp_path / "wattwise.sqlite"
    store = Store(f"sqlite:///{path}")
    try:
        store_from_pinpoint(store, run_folders[0])
        store_from_pinpoint(store, run_folders[1], as_counter=True)
        store_from_pinpoint(store, run_folders[2])
        empty = store.create_run("no notes")
        metric = store.add_metric(empty, MetricSpec("estimated_power_w", "W", Kind.GAUGE, "machine"), "estimate")
        store.add_samples([(metric, 1_000_000, 5.0), (metric, 2_000_000, 5.0)])
    finally:
        store.close()
    return path


def test_store_runs_fit_like_their_folders(db: Path, run_folders: list[Path]) -> None:
    runs = [read_store_run(spec, str(db)) for spec in ("run:1", "2", "run:3")]
    assert runs[0].launch_s is not None and runs[0].notes["power_source"] == "estimate"
    assert runs[1].notes["power_source"] == "rapl"
    from_store = fit_runs(runs).model
    from_folders = fit_runs([read_pinpoint(f, before_s=BEFORE_S, after_s=AFTER_S) for f in run_folders[:3]]).model
    assert [p.name for p in from_store.phases] == [p.name for p in from_folders.phases]
    for a, b in zip(from_store.phases, from_folders.phases, strict=True):
        assert a.duration_s == pytest.approx(b.duration_s, abs=1e-3)
        assert a.power_w == pytest.approx(b.power_w, abs=0.2)


def test_store_runs_from_the_cli(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["model", "fit", "run:1", "run:2", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["startup"][0]["name"] == "start"
    result = CliRunner().invoke(app, ["model", "cv", "1", "2", "3", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["folds"]) == 3


def test_store_run_errors(db: Path) -> None:
    with pytest.raises(RunError, match="run:4: has no notes"):
        read_store_run("run:4", str(db))
    with pytest.raises(Exception, match="no run with id 99"):
        read_store_run("run:99", str(db))
    with pytest.raises(RunError, match="a run id is run:ID"):
        read_store_run("run:x", str(db))


def test_counters_are_differentiated_and_gauges_held() -> None:
    counter = SimpleNamespace(kind="counter", t_us=np.array([0, 1_000_000, 2_000_000, 4_000_000]),
                              values=np.array([0.0, 10.0, 30.0, 70.0]))
    gauge = SimpleNamespace(kind="gauge", t_us=np.array([0, 1_500_000]), values=np.array([1.0, 2.0]))
    edges, power = power_on_grid([counter, gauge])
    assert list(edges) == [0, 1, 2, 4]
    assert list(power) == [10 + 1, 20 + 1, 20 + 2]  # a gauge holds its last value until the next sample
