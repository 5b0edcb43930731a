"""`wattwise compare` as the README writes it: every run id after --vs is the second group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattwise.analysis.cli import split_vs
from wattwise.analysis.synthetic import simple_run
from wattwise.errors import WattwiseError
from wattwise.store import Store


def test_split_vs_puts_every_id_after_vs_into_the_second_group() -> None:
    assert split_vs(["5", "6", "7", "--vs", "8", "9", "10"]) == ["5", "6", "7", "--vs=8", "--vs=9", "--vs=10"]
    assert split_vs(["1", "--vs", "2,3", "--json"]) == ["1", "--vs=2", "--vs=3", "--json"]
    assert split_vs(["1", "--vs", "2", "--vs", "3", "-m", "energy_j"]) == ["1", "--vs=2", "--vs=3", "-m", "energy_j"]
    assert split_vs(["--metric", "7", "1", "--vs=2,3"]) == ["--metric", "7", "1", "--vs=2", "--vs=3"]
    with pytest.raises(WattwiseError, match="after the --vs group"):
        split_vs(["1", "--vs", "2", "--json", "3"])


def test_compare_readme_syntax(tmp_path: Path, run_cli) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    ids = [simple_run(store, e) for e in (100, 101, 102, 200, 201, 202)]
    a, b = ids[:3], ids[3:]
    out = run_cli("compare", *map(str, a), "--vs", *map(str, b), "--json", "--db", url, check=True)
    result = json.loads(out.stdout)
    assert result["runs"] == a and result["vs"] == b
    energy = next(r for r in result["rows"] if r["phase"] == "[RUNTIME]" and r["metric"] == "energy_j")
    assert energy["a"]["mean"] == pytest.approx(101) and energy["b"]["mean"] == pytest.approx(201)
    bad = run_cli("compare", str(a[0]), "--vs", str(b[0]), "--json", str(a[1]), "--db", url)
    assert bad.returncode == 2 and "after the --vs group" in bad.stderr and "Traceback" not in bad.stderr


def _estimated_run(store: Store, power_w: float) -> int:
    import numpy as np

    from wattwise.analysis.synthetic import T0, add_series
    from wattwise.providers.base import Kind, MetricSpec

    run_id = store.create_run("guess", settings={"intensity_g_per_kwh": 300.0, "pue": 1.0})
    t = np.linspace(0, 10, 11)
    add_series(store, run_id, MetricSpec("estimated_power_w", "W", Kind.GAUGE, "machine"), t, np.full_like(t, power_w))
    store.add_phase(run_id, "[RUNTIME]", T0, T0 + 10_000_000)
    store.finish_run(run_id, "finished")
    return run_id


def test_compare_marks_estimated_figures(tmp_path: Path, run_cli) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    ids = [_estimated_run(store, p) for p in (50, 51, 52)]
    result = json.loads(run_cli("compare", *map(str, ids), "--json", "--db", url, check=True).stdout)
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["energy_j"]["estimated"] and rows["carbon_g"]["estimated"] and not rows["duration_s"]["estimated"]
    assert result["estimated"] is True
    text = run_cli("compare", *map(str, ids), "--metric", "energy_j", "--db", url, check=True).stdout
    assert "≈510" in text.replace(" ", "") and "≈ estimated" in text
