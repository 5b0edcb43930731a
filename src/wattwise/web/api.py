"""JSON API: runs, phase statistics, measurements (downsampled), notes, logs, containers, SCI and
comparisons (README badges: `web/badges.py`). Reading is open (unless the app requires a token); writing needs a
"write" token (`Authorization: Bearer ...`, see `wattwise tokens create`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from wattwise.errors import WattwiseError
from wattwise.store import Store
from wattwise.store.models import Run
from wattwise.web import series as charts
from wattwise.web.deps import StoreDep, require_read, require_write
from wattwise.web.results import LazySeries, cached


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The request cannot be answered as asked"},
    401: {"model": ErrorOut, "description": "No valid token (write routes; all routes on a private server)"},
    404: {"model": ErrorOut, "description": "No such run (or metric)"},
}
WRITEERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "The token may only read, or the server is read-only"}
}

router = APIRouter(dependencies=[Depends(require_read)], responses=ERRORS)

MAX_ID = 2**31 - 1
MAX_T_US = 4_102_444_800_000_000  # 2100-01-01 in µs; below 2**53, exact in JSON numbers
RunPath = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]


# --- response models ------------------------------------------------------------------------------
class RunItem(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    machine: str
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    estimated: bool
    runtime_energy_j: float | None = Field(None, description="Energy of the [RUNTIME] phase, J")
    runtime_duration_s: float | None = None
    runtime_carbon_g: float | None = None


class RunList(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[RunItem]


class MetricInfo(BaseModel):
    id: int
    name: str
    detail: str
    unit: str
    kind: str
    provider: str
    estimated: bool
    description: str


class PhaseInfo(BaseModel):
    name: str
    start_us: int
    end_us: int
    parent: str | None
    hidden: bool


class RunDetail(RunItem):
    command: Any = None
    exit_code: int | None = None
    error: str | None = None
    settings: dict[str, Any]
    warnings: list[Any]
    scenario: str | None = None
    phases: list[PhaseInfo]
    metrics: list[MetricInfo]
    summary: dict[str, Any] = Field(description="`wattwise measure --json` summary: per-phase figures")


class NoteOut(BaseModel):
    id: int
    t_us: int
    source: str
    text: str


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=10000)
    source: str = Field("api", max_length=200)
    t_us: int | None = Field(None, ge=0, le=MAX_T_US, description="Time (µs since the epoch); default now")


class LogOut(BaseModel):
    id: int
    source: str
    stream: str
    t_us: int | None
    text: str


class LogList(BaseModel):
    total: int
    items: list[LogOut]


class ChartSeries(BaseModel):
    metric_id: int
    name: str
    detail: str
    label: str
    title: str = Field("", description="human chart title, e.g. 'CPU package 0 (RAPL) power'")
    unit: str = Field(description="unit of the values as shown (counters as rates: W for J, CPU cores for s, B/s)")
    group: str | None = Field(None, description="'power': per-component power, drawn on one stacked chart")
    stack: bool = Field(False, description="a component of the stacked power chart (else the machine's own line)")
    all_zero: bool = Field(False, description="every value is zero: listed, not drawn")
    kind: str
    estimated: bool
    points: int
    samples: int = Field(description="stored samples the points stand for")
    downsampled: bool
    t_us: list[int]
    mean: list[float | None]
    min: list[float | None] | None
    max: list[float | None] | None


class Measurements(BaseModel):
    run_id: int
    start_us: int | None
    end_us: int | None
    series: list[ChartSeries]


class PhaseStatsOut(BaseModel):
    run_id: int
    phases: list[dict[str, Any]]


class ContainersOut(BaseModel):
    run_id: int
    phases: list[dict[str, Any]]


# --- helpers --------------------------------------------------------------------------------------
def run_or_404(store: Store, run_id: int) -> Run:
    """The run, or an HTTP 404 naming the id (also for ids out of range)."""
    if not 1 <= run_id <= MAX_ID:  # ids from lists (compare) are not bounded by their schema
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run with id {run_id}")
    try:
        return store.get_run(run_id)
    except WattwiseError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run with id {run_id}") from None


def _runtime(results: Any) -> dict[str, Any]:
    if not isinstance(results, dict):
        return {}
    for phase in results.get("phases") or []:
        if isinstance(phase, dict) and phase.get("name") == "[RUNTIME]":
            return phase
    return {}


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC. RFC 3339 needs the offset."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _item(run: Run, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    runtime = _runtime(summary if summary is not None else run.results)
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "machine": run.machine,
        "created_at": _aware(run.created_at),
        "started_at": _aware(run.started_at),
        "ended_at": _aware(run.ended_at),
        "estimated": run.estimated,
        "runtime_energy_j": runtime.get("energy_j"),
        "runtime_duration_s": runtime.get("duration_s"),
        "runtime_carbon_g": runtime.get("carbon_g"),
    }


def _bad(exc: WattwiseError) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


def run_summary(store: Store, run: Run) -> dict[str, Any]:
    from wattwise.analysis.phases import summarize_run

    lazy = LazySeries(store, run.id)
    return cached(store, run, "summary", {}, lambda: summarize_run(store, run.id, series=lazy()))


# --- routes ---------------------------------------------------------------------------------------
@router.get("", tags=["meta"], summary="Index of the API")
def index(request: Request) -> dict[str, Any]:
    paths = request.app.openapi().get("paths", {})
    cluster = [
        {"path": path, "methods": sorted(m.upper() for m in item)}
        for path, item in paths.items()
        if path.startswith("/api/cluster")
    ]
    return {
        "docs": "/docs",
        "openapi": "/openapi.json",
        "runs": "/api/runs",
        "compare": "/api/compare?runs=1&runs=2&vs=3&vs=4",
        "cluster": cluster,
        "submit": "POST /api/cluster/jobs (queues a measurement job)" if cluster else None,
        "write_access": "Authorization: Bearer <token from `wattwise tokens create NAME`>",
    }


@router.get("/health", tags=["meta"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/runs", response_model=RunList, tags=["runs"], summary="List runs, newest first")
def list_runs(
    store: StoreDep,
    status_: Annotated[Literal["running", "finished", "failed", "interrupted"] | None, Query(alias="status")] = None,
    name: Annotated[str | None, Query(max_length=200, description="name contains this text")] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    runs = store.list_runs(limit=limit, offset=offset, status=status_, name=name, kind=kind)
    total = store.count_runs(status=status_, name=name, kind=kind)
    return {"total": total, "limit": limit, "offset": offset, "items": list_items(store, runs)}


def list_items(store: Store, runs: list[Run]) -> list[dict[str, Any]]:
    """Runs for a listing; figures from the run's stored results, else from a cached summary."""
    from sqlalchemy import select

    from wattwise.web.models import ResultCache, ensure_cache_tables

    missing = [r.id for r in runs if not r.results]
    summaries: dict[int, Any] = {}
    if missing:
        ensure_cache_tables(store)
        query = select(ResultCache.run_id, ResultCache.payload).where(
            ResultCache.run_id.in_(missing), ResultCache.key == "summary"
        )
        with store.session() as session:
            summaries = {row[0]: row[1] for row in session.execute(query)}
    return [_item(r, summaries.get(r.id)) for r in runs]


