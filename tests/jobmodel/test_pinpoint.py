from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wattwise.jobmodel.pinpoint import RunError, read_events, read_measurements, read_pinpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "jobmodel" / "pinpoint-small"


def write(folder: Path, measurements: str, events: str | None = "1000.5, start program\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "measurements.csv").write_text(measurements)
    if events is not None:
        (folder / "events.csv").write_text(events)
    return folder


def test_sample_times_use_the_count_of_power_lines(tmp_path: Path) -> None:
    # 4 power lines over [1000, 1002]: samples at 1000, 1000.5, 1001, 1001.5
    run = read_pinpoint(write(tmp_path / "r", "1000\n2000\n3000\n4000\n1000.0\n1002.0\n"))
    assert list(run.times_s) == [1000, 1000.5, 1001, 1001.5]
    assert list(run.power_w) == [1, 2, 3, 4]
    assert run.end_s == 1002.0
    assert run.energy_between(1000, 1002) == pytest.approx(0.5 * (1 + 2 + 3 + 4))
    assert run.energy_between(1000.25, 1000.75) == pytest.approx(0.25 * 1 + 0.25 * 2)
    assert run.events[0].label == "start program" and run.events[0].line == 1


def test_real_format_fixture() -> None:
    run = read_pinpoint(FIXTURE, before_s=5, after_s=5)
    assert len(run.power_w) > 50 and run.power_w.min() >= 0
    assert run.launch_s == pytest.approx(run.start_s + 5) and run.exit_s == pytest.approx(run.end_s - 5)
    labels = [e.label for e in run.events]
    assert labels[0] == "start program" and labels[-1] == "Exit"
    assert "Epoch 1.0. Saved. Steps: 12" in labels


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"measurements\.csv: measurements file is empty"),
        ("\n\n", r"measurements file is empty"),
        ("1000\n5.0\n", r"has 2 line\(s\); needs at least one power line"),
        ("1000\nabc\n2000\n1.0\n2.0\n", r"measurements\.csv:2: cannot read 'abc' as a power value in mW"),
        ("1000\n\n2000\n1.0\n2.0\n", r"measurements\.csv:2: empty line"),
        ("1000\n-5\n1.0\n2.0\n", r"measurements\.csv:2: power must not be negative"),
        ("1000\n2000\n5.0\n5.0\n", r"measurements\.csv:4: the end time 5\.0 is not after the start time 5\.0"),
        ("1000\n2000\n9.0\nx\n", r"measurements\.csv:4: cannot read 'x' as the end time"),
        ("1000\nnan\n1.0\n2.0\n", r"measurements\.csv:2: a power value in mW must be a finite number"),
    ],
)
def test_measurement_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "measurements.csv"
    path.write_text(content)
    with pytest.raises(RunError, match=message):
        read_measurements(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"events\.csv: events file is empty"),
        ("1000.5 start program\n", r"events\.csv:1: expected '<unix time>, <label>'"),
        ("1000.5, a\nnoon, b\n", r"events\.csv:2: cannot read 'noon' as an event time"),
        ("1000.5, \n", r"events\.csv:1: the event has an empty label"),
    ],
)
def test_event_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(content)
    with pytest.raises(RunError, match=message):
        read_events(path)


def test_events_sorted_and_commas_in_labels(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("5.0, b, with comma\n1.0, a\n")
    events = read_events(path)
    assert [(e.time_s, e.label, e.line) for e in events] == [(1.0, "a", 2), (5.0, "b, with comma", 1)]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="run folder not found"):
        read_pinpoint(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        read_pinpoint(tmp_path / "file")
    folder = write(tmp_path / "noevents", "1000\n2000\n1000.0\n1002.0\n", events=None)
    with pytest.raises(RunError, match=r"events\.csv: events file not found"):
        read_pinpoint(folder)
    folder = write(tmp_path / "outside", "1000\n2000\n1000.0\n1002.0\n", events="1000.5, a\n2000.0, b\n")
    with pytest.raises(RunError, match=r"events\.csv:2: event 'b' at 2000\.0 lies outside the recording"):
        read_pinpoint(folder)


def test_window_errors(tmp_path: Path) -> None:
    measurements = "".join(f"{1000 + i}\n" for i in range(20)) + "1000.0\n1020.0\n"
    folder = write(tmp_path / "r", measurements, "1003.0, start program\n1015.0, Exit\n")
    with pytest.raises(RunError, match="not shorter than the recording"):
        read_pinpoint(folder, before_s=10, after_s=10)
    with pytest.raises(RunError, match=r"events\.csv:1: first event 'start program' is 2\.000 s before the "
                                       r"program's launch.*--before too long"):
        read_pinpoint(folder, before_s=5)
    with pytest.raises(RunError, match=r"events\.csv:2: last event 'Exit' is 1\.000 s after.*--after too long"):
        read_pinpoint(folder, after_s=6)
    run = read_pinpoint(folder, before_s=2, after_s=4)
    assert run.job_start_s == 1002.0 and run.job_end_s == 1016.0
    assert run.window_baseline_w() == pytest.approx(np.mean([1.000, 1.001, 1.016, 1.017, 1.018, 1.019]))
