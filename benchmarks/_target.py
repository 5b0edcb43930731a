"""Print a benchmark figure against its target in the one format `benchmarks/run.py` documents."""

from __future__ import annotations


def report(name: str, figure: float, unit: str, target: float, higher_is_better: bool) -> bool:
    ok = figure >= target if higher_is_better else figure <= target
    op = ">=" if higher_is_better else "<="
    ratio = figure / target if target else float("nan")
    print(
        f"TARGET {name}: {figure:.4g} {unit} (target {op} {target:g}) ratio={ratio:.3f} {'PASS' if ok else 'MISS'}"
    )
    return ok
