"""A self-contained HTML report of one run: phase table, warnings (grouped, collapsed), the measurements
over time with phase bands and notes, SCI (when the scenario has an SCI block), per-container energy,
per-metric statistics, notes and logs.

The dashboard's chart code (web/static/charts.js) is inlined and draws plain SVG — no chart library, so a
report of a one-minute run with ten metrics stays well under 1 MB — and so are the downsampled
measurements: the file opens without a network or a server.
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
    from wattwise.analysis.sci import run_sci
    from wattwise.analysis.stats import run_stats
    from wattwise.web import pages
    from wattwise.web.results import LazySeries, json_safe
    from wattwise.web.series import chart_series, run_metrics, run_version

    run = store.get_run(run_id)
    lazy = LazySeries(store, run_id)
    summary = json_safe(summarize_run(store, run_id, series=lazy()))
    stats = json_safe([p.to_dict() for p in run_stats(store, run_id, series=lazy())])
    containers = json_safe([p.to_dict() for p in run_containers(store, run_id, series=lazy())])
    sci = None
    if (run.settings or {}).get("sci") and any(p.name == "[RUNTIME]" for p in store.phases(run_id)):
        sci = json_safe(run_sci(store, run_id, series=lazy()).to_dict())
    version = run_version(run)
    series = [chart_series(store, m, version, points=points) for m in run_metrics(store, run_id)]
    phases: list[dict[str, Any]] = [
        {"name": p.name, "start_us": p.start_us, "end_us": p.end_us, "parent": p.parent, "hidden": p.hidden}
        for p in store.phases(run_id)
    ]
    notes = store.notes(run_id)
    entries = store.logs(run_id)
    starts = [int(p["start_us"]) for p in phases]
    origin_us = min(starts) if starts else (series[0]["t_us"][0] if series and series[0]["t_us"] else 0)
    command = run.command
    if isinstance(command, list):
        command = shlex.join(str(c) for c in command)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(pages.TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(pages.template_globals())
    context: dict[str, Any] = {
        "run": run,
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "css": (pages.STATIC / "style.css").read_text(),
        "charts_js": _inline_js((pages.STATIC / "charts.js").read_text()),
        "summary": summary,
        "stats": stats,
        "containers": containers,
        "sci": sci,
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
