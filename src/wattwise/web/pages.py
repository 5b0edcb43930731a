"""Dashboard pages: runs list, run page (phases, charts, containers, statistics, notes, logs), compare.

Charts are drawn in the browser with Plotly; plotly.min.js is served from the installed `plotly` Python
package (no CDN: the machines are offline), the rest from `wattwise/web/static`.
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context

from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.store.models import RunStatus
from wattwise.units import format_duration, format_si
from wattwise.web.deps import require_read

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
LOG_LINES = 2000


def plotly_js_path() -> Path:
    """plotly.min.js inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise WattwiseError(f"plotly.min.js not found at {path}: reinstall the plotly package")
    return path


def fmt_num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


_SMALL_PREFIXES = ((1e-9, "n"), (1e-12, "p"))


def fmt_si(value: float | None, unit: str, digits: int = 3) -> str:
    """`format_si` that stays in one unit family below µ (ng, pg): no `9.57e-07 g` next to `µg`."""
    if value is not None and math.isfinite(value) and 0 < abs(value) < 1e-6:
        for factor, prefix in _SMALL_PREFIXES:
            if abs(value) >= factor:
                return f"{value / factor:.{digits}g} {prefix}{unit}"
        return f"{value / 1e-12:.{digits}g} p{unit}"
    return format_si(value, unit, digits)


def approx(p: dict[str, Any]) -> str:
    return "≈" if p.get("estimated") and p.get("energy_j") is not None else ""


_WARNING_KINDS = (
    ("too few samples", re.compile(r"only \d+ sample")),
    ("slow sampling", re.compile(r"was sampled every")),
    ("provider", re.compile(r"^provider ")),
)


def warning_groups(run_warnings: list[str], stats: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The run's warnings and the phases' sampling warnings, grouped by kind (for one collapsed block)."""
    groups: dict[str, list[str]] = {}
    for text in [*run_warnings, *(w for p in stats or [] for w in p.get("warnings", []))]:
        title = next((name for name, pattern in _WARNING_KINDS if pattern.search(text)), "run")
        if text not in groups.setdefault(title, []):
            groups[title].append(text)
    order = ["run", "provider", "slow sampling", "too few samples"]
    return [{"title": t, "count": len(groups[t]), "items": groups[t]} for t in order if groups.get(t)]


def template_globals() -> dict[str, Any]:
    """Formatting helpers shared by the dashboard's templates and the report."""
    return {
        "figure_label": lambda name: FIGURE_LABELS.get(name, name),
        "fmt_si": fmt_si,
        "fmt_duration": format_duration,
        "fmt_num": fmt_num,
        "fmt_pct": fmt_pct,
        "approx": approx,
        "warning_groups": warning_groups,
        "url_for": _url_path_for,  # every template environment built on these links with paths
    }


@pass_context
def _url_path_for(context: dict[str, Any], name: str, /, **path_params: Any) -> str:
    """Templates' `url_for`: a path (under the app's root path), never an absolute URL, so the Host header a
    client sends never ends up in the page (`<script src="http://evil.example/…">`)."""
    request: Request = context["request"]
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **path_params))


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(template_globals())
    return templates


def _ids(*values: str | None) -> list[int]:
    out: list[int] = []
    for value in values:
        for part in re.split(r"[\s,;]+", value or ""):
            if part:
                if not part.isdigit() or len(part) > 9:
                    raise ValueError(f"not a run id: {part!r}")
                out.append(int(part))
    return out


