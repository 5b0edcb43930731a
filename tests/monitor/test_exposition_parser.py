"""The exporter writes the exposition format itself (benchmarks/bench_monitor.py: prometheus_client is more
than 2x slower at 1,000 units); prometheus_client's own parser must read every sample of it back."""

from __future__ import annotations

import math

import pytest
from tests.monitor.conftest import parse_samples

from wattwise.monitor.exposition import Family, label_text, render

parser = pytest.importorskip("prometheus_client.parser")


def _client_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.parametrize(("name", "ipmi"), [("slurm-v1", False), ("slurm-v2", True)])
def test_prometheus_client_parses_the_exporter_output(fixture_run, name: str, ipmi: bool) -> None:
    run = fixture_run(name, ipmi=ipmi)
    run.advance(10.0)
    text = run.scrape()
    theirs = _client_samples(text)
    ours = parse_samples(text)
    assert len(theirs) == len(ours) > 50
    assert theirs == pytest.approx(ours)
    kinds = {f.name: f.type for f in parser.text_string_to_metric_families(text)}
    assert kinds["wattwise_unit_energy_joules"] == "counter"  # TYPE lines name the family, _total the sample
    assert kinds["wattwise_unit_power_watts"] == "gauge"


def test_awkward_label_values_and_numbers_survive_the_round_trip() -> None:
    family = Family("wattwise_test_value", "gauge", 'Help with a \\ backslash\nand a new line.')
    odd = 'quote " backslash \\ newline \n unicode µ'
    family.add(label_text([("user", odd)]), 1.5)
    for value in (0, -3, 1e-300, 1.7976931348623157e308, 2**53 + 1, float("inf"), float("-inf"), float("nan")):
        family.add(label_text([("v", repr(value))]), value)
    text = render([family])
    parsed = list(parser.text_string_to_metric_families(text))
    assert len(parsed) == 1 and parsed[0].documentation == 'Help with a \\ backslash\nand a new line.'
    by_label = {tuple(s.labels.items()): s.value for s in parsed[0].samples}
    assert by_label[(("user", odd),)] == 1.5
    for value in (0, -3, 1e-300, 1.7976931348623157e308, 2**53 + 1, float("inf"), float("-inf")):
        assert by_label[(("v", repr(value)),)] == value
    assert math.isnan(by_label[(("v", "nan"),)])
