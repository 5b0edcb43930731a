"""`pytest --wattwise` run by pytester on a tiny suite: per-test energy, the baseline and the budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattwise.integrations.pytest_plugin import parse_budget

pytest_plugins = ["pytester"]

SUITE = """
import os

def burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def test_same():
    burn(1_500_000)

def test_changed():
    burn(1_500_000 * int(os.environ.get("WORK_FACTOR", "1")))
"""


def _run(pytester: pytest.Pytester, db: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--wattwise", f"--wattwise-db={db}", "--wattwise-interval=100ms", *args
    )


def test_energy_per_test_and_a_budget_that_flags_only_the_test_that_grew(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_tiny=SUITE)
    db = tmp_path / "plugin.db"
    baseline = tmp_path / "baseline.json"
    monkeypatch.setenv("WORK_FACTOR", "1")
    first = _run(pytester, db, "--wattwise-repeat=5", f"--wattwise-json={baseline}")
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*wattwise: energy per test*", "*test_tiny.py::test_*", "*stored as run 1*"])
    data = json.loads(baseline.read_text())
    assert set(data["tests"]) == {"test_tiny.py::test_same", "test_tiny.py::test_changed"}
    assert all(len(t["energy_j"]) == 5 and min(t["energy_j"]) > 0 for t in data["tests"].values())

    monkeypatch.setenv("WORK_FACTOR", "3")  # one test now does three times the work
    second = _run(pytester, db, "--wattwise-repeat=5", f"--wattwise-baseline={baseline}", "--wattwise-budget=30%")
    assert second.ret == pytest.ExitCode.TESTS_FAILED  # the tests passed, the energy budget did not
    second.assert_outcomes(passed=2)
    out = second.stdout.str()
    assert "ENERGY BUDGET EXCEEDED: test_tiny.py::test_changed" in out
    assert "ENERGY BUDGET EXCEEDED: test_tiny.py::test_same" not in out



def test_without_repeats_a_budget_cannot_fail_a_build(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_tiny=SUITE)
    db = tmp_path / "plugin.db"
    monkeypatch.setenv("WORK_FACTOR", "1")
    _run(pytester, db).assert_outcomes(passed=2)
    monkeypatch.setenv("WORK_FACTOR", "4")
    # the stored run of the first session (run 1) is the baseline
    result = _run(pytester, db, "--wattwise-baseline=1", "--wattwise-budget=10%")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*cannot be judged (need ≥ 2 repeats*test_tiny.py::test_changed*"])


def test_the_plugin_is_inert_without_its_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tiny=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "energy per test" not in result.stdout.str()


def test_bad_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tiny=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--wattwise", "--wattwise-budget=10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--wattwise-budget needs --wattwise-baseline*"])
    assert parse_budget("10%") == pytest.approx(0.1)
    assert parse_budget("0.25") == pytest.approx(0.25)
    with pytest.raises(pytest.UsageError, match="percentage"):
        parse_budget("ten")
