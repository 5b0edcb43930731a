"""Cluster-wide views of the monitoring API (CEEMS has the same): clusters, global statistics, ownership checks.

=====================================  ==============================================================
GET /api/v1/admin/clusters             every cluster (one Prometheus each): units, users, projects,
                                       hosts, first start, last end, energy, emissions, CPU, last pull
GET /api/v1/admin/stats                totals over a window (?start=&end=, ISO dates), overall and per
                                       cluster: energy, emissions, CPU, units, users, projects
GET /api/v1/units/verify               does the caller own these units? ?unit=<id> (repeatable), with
                                       optional cluster, hostname, manager; 200 when every one is
                                       theirs (or their project's), else 403 naming the others
=====================================  ==============================================================

A unit id alone is not unique across nodes and clusters: ``verify`` looks at every unit with that id in
the given scope, and all of them must be the caller's, so a user cannot claim an id that another user's
unit also carries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from wattwise.monitor.access import Identity
from wattwise.monitor.models import MonitorSync, MonitorUnit, MonitorUnitDay
from wattwise.store import Store


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def admin_router(store: Store, identity: Callable[..., Identity], admin: Callable[..., Identity],
                 window: Callable[[date | None, date | None], tuple[date, date]]) -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/admin/clusters")
    def clusters(who: Identity = Depends(admin)) -> dict[str, Any]:
        with store.session() as session:
            rows = session.execute(select(
                MonitorUnit.cluster, func.count(MonitorUnit.id), func.count(func.distinct(MonitorUnit.user)),
                func.count(func.distinct(MonitorUnit.project)), func.count(func.distinct(MonitorUnit.hostname)),
                func.min(MonitorUnit.start_at), func.max(MonitorUnit.end_at), func.sum(MonitorUnit.energy_j),
                func.sum(MonitorUnit.emissions_g), func.sum(MonitorUnit.cpu_s),
            ).group_by(MonitorUnit.cluster).order_by(MonitorUnit.cluster)).all()
            pulls = [{"source": s.source, "pulled_until": _iso(s.pulled_until)}
                     for s in session.scalars(select(MonitorSync).order_by(MonitorSync.source))]
        return {"clusters": [
            {"cluster": r[0], "units": r[1], "users": r[2], "projects": r[3], "hosts": r[4],
             "first_start": _iso(r[5]), "last_end": _iso(r[6]), "energy_j": r[7] or 0.0,
             "emissions_g": r[8] or 0.0, "cpu_s": r[9] or 0.0} for r in rows], "pulls": pulls}

    @router.get("/api/v1/admin/stats")
    def stats(who: Identity = Depends(admin), start: date | None = None, end: date | None = None) -> dict[str, Any]:
        start, end = window(start, end)
        columns = (func.sum(MonitorUnitDay.energy_j), func.sum(MonitorUnitDay.emissions_g),
                   func.sum(MonitorUnitDay.cpu_s), func.count(func.distinct(MonitorUnit.id)),
                   func.count(func.distinct(MonitorUnit.user)), func.count(func.distinct(MonitorUnit.project)))
        joined = (select(MonitorUnit.cluster, *columns).join(MonitorUnit, MonitorUnit.id == MonitorUnitDay.unit_pk)
                  .where(MonitorUnitDay.day >= start, MonitorUnitDay.day <= end))
        with store.session() as session:
            per_cluster = session.execute(joined.group_by(MonitorUnit.cluster).order_by(MonitorUnit.cluster)).all()
            overall = session.execute(select(*columns).join(MonitorUnit, MonitorUnit.id == MonitorUnitDay.unit_pk)
                                      .where(MonitorUnitDay.day >= start, MonitorUnitDay.day <= end)).one()

        def figures(r: Any) -> dict[str, Any]:
            return {"energy_j": r[0] or 0.0, "emissions_g": r[1] or 0.0, "cpu_s": r[2] or 0.0, "units": r[3],
                    "users": r[4], "projects": r[5]}

        return {"start": start.isoformat(), "end": end.isoformat(), **figures(overall),
                "clusters": [{"cluster": r[0], **figures(r[1:])} for r in per_cluster]}

    @router.get("/api/v1/units/verify", response_model=None)
    def verify(who: Identity = Depends(identity), unit: list[str] = Query(..., min_length=1),
               cluster: str | None = None, hostname: str | None = None,
               manager: str | None = None) -> dict[str, Any] | JSONResponse:
        query = select(MonitorUnit.unit_id, MonitorUnit.user, MonitorUnit.project).where(
            MonitorUnit.unit_id.in_(sorted(set(unit))))
        for column, value in ((MonitorUnit.cluster, cluster), (MonitorUnit.hostname, hostname),
                              (MonitorUnit.manager, manager)):
            if value is not None:
                query = query.where(column == value)
        with store.session() as session:
            rows = session.execute(query).all()
        owned: dict[str, bool] = dict.fromkeys(unit, False)
        seen: set[str] = set()
        for unit_id, user, project in rows:
            mine = who.admin or user == who.user or bool(project and project in who.projects)
            owned[unit_id] = mine if unit_id not in seen else owned[unit_id] and mine
            seen.add(unit_id)
        body = {"user": who.user, "verified": all(owned.values()), "units": owned}
        if not body["verified"]:
            others = sorted(u for u, ok in owned.items() if not ok)
            return JSONResponse({**body, "detail": f"{who.user} does not own unit(s) {', '.join(others)}"},
                                status_code=403)
        return body

    return router
