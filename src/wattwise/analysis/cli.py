"""`wattwise compare`, `wattwise stats`, `wattwise sci`, `wattwise containers`."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

from wattwise.clitools import DbOption, JsonOption, console
from wattwise.store import open_store

TraceOption = Annotated[
    str | None,
    typer.Option(
        "--trace",
        help="Carbon-intensity trace CSV (Electricity Maps export or timestamp,g_per_kwh) to use instead "
        "of the run's static grid intensity.",
        show_default=False,
    ),
]
TraceAtOption = Annotated[
    str | None,
    typer.Option(
        "--trace-at",
        help="Pretend the run started at this time (ISO 8601) when looking up the trace, e.g. to ask "
        "'what if it had run on 2024-07-15T12:00Z'.",
        show_default=False,
    ),
]


class _VsCommand(TyperCommand):
    """`compare A... --vs B...`: every run id after `--vs` belongs to the second group.

    click takes one value per `--vs`, so `--vs 8 9 10` would silently put 9 and 10 into the first group.
    The arguments are rewritten before parsing: ids that follow `--vs` become `--vs 8 --vs 9 --vs 10`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_vs(args))


def split_vs(args: list[str]) -> list[str]:
    """`5 6 7 --vs 8 9 10 --json` → `5 6 7 --vs=8 --vs=9 --vs=10 --json` (also `--vs 8,9,10`).

    Run ids before the first `--vs` are the first group, ids right after a `--vs` the second. A bare id that
    comes after the second group has ended (`--vs 8 --json 5`) is ambiguous: it is rejected, not guessed."""
    from wattwise.errors import WattwiseError

    out: list[str] = []
    in_vs = seen_vs = expects_value = False
    for token in args:
        if expects_value:  # the value of an option such as --metric
            out.append(token)
            expects_value = False
        elif token == "--vs" or token.startswith("--vs="):
            in_vs = seen_vs = True
            if token.startswith("--vs="):
                out += [f"--vs={part}" for part in _ids_of(token[5:])] or [token]
        elif token.startswith("-") and not _is_number(token):
            in_vs = False
            out.append(token)
            expects_value = "=" not in token and token in _VALUE_OPTIONS
        elif in_vs:
            out += [f"--vs={part}" for part in _ids_of(token)] or [f"--vs={token}"]
        elif seen_vs:
            raise WattwiseError(
                f"compare: run id {token!r} comes after the --vs group ended: write the first group's run ids "
                "before --vs and the second group's right after it (wattwise compare 1 2 3 --vs 4 5 6)"
            )
        else:
            out += _ids_of(token) or [token]
    return out


_VALUE_OPTIONS = {"--metric", "-m", "--phase", "-p", "--alpha", "--db"}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _ids_of(token: str) -> list[str]:
    """`8,9,10` → ['8', '9', '10']; a token that is not a list of ids is left to click to reject."""
    parts = [p for p in re.split(r"[,\s]+", token) if p]
    return parts if parts and all(p.isdigit() for p in parts) else []


