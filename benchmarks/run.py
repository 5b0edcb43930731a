"""Run the benchmarks: `python benchmarks/run.py [NAME ...]` runs bench_NAME.py (all when none given);
`peers` runs peers.py (wattwise next to CodeCarbon, a MILP, and on Dask).

Each benchmark is a script that prints its figures and, for every target, a line
`TARGET <name>: <figure> <unit> (target <op> <value>) ratio=<figure/target> PASS|MISS`.

Examples:
  .venv/bin/python benchmarks/run.py              # every bench_*.py
  .venv/bin/python benchmarks/run.py schedule     # benchmarks/bench_schedule.py
  .venv/bin/python benchmarks/run.py peers        # benchmarks/peers.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, Path]:
    scripts = {s.stem.removeprefix("bench_"): s for s in sorted(HERE.glob("bench_*.py"))}
    if (HERE / "peers.py").exists():
        scripts["peers"] = HERE / "peers.py"
    return scripts


def main(argv: list[str]) -> int:
    scripts = available()
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print(f"available: {', '.join(scripts)}")
        return 0
    wanted = list(dict.fromkeys(argv))
    missing = [w for w in wanted if w not in scripts]
    if missing:
        print(f"unknown benchmark(s): {', '.join(missing)}; available: {', '.join(scripts)}", file=sys.stderr)
        return 2
    chosen = [scripts[w] for w in wanted] if wanted else [s for n, s in scripts.items() if n != "peers"]
    failed = 0
    for script in chosen:
        print(f"=== {script.stem} ===", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
