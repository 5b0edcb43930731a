from __future__ import annotations

import numpy as np
import pytest

from wattwise.errors import WattwiseError
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import RunStatus, Store


@pytest.mark.postgres
def test_round_trip_on_real_databases(db_url: str) -> None:
    store = Store(db_url)
    run_id = store.create_run("demo", command=["sleep", "1"], settings={"pue": 1.2})
    metric = store.add_metric(run_id, MetricSpec("rapl_energy_j", "J", Kind.COUNTER, "package-0"), "rapl")
    rows = [(metric, 1_000_000 + i * 100_000, float(i) * 0.5) for i in range(5000)]
    store.add_samples(rows)
    t_us, values = store.samples(metric)
    assert t_us.dtype == np.int64 and len(t_us) == 5000
    assert values[10] == 5.0 and t_us[1] - t_us[0] == 100_000
    t_us, _ = store.samples(metric, start_us=1_000_000, end_us=1_200_000)
    assert len(t_us) == 3
    store.add_phase(run_id, "[BASELINE]", 1_000_000, 2_000_000)
    store.add_phase(run_id, "step", 2_000_000, 3_000_000, parent="[RUNTIME]", hidden=True)
    store.add_notes(run_id, [(1_500_000, "command", "hello")])
    store.add_log(run_id, "command", "stdout", "out\n")
    store.finish_run(run_id, RunStatus.FAILED, error="boom", exit_code=3, warnings=["w1"])
    run = store.get_run(run_id)
    assert (run.status, run.error, run.exit_code, run.warnings) == ("failed", "boom", 3, ["w1"])
    assert [p.name for p in store.phases(run_id)] == ["[BASELINE]", "step"]
    assert store.phases(run_id)[1].parent == "[RUNTIME]"
    assert store.notes(run_id)[0].text == "hello"
    assert store.sample_count(run_id) == 5000
    assert [r.id for r in store.list_runs(status="failed")] == [run_id]
    assert store.list_runs(name="dem")[0].name == "demo"
    assert store.list_runs(name="%") == []  # LIKE wildcards are escaped
    store.delete_run(run_id)
    with pytest.raises(WattwiseError, match=f"no run with id {run_id}"):
        store.get_run(run_id)
    assert store.samples(metric)[0].size == 0


@pytest.mark.postgres
def test_migrations_are_idempotent(db_url: str) -> None:
    from wattwise.store.db import _migrated

    Store(db_url).create_run("a")
    _migrated.clear()  # force a second upgrade against the same database
    store = Store(db_url)
    assert len(store.list_runs()) == 1


def test_bad_urls_are_explained(tmp_path) -> None:
    with pytest.raises(WattwiseError, match="not a database URL"):
        Store("::nonsense::")
    with pytest.raises(WattwiseError, match="cannot open database"):
        Store("postgresql://nobody@127.0.0.1:1/none")
