"""Run the benchmarks: `python benchmarks/run.py [NAME ...]` runs bench_NAME.py (all when none given).

Each benchmark is a script that prints its figures and, for every target, a line
`TARGET <name>: <figure> <unit> (target <op> <value>) ratio=<figure/target> PASS|MISS`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        missing = wanted - {s.stem.removeprefix("bench_") for s in scripts}
        if missing:
            names = ", ".join(sorted(s.stem.removeprefix("bench_") for s in HERE.glob("bench_*.py")))
            print(f"unknown benchmark(s): {', '.join(sorted(missing))}; available: {names}", file=sys.stderr)
            return 2
    failed = 0
    for script in scripts:
        print(f"=== {script.stem} ===", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
