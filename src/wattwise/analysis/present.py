"""Run summaries as terminal tables: the one presenter of `summarize_run`'s dictionary.

Used by `wattwise measure`, `wattwise run` and `wattwise runs show`, so a run reads the same wherever it is
printed. Rich is imported on first use.
"""

from __future__ import annotations

from typing import Any

from wattwise.clitools import console, err_console
from wattwise.units import format_duration, format_si

__all__ = ["print_summary", "runtime_phase", "status_markup"]


def print_summary(summary: dict[str, Any]) -> None:
    """The phase table (energy, power, carbon, unit CPU and memory), energy source, grid, PUE and warnings."""
    from rich.table import Table

    estimated = summary.get("estimated")
    mark = " [yellow](estimated)[/]" if estimated else ""
    table = Table(title=f"Run {summary['run_id']}: {summary['name']} — {summary['status']}{mark}")
    for column in (
        "phase",
        "duration",
        "energy",
        "mean power",
        "peak power",
        "carbon",
        "CPU (unit)",
        "memory peak",
    ):
        table.add_column(column, justify="right" if column != "phase" else "left")
    for p in summary["phases"]:
        approx = "≈" if p["estimated"] else ""
        table.add_row(
            ("  " if p.get("parent") else "") + p["name"],
            format_duration(p["duration_s"]),
            approx + format_si(p["energy_j"], "J"),
            approx + format_si(p["mean_power_w"], "W"),
            approx + format_si(p["peak_power_w"], "W"),
            approx + format_si(p["carbon_g"], "g"),
            "–" if p.get("unit_cpu_time_s") is None else f"{p['unit_cpu_time_s']:.2f} s",
            format_si(p.get("unit_memory_peak_b"), "B"),
        )
    console.print(table)
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
    for warning in summary.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {warning}")


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