def register(app: typer.Typer) -> None:
    app.command("compare", cls=_VsCommand)(compare)
    app.command("stats")(stats)
    app.command("sci")(sci)
    app.command("containers")(containers)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def compare(
    runs: Annotated[list[int], typer.Argument(help="Run ids of the (first) group.")],
    vs: Annotated[
        list[int] | None,
        typer.Option(
            "--vs", help="Run ids of a second group to test against: every id after --vs (--vs 4 5 6, or --vs 4,5,6)."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Phase figure(s) to compare (default: energy_j, duration_s, mean_power_w, carbon_g).",
        ),
    ] = None,
    phase: Annotated[list[str] | None, typer.Option("--phase", "-p", help="Only these phases.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of Welch's t-test.")] = 0.05,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Statistics over repeated runs (mean, sd, CV, 95 % CI) and Welch's t-test between two groups.

    Examples: wattwise compare 1 2 3 4 5 ;  wattwise compare 1 2 3 --vs 4 5 6 --phase [RUNTIME]
    """
    from wattwise.analysis.compare import DEFAULT_METRICS, compare_runs

    result = compare_runs(
        open_store(db), runs, vs or None, metrics=metric or DEFAULT_METRICS, phases=phase or None, alpha=alpha
    )
    if as_json:
        print(json.dumps(result))
        return
    from rich.table import Table

    two = bool(result["vs"])
    title = f"runs {', '.join(map(str, result['runs']))}"
    if two:
        title += f"  vs  {', '.join(map(str, result['vs']))}"
    table = Table(title=title)
    for name in ("phase", "figure", "n", "mean ± sd", "CV", "95 % CI"):
        table.add_column(name, justify="left" if name in ("phase", "figure") else "right")
    if two:
        for name in ("n vs", "mean ± sd vs", "95 % CI vs", "Δ", "p", "verdict"):
            table.add_column(
                name, justify="left" if name == "verdict" else "right", no_wrap=name == "verdict"
            )

    def spread(d: dict[str, Any], approx: str) -> str:
        return approx + _fmt(d["mean"], 3) + ("" if d["sd"] is None else f" ± {_fmt(d['sd'], 2)}")

    def ci(d: dict[str, Any], approx: str) -> str:
        return "–" if d["ci_low"] is None else f"{approx}{_fmt(d['ci_low'], 3)}…{_fmt(d['ci_high'], 3)}"

    for row in result["rows"]:
        a = row["a"]
        approx = "≈" if row.get("estimated") else ""
        cells = [escape(row["phase"]), escape(row["metric"]), str(a["n"])]
        cells += [spread(a, approx), _pct(a["cv"]), ci(a, approx)]
        if two:
            b, test = row["b"], row["test"]
            verdict = test["verdict"].split(" (")[0]
            cells += [
                str(b["n"]),
                spread(b, approx),
                ci(b, approx),
                _pct(test["relative_difference"]),
                _fmt(test["p"], 2),
                f"[bold green]{verdict}[/]" if test["significant"] else verdict,
            ]
        table.add_row(*cells)
    console.print(table)
    if result.get("estimated"):
        console.print(
            "[yellow]≈ estimated[/]: figures marked ≈ come from the CPU load→power curve of runs without a power "
            "sensor (see docs/measurement.md).",
            highlight=False,
        )
    if two:
        console.print(
            f"Welch's t-test, two-sided, alpha = {result['alpha']:g}; Δ = (mean vs − mean) / mean.",
            highlight=False,
        )


def _trace_args(trace: str | None, trace_at: str | None, store: Any, run_id: int) -> tuple[Any, float]:
    if trace is None:
        if trace_at is not None:
            from wattwise.errors import WattwiseError

            raise WattwiseError("--trace-at needs --trace FILE")
        return None, 0.0
    from wattwise.analysis.carbon import load_trace
    from wattwise.carbon.trace import parse_time_s

    loaded = load_trace(trace)
    shift = 0.0
    if trace_at is not None:
        from wattwise.errors import WattwiseError

        try:
            at = parse_time_s(trace_at)
        except ValueError as exc:
            raise WattwiseError(f"--trace-at: {exc}") from None
        phases = store.phases(run_id)
        if not phases:
            raise WattwiseError(f"run {run_id} has no phases")
        shift = at - min(p.start_us for p in phases) / 1e6
    return loaded, shift


def stats(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    phase: Annotated[list[str] | None, typer.Option("--phase", "-p", help="Only these phases.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Per phase and per metric: total, time-weighted mean, max, min, samples; sampling warnings.

    Counters (energy, CPU time, bytes) show their increase as total and rates (per second) as mean/max/min.

    Example: wattwise stats 12 --phase [RUNTIME]
    """
    from wattwise.analysis.stats import run_stats

    result = [p for p in run_stats(open_store(db), run_id) if not phase or p.name in phase]
    if as_json:
        print(json.dumps({"run_id": run_id, "phases": [p.to_dict() for p in result]}))
        return
    from rich.table import Table

    for p in result:
        flags = " (hidden)" if p.hidden else ""
        if p.rebuilt_from:
            flags += f" = {' + '.join(p.rebuilt_from)}"
        table = Table(title=escape(f"{p.name}{flags} — {p.duration_s:.3f} s"), title_justify="left")
        for name in ("metric", "total", "unit", "mean", "max", "min", "unit ", "samples", "interval"):
            table.add_column(name, justify="left" if name.startswith(("metric", "unit")) else "right")
        for m in p.metrics:
            table.add_row(
                escape(m.label),
                _fmt(m.total) if m.total_unit else "–",
                m.total_unit or "",
                _fmt(m.mean),
                _fmt(m.max),
                _fmt(m.min),
                m.rate_unit,
                str(m.samples),
                "–" if m.median_interval_s is None else f"{m.median_interval_s:.3g} s",
            )
        console.print(table)
        for warning in p.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def sci(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    phase: Annotated[str, typer.Option("--phase", "-p", help="Phase to rate.")] = "[RUNTIME]",
    te: Annotated[
        float | None, typer.Option("--te", help="Total embodied carbon of the machine, gCO2e.")
    ] = None,
    el: Annotated[float | None, typer.Option("--el", help="Expected lifetime of the machine, years.")] = None,
    rs: Annotated[float | None, typer.Option("--rs", help="Resource share, 0–1.")] = None,
    r: Annotated[float | None, typer.Option("--r", help="Functional units in the phase (R).")] = None,
    r_metric: Annotated[
        str | None, typer.Option("--r-metric", help="Metric whose increase over the phase is R.")
    ] = None,
    intensity: Annotated[
        float | None, typer.Option("--intensity", help="Static grid intensity, gCO2e/kWh.")
    ] = None,
    pue: Annotated[float | None, typer.Option("--pue", help="Power usage effectiveness.")] = None,
    network: Annotated[
        str | None,
        typer.Option(
            "--network-kwh-per-gb",
            help="kWh per GB transferred: a number or seed, aslan-2015, ccf, swd-v3 (default 0.002652).",
        ),
    ] = None,
    network_scope: Annotated[
        str,
        typer.Option(
            "--network-scope",
            help="Network bytes with transfer energy: external (only traffic that leaves the machine, each byte "
            "once) or all (also traffic between containers of the machine, each transfer once).",
        ),
    ] = "external",
    trace: TraceOption = None,
    trace_at: TraceAtOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Software Carbon Intensity: (operational + embodied) / R, with a static or time-varying intensity.

    A trace covers its own period (the shipped DE trace: 2024): for a run made at another time, --trace-at
    says when the run is taken to have started.

    Examples:

      wattwise sci 12 --te 1200000 --el 4 --rs 0.25

      wattwise sci 12 --trace data/carbon/DE-2024-hourly-electricitymaps.csv --trace-at 2024-07-15T12:00Z
    """
    from wattwise.analysis.carbon import network_kwh_per_gb
    from wattwise.analysis.sci import run_sci

    store = open_store(db)
    loaded, shift = _trace_args(trace, trace_at, store, run_id)
    result = run_sci(
        store,
        run_id,
        phase=phase,
        intensity=loaded if loaded is not None else intensity,
        pue=pue,
        trace_shift_s=shift,
        network_kwh_per_gb=network_kwh_per_gb(network),
        network_scope=network_scope,
        te_g=te,
        el_years=el,
        rs=rs,
        r=r,
        r_metric=r_metric,
    ).to_dict()
    if as_json:
        print(json.dumps(result))
        return
    approx = "≈" if result["estimated"] else ""
    lines = [
        f"phase {result['phase']}: {result['duration_s']:.3f} s",
        f"energy E            {approx}{_fmt(result['energy_j'])} J",
        f"grid intensity I    {_fmt(result['intensity_g_per_kwh'])} gCO2e/kWh "
        f"({result['intensity_source']}), PUE {result['pue']:g}",
        f"network transfer    {_fmt(result['network_bytes'])} B ({result['network_scope']}) → "
        f"{_fmt(result['network_energy_j'])} J → {_fmt(result['network_g'])} g",
        f"operational O       {approx}{_fmt(result['operational_g'])} gCO2e",
        f"embodied M          {_fmt(result['embodied_g'])} gCO2e",
        f"functional units R  {_fmt(result['r'])} × {result['r_d']} ({result['r_source']})",
        f"SCI                 {approx}{_fmt(result['sci_g_per_unit'])} gCO2e per {result['r_d']}",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False)
    if approx:
        console.print(
            "≈ estimated: E comes from the CPU load→power curve (no power sensor); see docs/measurement.md.",
            highlight=False,
            markup=False,
        )
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def containers(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    baseline_power: Annotated[
        float | None,
        typer.Option("--baseline-power", help="Idle machine power in W (default: mean power of [BASELINE])."),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Per-container energy: the machine's energy attributed by each container's share of the machine's CPU
    work (attributed energy), and its share of the energy above the baseline (see docs/measurement.md).

    Example: wattwise containers 12
    """
    from wattwise.analysis.containers import run_containers

    result = run_containers(open_store(db), run_id, baseline_power_w=baseline_power)
    if as_json:
        print(json.dumps({"run_id": run_id, "phases": [p.to_dict() for p in result]}))
        return
    from rich.table import Table

    for p in result:
        if not p.containers:
            continue
        table = Table(
            title=escape(
                f"{p.phase}: machine {_fmt(p.machine_energy_j)} J, baseline {_fmt(p.baseline_power_w)} W, "
                f"above baseline {_fmt(p.above_baseline_energy_j)} J"
            ),
            title_justify="left",
        )
        for name in (
            "container",
            "CPU s",
            "share of machine CPU",
            "attributed energy J",
            "above baseline J",
            "memory peak B",
        ):
            table.add_column(name, justify="left" if name == "container" else "right")
        for c in p.containers:
            table.add_row(
                escape(c.name),
                _fmt(c.cpu_time_s),
                _pct(c.share),
                _fmt(c.attributed_energy_j),
                _fmt(c.above_baseline_energy_j),
                _fmt(c.memory_peak_b),
            )
        console.print(table)
        for warning in p.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
