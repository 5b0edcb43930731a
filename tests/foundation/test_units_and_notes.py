from __future__ import annotations

import pytest

from wattwise.errors import ConfigError
from wattwise.measure.notes import parse_note_line
from wattwise.units import format_si, parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("5s", 5.0),
        ("2.5", 2.5),
        ("2min", 120.0),
        ("1h", 3600.0),
        ("10 ms", 0.01),
        ("250us", 250e-6),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "5 parsecs", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="cannot read duration"):
        parse_duration_s(text)


def test_format_si() -> None:
    assert format_si(1234.5, "J") == "1.23 kJ"
    assert format_si(0.0123, "g") == "12.3 mg"
    assert format_si(None, "W") == "–"


def test_note_lines_in_every_resolution() -> None:
    assert parse_note_line("1700000000123456 Epoch 1 ended") == (1700000000123456, "Epoch 1 ended")
    assert parse_note_line("1700000000 started") == (1700000000000000, "started")
    assert parse_note_line("1700000000123 ms note") == (1700000000123000, "ms note")
    assert parse_note_line("1700000000123456789 ns note") == (1700000000123456, "ns note")
    assert parse_note_line("1700000000.75 fractional seconds") == (1700000000750000, "fractional seconds")
    assert parse_note_line("1700000000123.5 fractional ms") == (1700000000123500, "fractional ms")
    assert parse_note_line("12345 not a time") is None
    assert parse_note_line("hello 1700000000123456") is None
    assert parse_note_line("1700000000123456") is None  # a time alone is not a note