def mount_docs(app: FastAPI) -> None:
    """/docs: Swagger UI with its own files (Swagger UI 5 from the swagger-ui-py package, which renders
    OpenAPI 3.1) served from /swagger-ui, so the API documentation works on machines without internet."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html

    assets = Path(str(files("swagger_ui") / "static"))
    app.mount("/swagger-ui", StaticFiles(directory=str(assets)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/swagger-ui/favicon-32x32.png",
        )


def mount(app: FastAPI) -> None:
    templates = _templates()

    from wattwise.web import api

    def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        context = {"has_cluster": getattr(request.app.state, "has_cluster", False), **context}
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def store_of(request: Request) -> Store:
        store: Store = request.app.state.store
        return store

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(
            plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    reader = [Depends(require_read)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, name="page_runs", dependencies=reader)
    def page_runs(
        request: Request, name: str | None = None, status: str | None = None, offset: int = 0, limit: int = 50
    ) -> HTMLResponse:
        store = store_of(request)
        status = status if status in RunStatus.ALL else None
        offset, limit = max(0, min(offset, 2**31 - 1)), max(1, min(limit, 500))
        runs = store.list_runs(limit=limit, offset=offset, status=status, name=name or None)
        total = store.count_runs(status=status, name=name or None)

        def page_query(new_offset: int) -> str:
            query: dict[str, str | int] = {"offset": max(0, new_offset), "limit": limit}
            if name:
                query["name"] = name
            if status:
                query["status"] = status
            return urlencode(query)

        items = [type("RunRow", (), item)() for item in api.list_items(store, runs)]
        return render(
            request,
            "runs.html",
            {
                "runs": items,
                "total": total,
                "name": name,
                "status": status,
                "statuses": RunStatus.ALL,
                "offset": offset,
                "limit": limit,
                "page_query": page_query,
            },
        )

    @app.get(
        "/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False, name="page_run", dependencies=reader
    )
    def page_run(request: Request, run_id: int) -> HTMLResponse:
        from wattwise.analysis.containers import run_containers
        from wattwise.analysis.sci import run_sci
        from wattwise.analysis.stats import run_stats
        from wattwise.web.results import LazySeries, cached

        store = store_of(request)
        if not 1 <= run_id <= 2**31 - 1:
            raise HTTPException(404, f"no run with id {run_id}")
        run = api.run_or_404(store, run_id)
        lazy = LazySeries(store, run_id)
        summary = api.run_summary(store, run)
        stats = cached(store, run, "stats", {}, lambda: [p.to_dict() for p in run_stats(store, run_id, series=lazy())])
        containers = cached(
            store,
            run,
            "containers",
            {"baseline_power_w": None},
            lambda: [p.to_dict() for p in run_containers(store, run_id, series=lazy())],
        )
        sci = None
        if any(p["name"] == "[RUNTIME]" for p in summary["phases"]):
            try:
                sci = cached(
                    store,
                    run,
                    "sci",
                    {"phase": "[RUNTIME]", "te": None, "el": None, "rs": None, "r": None, "net": None},
                    lambda: run_sci(store, run_id, series=lazy()).to_dict(),
                )
            except WattwiseError:
                sci = None
        phases: list[dict[str, Any]] = [
            {"name": p.name, "start_us": p.start_us, "end_us": p.end_us, "parent": p.parent, "hidden": p.hidden}
            for p in store.phases(run_id)
        ]
        notes = store.notes(run_id)
        entries = store.logs(run_id)
        metrics_t0 = [p["start_us"] for p in phases]
        origin_us = min(metrics_t0) if metrics_t0 else (notes[0].t_us if notes else 0)
        command = run.command
        if isinstance(command, list):
            command = shlex.join(str(c) for c in command)
        runtime = next((c for c in containers if c["phase"] == "[RUNTIME]" and c["containers"]), None)
        runtime = runtime or next((c for c in containers if c["containers"]), None)
        containers_chart = None
        if runtime:
            containers_chart = {
                "phase": runtime["phase"],
                "names": [c["name"] for c in runtime["containers"]],
                "attributed": [c["attributed_energy_j"] for c in runtime["containers"]],
                "above_baseline": [c["above_baseline_energy_j"] for c in runtime["containers"]],
            }
        sources = sorted({p["energy_source"] for p in summary["phases"]})
        return render(
            request,
            "run.html",
            {
                "run": run,
                "summary": summary,
                "stats": stats,
                "containers": containers,
                "sci": sci,
                "phases": phases,
                "notes": notes,
                "origin_us": origin_us,
                "notes_json": [{"t_us": n.t_us, "source": n.source, "text": n.text} for n in notes],
                "logs": entries[:LOG_LINES],
                "logs_total": len(entries),
                "command": command,
                "warnings": list(run.warnings or []),
                "containers_chart": containers_chart,
                "energy_source": ", ".join(sources) or "none",
            },
        )

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False, name="page_compare", dependencies=reader)
    def page_compare(request: Request) -> HTMLResponse:
        from dataclasses import asdict

        from wattwise.analysis.compare import compare_summaries
        from wattwise.web.results import json_safe

        store = store_of(request)
        params = request.query_params
        context: dict[str, Any] = {"result": None, "error": None, "alpha": params.get("alpha", "0.05")}
        try:
            a_ids = _ids(params.get("a"), *params.getlist("runs"))
            b_ids = _ids(params.get("b"), *params.getlist("vs"))
            alpha = float(params.get("alpha") or 0.05)
            if not 0 < alpha < 1:
                raise ValueError("alpha must be between 0 and 1")
        except ValueError as exc:
            a_ids, b_ids, alpha = [], [], 0.05
            context["error"] = str(exc)
        context["a_text"] = ", ".join(map(str, a_ids))
        context["b_text"] = ", ".join(map(str, b_ids))
        if a_ids:
            try:
                a = [api.run_summary(store, api.run_or_404(store, r)) for r in a_ids]
                b = [api.run_summary(store, api.run_or_404(store, r)) for r in b_ids] if b_ids else None
            except HTTPException as exc:
                context["error"] = exc.detail
            else:
                rows = compare_summaries(a, b, alpha=alpha)
                context["result"] = json_safe(
                    {
                        "runs": a_ids,
                        "vs": b_ids,
                        "alpha": alpha,
                        "names": sorted({s["name"] for s in a + (b or [])}),
                        "estimated": any(r.estimated for r in rows),
                        "rows": [asdict(r) for r in rows],
                    }
                )
                context["per_run"] = _per_run(a, b)
                context["overlay"] = json_safe(power_overlay(store, a, b))
        if context["result"] is None:
            context["recent"] = [type("RunRow", (), i)() for i in api.list_items(store, store.list_runs(limit=100))]
        return render(request, "compare.html", context)


FIGURE_LABELS = {
    "energy_j": "machine energy (J)",
    "duration_s": "duration (s)",
    "mean_power_w": "mean power (W)",
    "peak_power_w": "peak power (W)",
    "carbon_g": "carbon (g)",
    "unit_energy_j": "unit energy (J)",
    "above_baseline_energy_j": "above baseline (J)",
}


def machine_power_series(store: Any, run_id: int, points: int = 400) -> tuple[list[int], list[float | None], bool]:
    """The machine's power over time (W): IPMI or the estimate where present, else the sum of the measured
    components (RAPL package + DRAM, GPU) on the first component's time grid. Empty without any."""
    import numpy as np

    from wattwise.web.series import chart_series, describe_metric, run_metrics, run_version

    run = store.get_run(run_id)
    version = run_version(run)
    power = [
        (m, describe_metric(m.name, m.detail, m.unit, m.kind)) for m in run_metrics(store, run_id)
    ]
    power = [(m, d) for m, d in power if d["group"] == "power"]
    machine = [m for m, d in power if not d["stack"]]
    chosen = machine[:1] or [m for m, _ in power]
    if not chosen:
        return [], [], False
    series = [chart_series(store, m, version, points=points) for m in chosen]
    t = np.asarray(series[0]["t_us"], dtype=float)
    total = np.zeros(len(t))
    for s in series:
        values = np.asarray([np.nan if v is None else v for v in s["mean"]], dtype=float)
        if len(s["t_us"]) and len(t):
            total += np.interp(t, np.asarray(s["t_us"], dtype=float), np.nan_to_num(values))
    estimated = any(s["estimated"] for s in series)
    return [int(x) for x in t], [float(v) for v in total], estimated


