"""`wattwise estimate` (the power curve of any machine description) and `wattwise calibrate` (this machine's
curve measured with a sensor, stored for later runs without one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wattwise.clitools import JsonOption, console, err_console
from wattwise.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)
    app.command("calibrate")(calibrate_command)


def format_interval(value: float, low: float, high: float, unit: str = "W") -> str:
    """`≈ 182 W (150–214)`: an estimated figure with its interval, three significant digits."""
    return f"≈ {value:.3g} {unit} ({low:.3g}–{high:.3g})"


def estimate(
    cpu: Annotated[str, typer.Option("--cpu", help="CPU model name, e.g. 'Intel Xeon Gold 6248' or 'AMD EPYC 7763'.")],
    tdp: Annotated[float | None, typer.Option("--tdp", help="TDP per CPU chip in W (default: the TDP table).")] = None,
    chips: Annotated[int | None, typer.Option("--chips", help="CPU sockets (default 1).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Hardware threads in all.")] = None,
    cores: Annotated[int | None, typer.Option("--cores", help="Physical cores in all (default threads / 2).")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb", help="Installed memory in GB.")] = None,
    year: Annotated[int | None, typer.Option("--year", help="Year the hardware came out.")] = None,
    vhost_ratio: Annotated[float | None, typer.Option(
        "--vhost-ratio", help="A VM's share of the described host (its vCPUs / the host's threads).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the estimated wall power at 0, 10, … 100 % CPU utilization, with its interval, for a machine.

    The SPECpower model (docs/measurement.md) is asked about the machine you describe.\n
    Facts you leave out are assumed, and listed.\n
    JSON: {"curve": [{"utilization", "power_w", "power_w_low", "power_w_high"}, …]}.

    Examples:\n
      wattwise estimate --cpu "Intel Xeon Gold 6248" --chips 2 --threads 80 --memory-gb 384\n
      wattwise estimate --cpu "AMD EPYC 7763" --tdp 280 --json
    """
    from wattwise.providers.estimate import lookup_tdp
    from wattwise.providers.machine_facts import described_facts, model_input
    from wattwise.providers.powermodel import interval_scaled, load_model

    if not cpu.strip():
        raise ConfigError("--cpu must name a CPU model")
    if tdp is not None and tdp <= 0:
        raise ConfigError(f"--tdp must be positive, got {tdp:g}")
    if vhost_ratio is not None and not 0 < vhost_ratio <= 1:
        raise ConfigError(f"--vhost-ratio must be > 0 and ≤ 1, got {vhost_ratio:g}")
    model = load_model()
    facts = described_facts(cpu, chips=chips, cores=cores, threads=threads, memory_gb=memory_gb)
    tdp_source = "--tdp"
    if tdp is None:
        found = lookup_tdp(cpu)
        if found is not None:
            tdp, tdp_source = found.tdp_w, found.source
    given = model_input(facts, model, tdp_w=tdp, tdp_source=tdp_source, year=year)
    curve = interval_scaled(model.curve(given.spec), vhost_ratio or 1.0)
    if as_json:
        console.print_json(json.dumps({"curve": [p.to_dict() for p in curve]}))
        return
    table = Table(title=f"≈ wall power of {cpu}" + (f" × {vhost_ratio:g} (VM share)" if vhost_ratio else ""))
    table.add_column("CPU utilization", justify="right")
    table.add_column(f"power (W), {model.interval_percent} % interval", justify="right")
    for p in curve:
        table.add_row(f"{p.utilization:.0%}", format_interval(p.power_w, p.power_w_low, p.power_w_high))
    console.print(table)
    console.print("found: " + (", ".join(f"{k} {v}" for k, v in given.found.items()) or "nothing"), highlight=False)
    console.print("assumed: " + (", ".join(f"{k} {v}" for k, v in given.assumed.items()) or "nothing"),
                  highlight=False)
    if model.coverage is not None:
        console.print(f"The interval covered {model.coverage:.0%} of measured points on servers newer than the "
                      f"model's training data (time split); see docs/measurement.md.", highlight=False)


def calibrate_command(
    sensor: Annotated[str, typer.Option(
        "--sensor", help="Provider to read: rapl, ipmi, or auto (IPMI if available, else RAPL).")] = "auto",
    step: Annotated[str, typer.Option("--step", help="Duration of each load step.")] = "20s",
    settle: Annotated[str, typer.Option("--settle", help="Settling time at the start of each step.")] = "3s",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Also write the curve to this CSV (readable by --power-curve).")] = None,
    store: Annotated[bool, typer.Option(
        "--store/--no-store", help="Store the curve for this machine type (used when no sensor is present).")] = True,
    as_json: JsonOption = False,
) -> None:
    """Measure this machine's load→power curve: a stepped CPU load (idle, 10 … 100 %) while a sensor is read.

    The curve is stored per machine type (CPU model and thread count) in $WATTWISE_CALIBRATION_DIR (default
    ~/.local/share/wattwise/calibration); `measure` and `monitor` use it on machines of that type without a
    sensor. RAPL sees the CPU package and DRAM only, not wall power: prefer IPMI or a wall meter.

    Examples:\n
      wattwise calibrate\n
      wattwise calibrate --sensor ipmi --step 30s --out node-type-a.csv
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from wattwise.providers import create
    from wattwise.providers.calibrate import STEPS, CpuLoad, calibrate, calibration_path
    from wattwise.units import parse_duration_s

    names = ["ipmi", "rapl"] if sensor == "auto" else [sensor]
    chosen = None
    reasons = []
    for name in names:
        provider = create(name)
        availability = provider.availability()
        if availability.available:
            chosen = provider
            break
        reasons.append(f"{name}: {availability.reason}")
    if chosen is None:
        raise ConfigError("no power sensor to calibrate against (" + "; ".join(reasons) + ")")
    step_s, settle_s = parse_duration_s(step), parse_duration_s(settle)
    load = CpuLoad()
    try:
        with Progress(TextColumn("calibrating with " + chosen.name), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total} steps"), TimeRemainingColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as bar:
            task = bar.add_task("steps", total=len(STEPS))
            result = calibrate(chosen, load, step_s=step_s, settle_s=settle_s,
                               progress=lambda done, _total: bar.update(task, completed=done))
    finally:
        load.close()
    paths = []
    if store:
        path = calibration_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        result.curve.to_csv(path)
        paths.append(str(path))
    if out is not None:
        result.curve.to_csv(out)
        paths.append(str(out))
    points = [{"utilization": round(u, 4), "power_w": round(p, 2),
               "power_w_low": round(result.curve.low[i], 2) if result.curve.low else None,
               "power_w_high": round(result.curve.high[i], 2) if result.curve.high else None}
              for i, (u, p) in enumerate(result.curve.points)]
    if as_json:
        console.print_json(json.dumps({"sensor": result.sensor, "source": result.curve.source, "curve": points,
                                       "stored": paths}))
        return
    table = Table(title=result.curve.source)
    table.add_column("target load", justify="right")
    table.add_column("CPU utilization", justify="right")
    table.add_column("power (W), 5–95 % of readings", justify="right")
    for reading, point in zip(sorted(result.steps, key=lambda r: r.target), points, strict=False):
        table.add_row(f"{reading.target:.0%}", f"{point['utilization']:.1%}",
                      f"{point['power_w']:.1f} ({point['power_w_low']:.1f}–{point['power_w_high']:.1f})")
    console.print(table)
    for written in paths:
        console.print(f"stored: {written}", highlight=False)
