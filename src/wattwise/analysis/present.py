"""Run summaries as terminal tables: the one presenter of `summarize_run`'s dictionary.

Used by `wattwise measure`, `wattwise run` and `wattwise runs show`, so a run reads the same wherever it is
printed. Rich is imported on first use.
"""

from __future__ import annotations

from typing import Any

from wattwise.clitools import console, err_console
from wattwise.providers.estimate import format_estimate
from wattwise.units import format_duration, format_si

__all__ = ["print_summary", "runtime_phase", "status_markup"]


def print_summary(summary: dict[str, Any]) -> None:
    """The phase table (the three energy figures, power, carbon, unit CPU, share and memory), energy source,
    grid, PUE and warnings."""
    from rich.markup import escape
    from rich.table import Table

    estimated = summary.get("estimated")
    mark = " [yellow](estimated)[/]" if estimated else ""
    table = Table(title=escape(f"Run {summary['run_id']}: {summary['name']} — {summary['status']}") + mark)
    for column in (
        "phase",
        "duration",
        "machine energy",
        "above baseline",
        "mean power",
        "peak power",
        "carbon",
        "CPU (unit)",
        "unit share",
        "unit energy",
        "memory peak",
    ):
        table.add_column(column, justify="right" if column != "phase" else "left")
    for p in summary["phases"]:
        approx = "≈" if p["estimated"] else ""

        def energy(value: float | None, approx: str = approx) -> str:
            return "–" if value is None else approx + format_si(value, "J")

        def figure(key: str, unit: str, p: dict[str, Any] = p) -> str:
            """An estimated figure with its interval, `≈ 182 W (150–214)`; a measured one as it is."""
            if not p["estimated"] or p.get(key) is None:
                return format_si(p.get(key), unit)
            return format_estimate(p[key], p.get(f"{key}_low"), p.get(f"{key}_high"), unit)

        share = p.get("unit_cpu_share")
        table.add_row(
            escape(("  " if p.get("parent") else "") + p["name"]),
            format_duration(p["duration_s"]),
            figure("energy_j", "J"),
            energy(p.get("above_baseline_energy_j")),
            figure("mean_power_w", "W"),
            approx + format_si(p["peak_power_w"], "W"),
            figure("carbon_g", "g"),
            "–" if p.get("unit_cpu_time_s") is None else f"{p['unit_cpu_time_s']:.2f} s",
            "–" if share is None else f"{share * 100:.1f} %",
            figure("unit_energy_j", "J"),
            format_si(p.get("unit_memory_peak_b"), "B"),
        )
    console.print(table)
    console.print(
        "machine energy: everything the machine drew; above baseline: minus the [BASELINE] power × duration; "
        "unit energy: machine energy × unit share (the command's CPU seconds ÷ the machine's busy CPU "
        "seconds). See docs/measurement.md.",
        highlight=False,
        markup=False,
    )
    source = summary["phases"][0]["energy_source"] if summary["phases"] else "none"
    console.print(
        f"energy source: {source}; grid {summary['intensity_g_per_kwh']:g} gCO2e/kWh "
        f"({summary.get('intensity_source', '')}), PUE {summary['pue']:g}"
    )
    if estimated:
        console.print(
            "[yellow]≈ estimated[/]: no power sensor here; figures come from the CPU load→power curve "
            "(see `wattwise providers`)."
        )
        if summary.get("estimate_source"):
            console.print(f"estimate: {escape(summary['estimate_source'])}", highlight=False)
    for warning in summary.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")


def status_markup(status: str) -> str:
    """A run status coloured for Rich: finished green, failed red, interrupted yellow, running cyan."""
    colour = {"finished": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}.get(
        status, "white"
    )
    return f"[{colour}]{status}[/]"


def runtime_phase(results: dict[str, Any] | None) -> dict[str, Any] | None:
    """The [RUNTIME] phase of a stored run summary, if there is one."""
    if not results:
        return None
    for phase in results.get("phases", []):
        if phase["name"] == "[RUNTIME]":
            return phase  # type: ignore[no-any-return]
    return None