@router.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"], summary="A run with its summary")
def get_run(store: StoreDep, run_id: RunPath) -> dict[str, Any]:
    run = run_or_404(store, run_id)
    summary = run_summary(store, run)
    return {
        **_item(run, summary),
        "command": run.command,
        "exit_code": run.exit_code,
        "error": run.error,
        "settings": run.settings or {},
        "warnings": list(run.warnings or []),
        "scenario": run.scenario,
        "phases": [
            {
                "name": p.name,
                "start_us": p.start_us,
                "end_us": p.end_us,
                "parent": p.parent,
                "hidden": p.hidden,
            }
            for p in store.phases(run_id)
        ],
        "metrics": [
            {
                "id": m.id,
                "name": m.name,
                "detail": m.detail,
                "unit": m.unit,
                "kind": m.kind,
                "provider": m.provider,
                "estimated": m.estimated,
                "description": m.description,
            }
            for m in charts.run_metrics(store, run_id)
        ],
        "summary": summary,
    }


@router.get(
    "/runs/{run_id}/phases",
    response_model=PhaseStatsOut,
    tags=["runs"],
    summary="Per phase and per metric: total, time-weighted mean, max, min, samples, warnings",
)
def phase_stats(store: StoreDep, run_id: RunPath) -> dict[str, Any]:
    from wattwise.analysis.stats import run_stats

    run = run_or_404(store, run_id)
    lazy = LazySeries(store, run_id)
    phases = cached(store, run, "stats", {}, lambda: [p.to_dict() for p in run_stats(store, run_id, series=lazy())])
    return {"run_id": run_id, "phases": phases}


