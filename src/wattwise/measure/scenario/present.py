"""Terminal output of scenario runs: per-service figures, container logs, iterations compared."""

from __future__ import annotations

import statistics
from typing import Any

from wattwise.clitools import console, err_console

__all__ = ["print_comparison", "print_error", "print_logs", "print_phase_stats", "print_services"]


def print_error(message: str) -> None:
    """The whole message, one problem per line, never wrapped, no markup and no emoji (`compose.yml:100:`
    must not become an emoji), so that it can be searched and compared."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)


def print_services(summary: dict[str, Any]) -> None:
    """Per-service CPU, memory and network of each phase (the services' own cgroups and namespaces)."""
    from rich.table import Table

    from wattwise.units import format_si

    phases = [p for p in summary["phases"] if p.get("services")]
    names = sorted({name for p in phases for name in p["services"]})
    if not names:
        return
    table = Table(title="Per service")
    for column in ("phase", "service", "CPU", "memory peak", "net received", "net sent"):
        table.add_column(column, justify="left" if column in ("phase", "service") else "right")
    for phase in phases:
        for name in names:
            figures = phase["services"].get(name) or {}
            if all(v is None for v in figures.values()):
                continue
            cpu = figures.get("cpu_time_s")
            table.add_row(
                ("  " if phase.get("parent") else "") + phase["name"],
                name,
                "–" if cpu is None else f"{cpu:.2f} s",
                format_si(figures.get("memory_peak_b"), "B"),
                format_si(figures.get("network_rx_b"), "B"),
                format_si(figures.get("network_tx_b"), "B"),
            )
    console.print(table, emoji=False)
    sci = summary.get("sci")
    if sci:
        console.print(f"SCI functional unit: R = {sci.get('R')} {sci.get('R_d', '')}", highlight=False, markup=False)


def print_logs(service_logs: dict[str, str]) -> None:
    """--print-logs: each container's own output, as GMT prints it at the end of a run."""
    for name, text in service_logs.items():
        err_console.rule(f"logs of {name}", style="dim")
        err_console.print(text.rstrip() or "(no output)", highlight=False, markup=False, emoji=False)


def print_comparison(rows: list[dict[str, Any]]) -> None:
    """--iterations: one row per run ([RUNTIME] energy and duration), then mean and standard deviation."""
    from rich.table import Table

    from wattwise.units import format_si

    table = Table(title=f"{len(rows)} iterations")
    for column in ("iteration", "run", "file", "status", "[RUNTIME] duration", "[RUNTIME] energy"):
        table.add_column(column, justify="right" if "[RUNTIME]" in column else "left")
    energies, durations = [], []
    for row in rows:
        runtime = next((p for p in row["summary"].get("phases", []) if p["name"] == "[RUNTIME]"), None)
        energy = runtime.get("energy_j") if runtime else None
        duration = runtime.get("duration_s") if runtime else None
        approx = "≈" if runtime and runtime.get("estimated") else ""
        if energy is not None:
            energies.append(float(energy))
        if duration is not None:
            durations.append(float(duration))
        table.add_row(
            str(row["iteration"]),
            str(row["run_id"]),
            row["file"],
            row["status"],
            "–" if duration is None else f"{duration:.2f} s",
            "–" if energy is None else approx + format_si(energy, "J"),
        )
    if len(energies) >= 2:
        table.add_row(
            "mean ± sd",
            "",
            "",
            "",
            f"{statistics.mean(durations):.2f} ± {statistics.stdev(durations):.2f} s" if len(durations) >= 2 else "",
            f"{format_si(statistics.mean(energies), 'J')} ± {format_si(statistics.stdev(energies), 'J')}",
        )
    console.print(table, emoji=False)


def print_phase_stats(summary: dict[str, Any]) -> None:
    """One plain line per phase on stderr (for --print-phase-stats next to --json on stdout)."""
    from wattwise.units import format_si

    for phase in summary.get("phases", []):
        approx = "≈" if phase.get("estimated") else ""
        err_console.print(
            f"{'  ' if phase.get('parent') else ''}{phase['name']}: {phase['duration_s']:.2f} s, "
            f"{approx}{format_si(phase.get('energy_j'), 'J')}, {approx}{format_si(phase.get('mean_power_w'), 'W')}",
            highlight=False,
            markup=False,
            emoji=False,
        )
