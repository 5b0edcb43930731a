"""A self-contained HTML report of one run: phase table, every metric over time with phase bands and
notes, per-container energy, per-metric statistics, notes and logs.

Plotly (plotly.min.js from the installed plotly package) and the dashboard's chart code are inlined, and
so are the downsampled measurements: the file opens without a network or a server.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from wattwise import __version__
from wattwise.store import Store

LOG_LINES = 500


def _inline_js(text: str) -> str:
    """Script text safe inside <script>…</script>."""
    return text.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def render_report(store: Store, run_id: int, *, points: int = 2000) -> str:
    import jinja2

    from wattwise.analysis.containers import run_containers
    from wattwise.analysis.phases import summarize_run
    from wattwise.analysis.stats import run_stats
    from wattwise.web import pages
    from wattwise.web.results import LazySeries, json_safe
    from wattwise.web.series import chart_series, run_metrics, run_version

    run = store.get_run(run_id)
    lazy = LazySeries(store, run_id)
    summary = json_safe(summarize_run(store, run_id, series=lazy()))
    stats = json_safe([p.to_dict() for p in run_stats(store, run_id, series=lazy())])
    containers = json_safe([p.to_dict() for p in run_containers(store, run_id, series=lazy())])
    version = run_version(run)
    series = [chart_series(store, m, version, points=points) for m in run_metrics(store, run_id)]
    phases = [
        {"name": p.name, "start_us": p.start_us, "end_us": p.end_us, "parent": p.parent, "hidden": p.hidden}
        for p in store.phases(run_id)
    ]
    notes = store.notes(run_id)
    entries = store.logs(run_id)
    starts = [p["start_us"] for p in phases]
    origin_us = min(starts) if starts else (series[0]["t_us"][0] if series and series[0]["t_us"] else 0)
    command = run.command
    if isinstance(command, list):
        command = shlex.join(str(c) for c in command)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(pages.TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(
        fmt_si=pages.format_si,
        fmt_duration=pages.format_duration,
        fmt_num=pages.fmt_num,
        fmt_pct=pages.fmt_pct,
        approx=lambda p: "≈" if p.get("estimated") and p.get("energy_j") is not None else "",
    )
    context: dict[str, Any] = {
        "run": run,
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "css": (pages.STATIC / "style.css").read_text(),
        "plotly_js": _inline_js(pages.plotly_js_path().read_text()),
        "charts_js": _inline_js((pages.STATIC / "charts.js").read_text()),
        "summary": summary,
        "stats": stats,
        "containers": containers,
        "points": points,
        "notes": notes,
        "origin_us": origin_us,
        "logs": entries[:LOG_LINES],
        "logs_total": len(entries),
        "command": command,
        "warnings": list(run.warnings or []),
        "energy_source": ", ".join(sorted({p["energy_source"] for p in summary["phases"]})) or "none",
        "data": {
            "phases": phases,
            "notes": [{"t_us": n.t_us, "source": n.source, "text": n.text} for n in notes],
            "series": json_safe(series),
            "origin_us": origin_us,
        },
    }
    return env.get_template("report.html").render(context)
