"""The monitoring REST API (`wattwise monitor-api`): units and usage, each user seeing only their own.

Endpoints (JSON; every one but /healthz needs an identity, see :mod:`wattwise.monitor.access`):

=====================================  ==============================================================
GET /healthz                           liveness and the last pull from Prometheus
GET /api/v1/me                         who you are: user, admin, projects
GET /api/v1/units                      your units and your projects' units (admins: all); filters
                                       user, project, manager, hostname, since, limit, offset
GET /api/v1/units/{id}                 one unit (404 if you may not see it)
GET /api/v1/usage/current              your totals this day, week or month (?period=)
GET /api/v1/usage/history              your totals per day (?start=&end=, ISO dates)
GET /api/v1/projects                   your projects with their totals this month
GET /api/v1/projects/{project}/usage   a project's totals per day (members and admins)
GET /api/v1/admin/usage                everyone's totals (?by=user|project, start, end): admins
GET /api/v1/admin/top                  the top users (?by=energy|emissions|cpu, start, end, limit)
GET /api/v1/admin/clusters, /stats     clusters and global statistics (wattwise.monitor.admin_api)
GET /api/v1/units/verify               whether the caller owns the given units
GET /api/v1/report/monthly             a month's units as JSON, CSV or HTML with carbon-aware savings
                                       (wattwise.monitor.report)
=====================================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from sqlalchemy import func, or_, select, true

from wattwise.carbon.trace import CarbonTrace
from wattwise.monitor.access import AccessConfig, Identity
from wattwise.monitor.admin_api import admin_router
from wattwise.monitor.models import MonitorProjectDay, MonitorUnit, MonitorUserDay
from wattwise.monitor.report import report_router
from wattwise.store import Store


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def unit_json(unit: MonitorUnit) -> dict[str, Any]:
    start = unit.start_at.replace(tzinfo=UTC) if unit.start_at and unit.start_at.tzinfo is None else unit.start_at
    end = unit.end_at.replace(tzinfo=UTC) if unit.end_at and unit.end_at.tzinfo is None else unit.end_at
    duration = max(0.0, (end - start).total_seconds()) if start and end else None
    return {
        "id": unit.id, "cluster": unit.cluster, "hostname": unit.hostname, "manager": unit.manager,
        "unit": unit.unit_id,
        "user": unit.user, "project": unit.project, "start": _iso(start), "end": _iso(end),
        "duration_s": duration, "energy_j": unit.energy_j, "emissions_g": unit.emissions_g, "cpu_s": unit.cpu_s,
        "mean_cpus": unit.cpu_s / duration if duration else None,
        "mean_memory_b": unit.memory_sum_b / unit.memory_samples if unit.memory_samples else None,
    }


def _day_json(row: Any) -> dict[str, Any]:
    return {"day": row.day.isoformat(), "energy_j": row.energy_j, "emissions_g": row.emissions_g,
            "cpu_s": row.cpu_s, "units": row.units}


def _totals(rows: list[Any]) -> dict[str, Any]:
    return {"energy_j": sum(r.energy_j for r in rows), "emissions_g": sum(r.emissions_g for r in rows),
            "cpu_s": sum(r.cpu_s for r in rows), "unit_days": sum(r.units for r in rows)}


def period_start(period: str, today: date) -> date:
    if period == "day":
        return today
    if period == "week":
        return today - timedelta(days=today.weekday())
    return today.replace(day=1)


def create_app(store: Store, access: AccessConfig, *, aggregator: Any = None, interval_s: float = 300.0,
               today: Callable[[], date] | None = None, carbon_trace: CarbonTrace | None = None,
               report_wait_h: float = 12.0) -> FastAPI:
    """`carbon_trace`: the intensity trace the monthly report's carbon-aware oracle uses (none: no savings)."""
    from wattwise.monitor import models  # noqa: F401 - register the tables

    today = today or (lambda: datetime.now(UTC).date())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        stop = aggregator.start(interval_s) if aggregator is not None else None
        yield
        if stop is not None:
            stop.set()

    app = FastAPI(title="wattwise monitoring API", version="1", lifespan=lifespan)

    def unit_projects(user: str) -> set[str]:
        with store.session() as session:
            rows = session.scalars(select(MonitorUnit.project).where(
                MonitorUnit.user == user, MonitorUnit.project != "").distinct())
            return set(rows)

    def identity(request: Request) -> Identity:
        found = access.identify(request.headers, request.client.host if request.client else None, unit_projects)
        if found is None:
            raise HTTPException(401, "no user: send Authorization: Bearer <token> or come through the front proxy",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    def admin(who: Identity = Depends(identity)) -> Identity:
        if not who.admin:
            raise HTTPException(403, f"{who.user} is not an administrator")
        return who

    def visible(who: Identity) -> Any:
        if who.admin:
            return true()
        condition = MonitorUnit.user == who.user
        if who.projects:
            condition = or_(condition, MonitorUnit.project.in_(sorted(who.projects)))
        return condition

    def window(start: date | None, end: date | None) -> tuple[date, date]:
        end = end or today()
        start = start or end - timedelta(days=29)
        if start > end:
            raise HTTPException(422, f"start {start} is after end {end}")
        return start, end

    # before /api/v1/units/{unit_pk}, so that /api/v1/units/verify is not taken for a unit id
    app.include_router(admin_router(store, identity, admin, window))
    app.include_router(report_router(store, identity, carbon_trace, report_wait_h, today=today))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok",
                "last_pull": getattr(aggregator, "last_summary", None),
                "last_pull_error": getattr(aggregator, "last_error", None)}

    @app.get("/api/v1/me")
    def me(who: Identity = Depends(identity)) -> dict[str, Any]:
        return {"user": who.user, "admin": who.admin, "projects": sorted(who.projects), "via": who.via}

    @app.get("/api/v1/units")
    def units(
        who: Identity = Depends(identity),
        user: str | None = None,
        project: str | None = None,
        manager: str | None = None,
        hostname: str | None = None,
        since: datetime | None = Query(None, description="units that ended at or after this time"),
        limit: int = Query(100, ge=1, le=10000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        query = select(MonitorUnit).where(visible(who))
        for column, value in ((MonitorUnit.user, user), (MonitorUnit.project, project),
                              (MonitorUnit.manager, manager), (MonitorUnit.hostname, hostname)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(MonitorUnit.end_at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        with store.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(MonitorUnit.start_at.desc(), MonitorUnit.id.desc())
                                   .limit(limit).offset(offset)).all()
            return {"total": total, "units": [unit_json(u) for u in rows]}

    @app.get("/api/v1/units/{unit_pk}")
    def unit(unit_pk: int, who: Identity = Depends(identity)) -> dict[str, Any]:
        with store.session() as session:
            row = session.scalars(select(MonitorUnit).where(MonitorUnit.id == unit_pk, visible(who))).one_or_none()
            if row is None:
                raise HTTPException(404, f"no unit {unit_pk} that you may see")
            return unit_json(row)

    def user_days(user: str, start: date, end: date) -> list[MonitorUserDay]:
        with store.session() as session:
            return list(session.scalars(select(MonitorUserDay).where(
                MonitorUserDay.user == user, MonitorUserDay.day >= start, MonitorUserDay.day <= end)
                .order_by(MonitorUserDay.day)))

    def project_days(project: str, start: date, end: date) -> list[MonitorProjectDay]:
        with store.session() as session:
            return list(session.scalars(select(MonitorProjectDay).where(
                MonitorProjectDay.project == project, MonitorProjectDay.day >= start,
                MonitorProjectDay.day <= end).order_by(MonitorProjectDay.day)))

    @app.get("/api/v1/usage/current")
    def usage_current(who: Identity = Depends(identity),
                      period: Literal["day", "week", "month"] = "month") -> dict[str, Any]:
        end = today()
        start = period_start(period, end)
        return {"user": who.user, "period": period, "start": start.isoformat(), "end": end.isoformat(),
                **_totals(user_days(who.user, start, end))}

    @app.get("/api/v1/usage/history")
    def usage_history(who: Identity = Depends(identity), start: date | None = None,
                      end: date | None = None) -> dict[str, Any]:
        start, end = window(start, end)
        rows = user_days(who.user, start, end)
        return {"user": who.user, "start": start.isoformat(), "end": end.isoformat(), **_totals(rows),
                "days": [_day_json(r) for r in rows]}

    @app.get("/api/v1/projects")
    def projects(who: Identity = Depends(identity)) -> dict[str, Any]:
        end = today()
        start = period_start("month", end)
        return {"projects": [{"project": p, **_totals(project_days(p, start, end))}
                             for p in sorted(who.projects)], "period_start": start.isoformat()}

    @app.get("/api/v1/projects/{project}/usage")
    def project_usage(project: str, who: Identity = Depends(identity), start: date | None = None,
                      end: date | None = None) -> dict[str, Any]:
        if not who.admin and project not in who.projects:
            raise HTTPException(403, f"{who.user} is not a member of project {project!r}")
        start, end = window(start, end)
        rows = project_days(project, start, end)
        return {"project": project, "start": start.isoformat(), "end": end.isoformat(), **_totals(rows),
                "days": [_day_json(r) for r in rows]}

    @app.get("/api/v1/admin/usage")
    def admin_usage(who: Identity = Depends(admin), by: Literal["user", "project"] = "user",
                    start: date | None = None, end: date | None = None) -> dict[str, Any]:
        start, end = window(start, end)
        model: type[MonitorUserDay] | type[MonitorProjectDay] = MonitorUserDay if by == "user" else MonitorProjectDay
        key = MonitorUserDay.user if by == "user" else MonitorProjectDay.project
        with store.session() as session:
            rows = session.execute(select(
                key, func.sum(model.energy_j), func.sum(model.emissions_g), func.sum(model.cpu_s),
                func.sum(model.units)).where(model.day >= start, model.day <= end).group_by(key).order_by(key)).all()
        return {"by": by, "start": start.isoformat(), "end": end.isoformat(), "rows": [
            {by: r[0], "energy_j": r[1] or 0.0, "emissions_g": r[2] or 0.0, "cpu_s": r[3] or 0.0,
             "unit_days": int(r[4] or 0)} for r in rows]}

    @app.get("/api/v1/admin/top")
    def admin_top(who: Identity = Depends(admin), by: Literal["energy", "emissions", "cpu"] = "energy",
                  start: date | None = None, end: date | None = None,
                  limit: int = Query(10, ge=1, le=1000)) -> dict[str, Any]:
        start, end = window(start, end)
        column = {"energy": MonitorUserDay.energy_j, "emissions": MonitorUserDay.emissions_g,
                  "cpu": MonitorUserDay.cpu_s}[by]
        total = func.sum(column).label("total")
        with store.session() as session:
            rows = session.execute(select(
                MonitorUserDay.user, total, func.sum(MonitorUserDay.energy_j), func.sum(MonitorUserDay.emissions_g),
                func.sum(MonitorUserDay.cpu_s)).where(MonitorUserDay.day >= start, MonitorUserDay.day <= end)
                .group_by(MonitorUserDay.user).order_by(total.desc(), MonitorUserDay.user).limit(limit)).all()
        return {"by": by, "start": start.isoformat(), "end": end.isoformat(), "top": [
            {"rank": i + 1, "user": r[0], "energy_j": r[2] or 0.0, "emissions_g": r[3] or 0.0, "cpu_s": r[4] or 0.0}
            for i, r in enumerate(rows)]}

    return app
