from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from wattwise.errors import WattwiseError
from wattwise.jobmodel import (
    JobModel,
    ModelError,
    Phase,
    constant,
    constant_from_phases,
    load_model,
    ml,
    save_model,
)


def example() -> JobModel:
    return ml(epochs=2, start_s=10, start_w=20, train_s=100, train_w=80, evaluate_s=5, evaluate_w=40,
              save_s=2, save_w=30, load_s=3, load_w=25)


def test_sizes_and_energy() -> None:
    m = example()
    assert [p.name for p in m.startup] == ["start", "load"]
    assert [p.name for p in m.work] == ["train", "evaluate", "save"] * 2
    assert m.startup_s == 13 and m.work_s == 214 and m.duration_s == 227
    assert m.startup_energy_j == 10 * 20 + 3 * 25
    assert m.work_energy_j == 2 * (100 * 80 + 5 * 40 + 2 * 30)
    assert m.energy_j == m.startup_energy_j + m.work_energy_j
    assert m.resume_cost_j == m.startup_energy_j and m.resume_cost_s == m.startup_s
    assert m.work[2].is_checkpoint and m.work[2].energy_j == 60
    assert m.checkpoint_ends_s == [13 + 107, 13 + 214]


def test_power_at_and_segments() -> None:
    m = example()
    assert m.power_at(-0.1) == 0 and m.power_at(227) == 0 and m.power_at(1e9) == 0
    assert m.power_at(0) == 20 and m.power_at(9.99) == 20 and m.power_at(10) == 25
    assert m.power_at(13) == 80 and m.power_at(113) == 40 and m.power_at(226.9) == 30
    segments = m.segments()
    assert segments[0] == (0.0, 10.0, 20.0) and segments[-1] == (225.0, 227.0, 30.0)
    assert math.isclose(sum((e - s) * p for s, e, p in segments), m.energy_j)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
    import numpy as np

    times = np.array([-1, 0, 10, 13, 226.9, 227])
    assert list(m.power_series(times)) == [m.power_at(t) for t in times]
    assert math.isclose(m.energy_between(0, 13), m.startup_energy_j)


def test_zero_length_phases_are_not_segments() -> None:
    m = JobModel((), (Phase("a", 0, 5), Phase("b", 2, 7)))
    assert m.segments() == [(0.0, 2.0, 7.0)]
    assert m.power_at(0) == 7


def test_tiled() -> None:
    m = example()
    t = m.tiled(250)
    assert t.startup == m.startup and math.isclose(t.work_s, 250)
    assert [p.name for p in t.work] == ["train", "evaluate", "save"] * 2 + ["train"]
    assert t.work[-1].duration_s == pytest.approx(36) and not t.work[-1].is_checkpoint
    assert m.tiled(107).work == m.work[:3]
    assert m.tiled(0).work == ()
    with pytest.raises(ModelError):
        JobModel((), ()).tiled(5)


def test_constant_and_constant_from_phases() -> None:
    c = constant(100, 50)
    assert c.startup == () and c.energy_j == 5000 and c.resume_cost_j == 0 and c.power_at(99) == 50
    m = example()
    flat = constant_from_phases(m)
    assert flat.duration_s == m.duration_s and math.isclose(flat.energy_j, m.energy_j)
    assert flat.resume_cost_j == 0 and len(flat.work) == 1


def test_frozen_and_hashable() -> None:
    m = example()
    assert hash(m) == hash(example()) and m == example()
    with pytest.raises(AttributeError):
        m.startup = ()  # type: ignore[misc]


def test_phase_validation() -> None:
    with pytest.raises(ModelError, match="duration_s"):
        Phase("x", -1, 5)
    with pytest.raises(ModelError, match="power_w"):
        Phase("x", 1, float("nan"))
    with pytest.raises(ModelError, match="epochs"):
        ml(epochs=0, start_s=1, start_w=1, train_s=1, train_w=1, evaluate_s=1, evaluate_w=1, save_s=1, save_w=1)
    assert issubclass(ModelError, WattwiseError)


@pytest.mark.parametrize("suffix", [".json", ".yml", ".yaml"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    m = example()
    path = tmp_path / f"model{suffix}"
    save_model(m, path)
    assert load_model(path) == m


def test_file_format_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    save_model(example(), path)
    data = json.loads(path.read_text())
    assert set(data) == {"startup", "work"}
    assert all(set(p) == {"name", "duration_s", "power_w", "is_checkpoint"} for p in data["startup"] + data["work"])


def test_carbs_spellings(tmp_path: Path) -> None:
    path = tmp_path / "carbs.json"
    path.write_text(json.dumps({"startup": [{"name": "s", "duration": 5, "power": 10}],
                                "work": [{"name": "w", "duration": 60, "power": 100.5, "is_checkpoint": True}]}))
    m = load_model(path)
    assert m.startup[0] == Phase("s", 5, 10) and m.work[0] == Phase("w", 60, 100.5, True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"work": [{"name": "a", "duration_s": 1, "power_w": 1}, {}, {}]}, r"m\.json: work\[1\]: missing key 'duration_s'"),
        ({"work": [{"name": "a", "duration_s": 1, "power_w": "x"}]}, r"work\[0\]\.power_w: must be a number"),
        ({"work": [{"name": "a", "duration_s": -2, "power_w": 1}]}, r"work\[0\]\.duration_s: must be a finite number ≥ 0"),
        ({"work": [{"name": "a", "duration": True, "power_w": 1}]}, r"work\[0\]\.duration: must be a number"),
        ({"startup": [{"name": "a", "duration_s": 1, "power_w": 1, "watts": 3}], "work": []},
         r"startup\[0\]: unknown key 'watts'; allowed: name, duration_s"),
        ({"work": [{"name": "a", "duration_s": 1, "duration": 1, "power_w": 1}]}, r"work\[0\]: both 'duration_s'"),
        ({"work": [{"name": "a", "duration_s": 1, "power_w": 1, "is_checkpoint": "yes"}]},
         r"work\[0\]\.is_checkpoint: must be true or false"),
        ({"work": [{"name": "", "duration_s": 1, "power_w": 1}]}, r"work\[0\]\.name: must be a non-empty"),
        ({"work": {"name": "a"}}, r"work: must be a list of phases"),
        ({"jobs": []}, r"unknown key 'jobs' at the top level"),
        ([1, 2], r"a model must be a mapping"),
        ({}, r"missing key 'work'"),
    ],
)
def test_precise_errors(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"work": [\n  {"name": "a",}\n]}')
    with pytest.raises(ModelError, match=r"bad\.json: invalid JSON at line 2"):
        load_model(bad)
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("work:\n  - name: a\n   duration: [\n")
    with pytest.raises(ModelError, match=r"bad\.yml: invalid YAML at line"):
        load_model(bad_yaml)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.json")
    with pytest.raises(ModelError, match=r"use \.json, \.yml or \.yaml"):
        load_model(tmp_path / "model.txt")
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    with pytest.raises(ModelError, match="empty"):
        load_model(empty)


def test_yaml_is_safe(tmp_path: Path) -> None:
    path = tmp_path / "evil.yml"
    path.write_text("work: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ModelError, match="invalid YAML"):
        load_model(path)
