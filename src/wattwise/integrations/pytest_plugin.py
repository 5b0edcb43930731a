"""pytest plugin (entry point `pytest11`): energy and duration per test, and energy budgets against a baseline.

    pytest --wattwise                                  # a stored run per session, top consumers at the end
    pytest --wattwise --wattwise-repeat 5 --wattwise-json energy.json
    pytest --wattwise --wattwise-repeat 5 --wattwise-baseline energy.json --wattwise-budget 10%

Each test's call (its body, not its fixtures) is a phase of one tracker run (`wattwise.track`), so the figures are
the ones `wattwise runs show` gives. With `--wattwise-repeat N` the call runs N times, each its own phase. A test
fails the budget only when its energy grew by more than the budget **and** Welch's t-test says the baseline's
and this session's repeats differ (alpha 0.05, as `wattwise compare`): noise alone does not fail a build, and
a decision needs at least 2 repeats on each side. The plugin does nothing unless `--wattwise` is given.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CallEnergy", "parse_budget", "pytest_addoption", "pytest_configure"]

REPEAT_SEPARATOR = " [repeat "


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wattwise", "energy of each test (wattwise)")
    group.addoption("--wattwise", action="store_true", help="measure energy and duration per test")
    group.addoption("--wattwise-db", metavar="DB", help="database for the session's run (default: wattwise's)")
    group.addoption("--wattwise-interval", default="100ms", metavar="T", help="sampling interval (default 100ms)")
    group.addoption("--wattwise-repeat", type=int, default=1, metavar="N",
                    help="run each test's body N times, for statistics (default 1)")
    group.addoption("--wattwise-json", metavar="FILE", help="write each test's energies to FILE (a baseline later)")
    group.addoption("--wattwise-baseline", metavar="RUN|FILE",
                    help="a run id of an earlier --wattwise session, or a --wattwise-json file")
    group.addoption("--wattwise-budget", metavar="PCT",
                    help="fail tests whose energy grew by more than PCT (e.g. 10%%) and significantly")
    group.addoption("--wattwise-top", type=int, default=10, metavar="N", help="show the N largest consumers")


def parse_budget(text: str) -> float:
    """'10%' or '0.1' → 0.1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise pytest.UsageError(f"--wattwise-budget {text!r}: give a percentage such as 10%") from None
    if value < 0:
        raise pytest.UsageError(f"--wattwise-budget {text!r} must not be negative")
    return value


@dataclass
class CallEnergy:
    """The energies (J) and durations (s) of one test's repeats."""

    nodeid: str
    energy_j: list[float]
    duration_s: list[float]
    estimated: bool = False

    @property
    def mean_energy_j(self) -> float:
        return sum(self.energy_j) / len(self.energy_j) if self.energy_j else 0.0