@router.get(
    "/runs/{run_id}/measurements",
    response_model=Measurements,
    tags=["runs"],
    summary="Time series of the run's metrics, downsampled on the server to at most `points` per metric",
)
def measurements(
    store: StoreDep,
    run_id: RunPath,
    metric_id: Annotated[list[int] | None, Query(description="only these metrics (repeat)")] = None,
    start_us: Annotated[int | None, Query(ge=0, le=MAX_T_US)] = None,
    end_us: Annotated[int | None, Query(ge=0, le=MAX_T_US)] = None,
    points: Annotated[int, Query(ge=2, le=10000)] = 1000,
) -> dict[str, Any]:
    run = run_or_404(store, run_id)
    if start_us is not None and end_us is not None and end_us < start_us:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "end_us is before start_us")
    version = charts.run_version(run)
    metrics = charts.run_metrics(store, run_id)
    if metric_id:
        wanted = set(metric_id)
        unknown = wanted - {m.id for m in metrics}
        if unknown:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no metric(s) {sorted(unknown)}")
        metrics = [m for m in metrics if m.id in wanted]
    out = [charts.chart_series(store, m, version, start_us=start_us, end_us=end_us, points=points) for m in metrics]
    return {"run_id": run_id, "start_us": start_us, "end_us": end_us, "series": out}


@router.get("/runs/{run_id}/notes", response_model=list[NoteOut], tags=["notes"])
def list_notes(store: StoreDep, run_id: RunPath) -> list[dict[str, Any]]:
    run_or_404(store, run_id)
    return [{"id": n.id, "t_us": n.t_us, "source": n.source, "text": n.text} for n in store.notes(run_id)]


@router.post(
    "/runs/{run_id}/notes",
    response_model=NoteOut,
    status_code=status.HTTP_201_CREATED,
    tags=["notes"],
    summary="Add a note to a run (needs a write token)",
    dependencies=[Depends(require_write)],
    responses=WRITEERRORS,
)
def add_note(store: StoreDep, run_id: RunPath, note: NoteIn) -> dict[str, Any]:
    import time

    run_or_404(store, run_id)
    t_us = note.t_us if note.t_us is not None else time.time_ns() // 1000
    store.add_notes(run_id, [(t_us, note.source, note.text)])
    created = [n for n in store.notes(run_id) if n.t_us == t_us and n.text == note.text][-1]
    return {"id": created.id, "t_us": created.t_us, "source": created.source, "text": created.text}


