"""A user's monthly report: every unit they ran in a month, its energy and emissions, and what a carbon-aware
start would have saved.

``GET /api/v1/report/monthly?month=2024-05&format=csv|html|json`` (admins may add ``user=``). Per unit:
start, end, energy, the emissions wattwise stored (integrated at the live grid intensity of each interval)
and, when the API has a carbon-intensity trace (``monitor-api --carbon-trace``), the oracle's answer: with
the unit's energy spread evenly over its run (≈: only totals are stored, not its power shape), its emissions
at the trace's intensity when it started, and at the best start that delays it by at most ``wait`` hours
(every ``step`` minutes, within the trace), and the difference: the saving a carbon-aware start would have
given (≈). Units outside the trace get no oracle figures.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from wattwise.carbon.trace import CarbonTrace
from wattwise.monitor.access import Identity
from wattwise.monitor.models import MonitorUnit
from wattwise.store import Store

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ReportRow:
    cluster: str
    hostname: str
    manager: str
    unit: str
    project: str
    start: str
    end: str
    duration_h: float
    energy_kwh: float
    emissions_g: float  # as stored (live intensity of each interval)
    trace_emissions_g: float | None = None  # ≈ at the trace's intensity, started when it did
    best_start: str | None = None
    best_emissions_g: float | None = None  # ≈ started at the best time within the wait
    saving_g: float | None = None  # ≈ trace_emissions_g − best_emissions_g


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(422, f"month {month!r}: expected YYYY-MM, e.g. 2024-05") from None
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(
        month=first.month + 1)
    return first, following


def best_start(trace: CarbonTrace, start_s: float, duration_s: float, energy_kwh: float, wait_s: float,
               step_s: float) -> tuple[float, float, float] | None:
    """(emissions at the actual start, best start, emissions then) for an evenly spread run, or None when the
    run lies outside the trace."""
    end_of_trace = trace.end_s
    if start_s < trace.start_s or start_s + duration_s > end_of_trace or duration_s <= 0:
        return None

    def emissions(t: float) -> float:
        return energy_kwh * trace.mean_over(t, t + duration_s)

    actual = emissions(start_s)
    best_t, best = start_s, actual
    t = start_s + step_s
    while t <= start_s + wait_s and t + duration_s <= end_of_trace:
        value = emissions(t)
        if value < best:
            best_t, best = t, value
        t += step_s
    return actual, best_t, best


def monthly_rows(store: Store, user: str, month: str, trace: CarbonTrace | None, wait_s: float,
                 step_s: float) -> list[ReportRow]:
    first, following = month_bounds(month)
    with store.session() as session:
        units = session.scalars(select(MonitorUnit).where(
            MonitorUnit.user == user, MonitorUnit.start_at < following, MonitorUnit.end_at >= first)
            .order_by(MonitorUnit.start_at, MonitorUnit.id)).all()
    rows = []
    for u in units:
        if u.start_at is None or u.end_at is None:
            continue
        start, end = _aware(u.start_at), _aware(u.end_at)
        duration_s = max(0.0, (end - start).total_seconds())
        energy_kwh = u.energy_j / J_PER_KWH
        oracle = best_start(trace, start.timestamp(), duration_s, energy_kwh, wait_s, step_s) if trace else None
        extra: dict[str, Any] = {}
        if oracle is not None:
            actual, best_t, best = oracle
            extra = {"trace_emissions_g": actual, "best_start": datetime.fromtimestamp(best_t, UTC).isoformat(),
                     "best_emissions_g": best, "saving_g": actual - best}
        rows.append(ReportRow(u.cluster, u.hostname, u.manager, u.unit_id, u.project, start.isoformat(),
                              end.isoformat(), duration_s / 3600, energy_kwh, u.emissions_g, **extra))
    return rows


def to_csv(rows: list[ReportRow]) -> str:
    out = io.StringIO()
    fields = list(ReportRow.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return out.getvalue()


def to_html(user: str, month: str, rows: list[ReportRow], wait_h: float) -> str:
    def cell(value: Any, digits: int = 3) -> str:
        if value is None:
            return "<td>–</td>"
        if isinstance(value, float):
            return f"<td class=num>{value:.{digits}f}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    total_kwh = sum(r.energy_kwh for r in rows)
    total_g = sum(r.emissions_g for r in rows)
    savings = [r.saving_g for r in rows if r.saving_g is not None]
    head = ("<tr><th>unit</th><th>host</th><th>project</th><th>start</th><th>hours</th><th>kWh</th>"
            "<th>g CO2e (stored)</th><th>≈ g at start (trace)</th><th>≈ best start</th><th>≈ g then</th>"
            "<th>≈ saving g</th></tr>")
    body = "".join(
        "<tr>" + cell(f"{r.manager}/{r.unit}") + cell(r.hostname) + cell(r.project) + cell(r.start)
        + cell(r.duration_h, 2) + cell(r.energy_kwh) + cell(r.emissions_g, 1) + cell(r.trace_emissions_g, 1)
        + cell(r.best_start) + cell(r.best_emissions_g, 1) + cell(r.saving_g, 1) + "</tr>" for r in rows)
    saving_text = (f"≈ {sum(savings):.1f} g CO2e could have been saved by starting up to {wait_h:g} h later "
                   f"({len(savings)} of {len(rows)} units within the carbon trace)." if savings else
                   "No carbon-intensity trace covers these units: no carbon-aware estimate.")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>wattwise — {html.escape(user)} — "
            f"{html.escape(month)}</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 8px}}"
            f".num{{text-align:right}}</style></head><body><h1>{html.escape(user)}: {html.escape(month)}</h1>"
            f"<p>{len(rows)} units, {total_kwh:.3f} kWh, {total_g:.1f} g CO2e.</p><p>{saving_text}</p>"
            f"<table>{head}{body}</table></body></html>")


def report_router(store: Store, identity: Callable[..., Identity], trace: CarbonTrace | None,
                  wait_h: float = 12.0, step_min: float = 15.0,
                  today: Callable[[], date] | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/report/monthly", response_model=None)
    def monthly(who: Identity = Depends(identity), month: str | None = Query(None, description="YYYY-MM"),
                format: Literal["json", "csv", "html"] = "json", user: str | None = None) -> Any:
        target = user or who.user
        if target != who.user and not who.admin:
            raise HTTPException(403, f"{who.user} may only see their own report")
        month = month or (today() if today else datetime.now(UTC).date()).strftime("%Y-%m")
        rows = monthly_rows(store, target, month, trace, wait_h * 3600, step_min * 60)
        if format == "csv":
            return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="wattwise-{target}-{month}.csv"'})
        if format == "html":
            return HTMLResponse(to_html(target, month, rows, wait_h))
        return {"user": target, "month": month, "wait_h": wait_h, "units": [asdict(r) for r in rows]}

    return router
