from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wattwise.jobmodel.phasemap import (
    PhaseMapError,
    default_phasemap,
    default_phasemap_text,
    load_phasemap,
    phase_spans,
)
from wattwise.jobmodel.pinpoint import Event, PowerRun, RunError

LABELS = {
    "start program": ("start", "startup", False),
    "after load data": ("prepare", "startup", False),
    "Start training": ("train", "work", False),
    "Epoch 1.0 ended. Steps: 12": ("evaluate", "work", False),
    "Evaluate": ("save", "work", True),
    "Epoch 1.0. Saved. Steps: 12": ("train", "work", False),
    "Epoch 12.0. Saved. Steps: 144": ("train", "work", False),
    "End training": ("finish", "work", False),
    "Exit": ("exit", "work", False),
}


@pytest.mark.parametrize(("label", "expected"), LABELS.items())
def test_default_map_reads_ml_logs(label: str, expected: tuple[str, str, bool]) -> None:
    rule = default_phasemap().match(label)
    assert rule is not None and (rule.phase, rule.section, rule.checkpoint) == expected


def test_default_map_text_is_shipped() -> None:
    assert "Start training".lower() in default_phasemap_text().lower()


def make_run(events: list[tuple[float, str]], launch: float | None = None, exit_s: float | None = None) -> PowerRun:
    edges = np.arange(0.0, 101.0)
    return PowerRun("r", "r", edges, np.ones(100), [Event(t, lbl, i + 1) for i, (t, lbl) in enumerate(events)],
                    launch_s=launch, exit_s=exit_s, events_source="r/events.csv")


def test_spans_with_and_without_launch() -> None:
    events = [(10, "start program"), (20, "after load data"), (30, "Start training"),
              (50, "Epoch 1.0 ended. Steps: 1"), (55, "Evaluate"), (57, "Epoch 1.0. Saved. Steps: 1"),
              (57, "End training"), (60, "Exit")]
    spans = phase_spans(make_run(events), default_phasemap())
    assert [(s.name, s.start_s, s.end_s) for s in spans] == [
        ("start", 10, 20), ("prepare", 20, 30), ("train", 30, 50), ("evaluate", 50, 55), ("save", 55, 57),
        ("train", 57, 57), ("finish", 57, 60), ("exit", 60, 60)]
    spans = phase_spans(make_run(events, launch=5, exit_s=62), default_phasemap())
    assert (spans[0].name, spans[0].start_s, spans[0].end_s) == ("start", 5, 20)  # launch merges with start
    assert spans[0].event is None
    assert (spans[-1].name, spans[-1].start_s, spans[-1].end_s) == ("exit", 60, 62)


def test_unknown_labels_are_errors_with_lines() -> None:
    run = make_run([(10, "start program"), (20, "loading tokenizer"), (30, "Start training"), (40, "Exit")])
    with pytest.raises(RunError, match=r"r/events\.csv: 1 event label\(s\) match no rule.*line 2: "
                                       r"'loading tokenizer'.*--ignore-unknown"):
        phase_spans(run, default_phasemap())
    spans = phase_spans(run, default_phasemap(), ignore_unknown=True)
    assert [s.name for s in spans] == ["start", "train", "exit"]


def test_missing_work_event() -> None:
    run = make_run([(10, "start program"), (20, "after load data"), (40, "Exit")])
    # Exit maps to a work phase in the default map: use a map without it
    with pytest.raises(RunError, match="no event starts a work phase"):
        phase_spans(make_run([(10, "start program"), (20, "after load data")]), default_phasemap())
    assert [s.name for s in phase_spans(run, default_phasemap())] == ["start", "prepare", "exit"]


def test_startup_after_work_is_an_error() -> None:
    run = make_run([(10, "start program"), (30, "Start training"), (40, "start program"), (50, "Exit")])
    with pytest.raises(RunError, match=r"r/events\.csv:3: startup phase 'start' starts after work phase 'train'"):
        phase_spans(run, default_phasemap())


def test_no_matching_event() -> None:
    with pytest.raises(RunError, match="no event matches"):
        phase_spans(make_run([(10, "hello")]), default_phasemap(), ignore_unknown=True)


def test_custom_map_and_ignore(tmp_path: Path) -> None:
    path = tmp_path / "map.yml"
    path.write_text(
        "launch: boot\n"
        "case_sensitive: true\n"
        "phases:\n"
        "  - {match: '^BOOT', phase: boot, section: startup}\n"
        "  - {match: '^STEP', phase: compute}\n"
        "  - {match: '^CKPT', phase: ckpt, checkpoint: true}\n"
        "ignore: ['^debug']\n"
    )
    pmap = load_phasemap(path)
    assert pmap.match("step 1") is None and pmap.match("STEP 1").phase == "compute"
    run = make_run([(10, "BOOT"), (12, "debug: x"), (20, "STEP 1"), (30, "STEP 2"), (40, "CKPT")], launch=5,
                   exit_s=45)
    spans = phase_spans(run, pmap)
    assert [(s.name, s.start_s, s.end_s, s.is_checkpoint) for s in spans] == [
        ("boot", 5, 20, False), ("compute", 20, 40, False), ("ckpt", 40, 45, True)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("phases: []\n", r"phases: must be a non-empty list"),
        ("phases:\n  - {match: '(', phase: a}\n", r"phases\[0\]\.match: invalid regular expression '\('"),
        ("phases:\n  - {phase: a}\n", r"phases\[0\]: missing key 'match'"),
        ("phases:\n  - {match: a, phase: a, section: middle}\n", r"phases\[0\]\.section: must be one of startup, work"),
        ("phases:\n  - {match: a, phase: a, checkpoint: 1}\n", r"phases\[0\]\.checkpoint: must be true or false"),
        ("phases:\n  - {match: a, phase: a, colour: red}\n", r"phases\[0\]: unknown key 'colour'"),
        ("phases:\n  - {match: a, phase: a}\n  - {match: b, phase: a, section: startup}\n",
         r"phases\[1\]: phase 'a' is startup/checkpoint=False here but work"),
        ("rules: []\n", r"unknown key 'rules'"),
        ("phases: [\n", r"invalid YAML at line"),
        ("version: 2\nphases:\n  - {match: a, phase: a}\n", r"version: only 1 is known"),
    ],
)
def test_phasemap_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "map.yml"
    path.write_text(text)
    with pytest.raises(PhaseMapError, match=message):
        load_phasemap(path)
    with pytest.raises(PhaseMapError, match="not found"):
        load_phasemap(tmp_path / "missing.yml")