def _energies_from_phases(phases: list[dict[str, Any]]) -> dict[str, CallEnergy]:
    """Per test, the energies of its repeats: the test process's attributed energy where every repeat has it,
    else the machine's for all of them (never a mix of the two)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for phase in phases:
        if phase.get("parent") is None or phase["name"].startswith("("):
            continue
        grouped.setdefault(phase["name"].split(REPEAT_SEPARATOR, 1)[0], []).append(phase)
    tests: dict[str, CallEnergy] = {}
    for nodeid, repeats in grouped.items():
        key = "unit_energy_j" if all(p.get("unit_energy_j") is not None for p in repeats) else "energy_j"
        measured = [p for p in repeats if p.get(key) is not None]
        if measured:
            tests[nodeid] = CallEnergy(nodeid, [float(p[key]) for p in measured],
                                       [float(p["duration_s"]) for p in measured],
                                       any(bool(p.get("estimated")) for p in measured))
    return tests


def load_baseline(spec: str, db: str | None) -> dict[str, CallEnergy]:
    """Per-test energies of a baseline: a --wattwise-json file, or a stored run id."""
    from wattwise.errors import WattwiseError

    path = Path(spec)
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return {node: CallEnergy(node, list(v["energy_j"]), list(v["duration_s"]), bool(v.get("estimated")))
                    for node, v in data["tests"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise pytest.UsageError(f"--wattwise-baseline {spec}: not a wattwise pytest JSON file ({exc})") from None
    if not spec.isdigit():
        raise pytest.UsageError(f"--wattwise-baseline {spec!r}: no such file, and not a run id")
    from wattwise.analysis import summarize_run
    from wattwise.config import resolve_database_url
    from wattwise.store import Store

    try:
        summary = summarize_run(Store(resolve_database_url(db)), int(spec))
    except WattwiseError as exc:
        raise pytest.UsageError(f"--wattwise-baseline {spec}: {exc}") from None
    return _energies_from_phases(summary["phases"])


class WattwisePlugin:
    def __init__(self, config: pytest.Config) -> None:
        from wattwise.measure.tracker import Tracker

        self.config = config
        self.repeat = max(1, int(config.getoption("wattwise_repeat")))
        budget = config.getoption("wattwise_budget")
        self.budget = parse_budget(budget) if budget is not None else None
        baseline = config.getoption("wattwise_baseline")
        self.db = config.getoption("wattwise_db")
        self.baseline = load_baseline(baseline, self.db) if baseline else None
        if self.budget is not None and self.baseline is None:
            raise pytest.UsageError("--wattwise-budget needs --wattwise-baseline (a run id or a --wattwise-json file)")
        from wattwise.errors import WattwiseError

        try:  # an observer: code under test may use wattwise.track itself
            self.tracker = Tracker(f"pytest {Path(str(config.rootpath)).name}", db=self.db,
                                   interval=config.getoption("wattwise_interval"), exclusive=False)
        except WattwiseError as exc:
            raise pytest.UsageError(f"--wattwise: {exc}") from None
        self.tests: dict[str, CallEnergy] = {}
        self.over_budget: list[tuple[CallEnergy, CallEnergy, Any]] = []
        self.undecided: list[str] = []
        self.run_id: int | None = None
        self.error: str | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from wattwise.errors import WattwiseError

        try:
            self.tracker.start()
        except WattwiseError as exc:
            raise pytest.UsageError(f"--wattwise: cannot start measuring: {exc}") from None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        if not self.tracker.running:
            return (yield)
        with self.tracker.phase(item.nodeid):
            result = yield
        for k in range(2, self.repeat + 1):
            with self.tracker.phase(f"{item.nodeid}{REPEAT_SEPARATOR}{k}]"):
                item.runtest()
        return result

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.tracker.running:
            return
        result = self.tracker.stop()
        self.run_id = result.run_id
        from wattwise.analysis import summarize_run
        from wattwise.config import resolve_database_url
        from wattwise.store import Store

        summary = summarize_run(Store(resolve_database_url(self.db)), result.run_id)
        self.tests = _energies_from_phases(summary["phases"])
        json_path = self.config.getoption("wattwise_json")
        if json_path:
            Path(json_path).write_text(json.dumps({
                "run_id": result.run_id,
                "tests": {n: {"energy_j": t.energy_j, "duration_s": t.duration_s, "estimated": t.estimated}
                          for n, t in self.tests.items()},
            }, indent=2))
        if self.baseline is not None and self.budget is not None:
            self._judge()
            if self.over_budget and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _judge(self) -> None:
        from wattwise.analysis.compare import welch

        assert self.baseline is not None and self.budget is not None
        for nodeid, now in self.tests.items():
            before = self.baseline.get(nodeid)
            if before is None or not before.energy_j:
                continue
            test = welch(before.energy_j, now.energy_j)
            grew = before.mean_energy_j > 0 and now.mean_energy_j > before.mean_energy_j * (1 + self.budget)
            if grew and test.significant is None:
                self.undecided.append(nodeid)
            elif grew and test.significant:
                self.over_budget.append((before, now, test))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from wattwise.units import format_si

        if self.run_id is None:
            return
        tr = terminalreporter
        tr.section("wattwise: energy per test")
        if not self.tests:
            tr.write_line(f"no test body was measured (run {self.run_id})")
            return
        mark = "≈" if any(t.estimated for t in self.tests.values()) else ""
        top = sorted(self.tests.values(), key=lambda t: t.mean_energy_j, reverse=True)
        limit = max(0, int(self.config.getoption("wattwise_top")))
        for t in top[:limit]:
            mean_s = sum(t.duration_s) / len(t.duration_s)
            tr.write_line(f"{mark}{format_si(t.mean_energy_j, 'J'):>10}  {mean_s:8.3f} s  {t.nodeid}")
        modules: dict[str, float] = {}
        for t in self.tests.values():
            module = t.nodeid.split("::", 1)[0]
            modules[module] = modules.get(module, 0.0) + t.mean_energy_j
        tr.write_line("per module: " + ", ".join(
            f"{m} {mark}{format_si(e, 'J')}" for m, e in sorted(modules.items(), key=lambda kv: -kv[1])))
        tr.write_line(f"stored as run {self.run_id} (wattwise runs show {self.run_id}); energy attributed to the "
                      f"test process{', estimated from CPU load (≈)' if mark else ''}")
        if self.budget is None:
            return
        for before, now, test in self.over_budget:
            tr.write_line(
                f"ENERGY BUDGET EXCEEDED: {now.nodeid}: {mark}{format_si(before.mean_energy_j, 'J')} → "
                f"{mark}{format_si(now.mean_energy_j, 'J')} ({test.relative_difference:+.0%}, budget "
                f"+{self.budget:.0%}; Welch {test.verdict})", red=True, bold=True)
        for nodeid in self.undecided:
            tr.write_line(f"energy grew beyond the budget but cannot be judged (need ≥ 2 repeats on each side, "
                          f"--wattwise-repeat): {nodeid}", yellow=True)
        if not self.over_budget:
            tr.write_line(f"energy budget +{self.budget:.0%}: no test over it")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("wattwise", default=False):
        config.pluginmanager.register(WattwisePlugin(config), "wattwise-energy")