@router.delete(
    "/runs/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["runs"],
    summary="Delete a run with its samples (needs a write token)",
    dependencies=[Depends(require_write)],
    responses=WRITEERRORS,
)
def delete_run(store: StoreDep, run_id: RunPath) -> Response:
    run_or_404(store, run_id)
    store.delete_run(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/runs/{run_id}/logs", response_model=LogList, tags=["runs"])
def logs(
    store: StoreDep,
    run_id: RunPath,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    run_or_404(store, run_id)
    entries = store.logs(run_id)
    items = [
        {"id": e.id, "source": e.source, "stream": e.stream, "t_us": e.t_us, "text": e.text}
        for e in entries[offset : offset + limit]
    ]
    return {"total": len(entries), "items": items}


@router.get(
    "/runs/{run_id}/containers",
    response_model=ContainersOut,
    tags=["runs"],
    summary="Per-container energy: attributed energy (by share of the machine's CPU work) and above baseline",
)
def containers(
    store: StoreDep,
    run_id: RunPath,
    baseline_power_w: Annotated[float | None, Query(ge=0, le=1e7)] = None,
) -> dict[str, Any]:
    from wattwise.analysis.containers import run_containers

    run = run_or_404(store, run_id)
    lazy = LazySeries(store, run_id)
    phases = cached(
        store,
        run,
        "containers",
        {"baseline_power_w": baseline_power_w},
        lambda: [p.to_dict() for p in run_containers(store, run_id, baseline_power_w=baseline_power_w, series=lazy())],
    )
    return {"run_id": run_id, "phases": phases}


@router.get("/runs/{run_id}/sci", tags=["runs"], summary="Software Carbon Intensity of a phase")
def sci(
    store: StoreDep,
    run_id: RunPath,
    phase: Annotated[str, Query(max_length=200)] = "[RUNTIME]",
    te: Annotated[float | None, Query(ge=0, le=1e12, description="total embodied carbon, g")] = None,
    el: Annotated[float | None, Query(gt=0, le=1000, description="expected lifetime, years")] = None,
    rs: Annotated[float | None, Query(ge=0, le=1, description="resource share")] = None,
    r: Annotated[float | None, Query(gt=0, le=1e15, description="functional units")] = None,
    network_kwh_per_gb: Annotated[float | None, Query(ge=0, le=100)] = None,
) -> dict[str, Any]:
    from wattwise.analysis.carbon import DEFAULT_NETWORK_KWH_PER_GB
    from wattwise.analysis.sci import run_sci

    run = run_or_404(store, run_id)
    params = {"phase": phase, "te": te, "el": el, "rs": rs, "r": r, "net": network_kwh_per_gb}
    lazy = LazySeries(store, run_id)

    def compute() -> dict[str, Any]:
        return run_sci(
            store,
            run_id,
            phase=phase,
            series=lazy(),
            network_kwh_per_gb=network_kwh_per_gb if network_kwh_per_gb is not None else DEFAULT_NETWORK_KWH_PER_GB,
            te_g=te,
            el_years=el,
            rs=rs,
            r=r,
        ).to_dict()

    try:
        return cached(store, run, "sci", params, compute)
    except WattwiseError as exc:
        raise _bad(exc) from None


@router.get("/compare", tags=["compare"], summary="Statistics over runs; Welch's t-test against `vs` runs")
def compare(
    store: StoreDep,
    runs: Annotated[list[int], Query(description="run ids of the first group (repeat)")],
    vs: Annotated[list[int] | None, Query(description="run ids of the second group (repeat)")] = None,
    metric: Annotated[
        list[Literal["energy_j", "duration_s", "mean_power_w", "peak_power_w", "carbon_g", "unit_energy_j"]] | None,
        Query(),
    ] = None,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> dict[str, Any]:
    from wattwise.analysis.compare import DEFAULT_METRICS, compare_summaries

    if len(runs) + len(vs or []) > 200:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "at most 200 runs per comparison")
    a = [run_summary(store, run_or_404(store, r)) for r in runs]
    b = [run_summary(store, run_or_404(store, r)) for r in vs] if vs else None
    from dataclasses import asdict

    rows = compare_summaries(a, b, metrics=tuple(metric) if metric else DEFAULT_METRICS, alpha=alpha)
    from wattwise.web.results import json_safe

    return json_safe(
        {
            "runs": runs,
            "vs": vs or [],
            "names": sorted({s["name"] for s in a + (b or [])}),
            "alpha": alpha,
            "rows": [asdict(r) for r in rows],
        }
    )