def power_overlay(
    store: Any, a: list[dict[str, Any]], b: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Each run's machine power per phase, in seconds since the phase's start, for one overlay chart."""
    phases: list[str] = []
    traces: list[dict[str, Any]] = []
    estimated = False
    for group, summaries in (("A", a), ("B", b or [])):
        for summary in summaries:
            t_us, power_w, approx = machine_power_series(store, summary["run_id"])
            estimated = estimated or approx or bool(summary.get("estimated"))
            for p in summary["phases"]:
                if p.get("hidden"):
                    continue
                if p["name"] not in phases:
                    phases.append(p["name"])
                inside = [(t, v) for t, v in zip(t_us, power_w, strict=True) if p["start_us"] <= t <= p["end_us"]]
                traces.append(
                    {
                        "phase": p["name"],
                        "group": group,
                        "name": f"run {summary['run_id']} ({group})",
                        "t_s": [(t - p["start_us"]) / 1e6 for t, _ in inside],
                        "power_w": [v for _, v in inside],
                    }
                )
    return {"phases": phases, "traces": traces, "estimated": estimated}


def _per_run(a: list[dict[str, Any]], b: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per-run values of [RUNTIME] (or the first phase) for the box plots."""
    charts = []
    for key, title in (("energy_j", "energy (J)"), ("duration_s", "duration (s)"), ("carbon_g", "carbon (g)")):
        groups = []
        for label, summaries in (("A", a), ("B", b or [])):
            values, labels = [], []
            for s in summaries:
                phase = next(
                    (p for p in s["phases"] if p["name"] == "[RUNTIME]"), s["phases"][0] if s["phases"] else None
                )
                if phase and phase.get(key) is not None:
                    values.append(phase[key])
                    labels.append(f"run {s['run_id']}")
            if summaries:
                groups.append({"name": label, "values": values, "labels": labels})
        charts.append({"title": f"[RUNTIME] {title}", "groups": groups})
    return charts
