"""Scenario loading under hostile files (issue 16): each is a clear error within 5 s (target), next to the time
to validate an ordinary scenario measured in the same run (the baseline; ratios are printed against it).

Cases: an 18.9 MB file with 200,000 flow steps, a 9.5 MB file with 40,000 steps (under the size limit), a
712-byte alias bomb, 100,000-deep nesting, and the largest accepted shape (1,600 flow steps, ≈ 0.4 MB).

Usage: .venv/bin/python benchmarks/bench_scenario.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _target import report
from wattwise.measure.scenario.problems import ScenarioError
from wattwise.measure.scenario.schema import load_scenario

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 5.0
HEAD = "name: n\nauthor: a\ndescription: d\nservices:\n  app:\n    image: localhost/wattwise-busybox:latest\n"
STEP = (
    "  - name: Step {i}\n    container: app\n    commands:\n      - type: console\n"
    "        command: echo a fairly long command line for step {i} of the scenario\n"
    "        note: step {i} of many, with a note to make the file as large as a real one\n"
)


COMPACT = "  - name: Step {i}\n    container: app\n    commands: [{{type: console, command: echo {i}}}]\n"


def flow(steps: int, step: str = STEP) -> str:
    return HEAD + "flow:\n" + "".join(step.format(i=i) for i in range(steps))


def bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    return HEAD + "x-bomb:\n" + "".join(f"  {line}\n" for line in lines) + flow(1)[len(HEAD) :]


def timed(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        scenario = load_scenario(path)
        outcome = f"valid ({len(scenario.flow)} steps)"
    except ScenarioError as exc:
        outcome = exc.lines[0][:110]
    return time.perf_counter() - start, outcome


def main() -> int:
    example = REPO / "examples" / "web-busybox" / "usage_scenario.yml"
    baseline = []
    for _ in range(20):
        start = time.perf_counter()
        load_scenario(example, {"__GMT_VAR_REQUESTS__": "20"})
        baseline.append(time.perf_counter() - start)
    base_s = statistics.median(baseline)
    print(f"baseline: validating examples/web-busybox takes {base_s * 1000:.1f} ms (median of 20)")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "huge_18_9mb": flow(200_000, COMPACT),
            "many_steps_9_5mb": flow(40_000),
            "alias_bomb": bomb(),
            "deep_100000": HEAD + "x-deep: " + "[" * 100_000 + "]" * 100_000 + "\n" + flow(1)[len(HEAD) :],
            "largest_accepted_1600_steps": flow(1_600),
        }
        for name, text in cases.items():
            path = Path(tmp) / f"{name}.yml"
            path.write_text(text)
            seconds, outcome = timed(path)
            size_mb = path.stat().st_size / 1e6
            print(f"{name}: {size_mb:.2f} MB, {seconds:.2f} s ({seconds / base_s:.0f}x baseline): {outcome}")
            ok &= report(f"scenario_{name}_s", seconds, "s", TARGET_S, higher_is_better=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
