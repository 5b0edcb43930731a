"""`wattwise monitor-proxy`: a PromQL access guard in front of Prometheus.

Point Grafana's Prometheus data source (with ``send_user_header = true`` in Grafana's ``[dataproxy]``
section) or any client at the guard instead of Prometheus. For each request it identifies the user
(:mod:`wattwise.monitor.access`) and then:

* ``/api/v1/query`` and ``/api/v1/query_range`` (GET or POST): admins pass; for others every series
  selector of ``query`` must be owned (:func:`wattwise.monitor.promql.check_access`);
* ``/api/v1/series``, ``/api/v1/labels``, ``/api/v1/label/<name>/values``: every ``match[]`` must be
  owned, and non-admins must give at least one (otherwise label values would list everyone's);
* ``/api/v1/status/buildinfo`` and ``/api/v1/metadata`` (metric names and help, no series data): pass;
* anything else: admins only.

With several Prometheus servers (``--prometheus`` repeated, ``URL#retention=15d``), each request the guard
lets through goes to one that holds its time range, replicas in turn (:mod:`wattwise.monitor.routing`).

Refusals answer like Prometheus does (``{"status": "error", "errorType": ..., "error": ...}``): 401
without a user, 403 for a selector the user may not read, 400 for a query the guard cannot read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from wattwise.monitor.access import AccessConfig, Identity
from wattwise.monitor.models import MonitorUnit
from wattwise.monitor.promql import AccessDenied, PromQLError, check_access
from wattwise.monitor.routing import Backend, Router
from wattwise.store import Store

FORM = "application/x-www-form-urlencoded"
QUERY_PATHS = ("/api/v1/query", "/api/v1/query_range")
MATCH_PATHS = ("/api/v1/series", "/api/v1/labels")
OPEN_PATHS = ("/api/v1/status/buildinfo", "/api/v1/metadata")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
               "content-encoding", "host", "authorization", "x-grafana-user", "cookie"}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


def create_proxy(prometheus_url: str | Sequence[str], access: AccessConfig, store: Store | None = None,
                 transport: Any = None) -> FastAPI:
    """`prometheus_url`: one URL, or several (``URL#retention=15d``) routed by :mod:`wattwise.monitor.routing`."""
    import httpx

    from wattwise.monitor import models  # noqa: F401 - register the tables

    specs = [prometheus_url] if isinstance(prometheus_url, str) else list(prometheus_url)
    router = Router([Backend.parse(spec) for spec in specs])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one client per backend and event loop: made when the server starts, closed when it stops
        app.state.clients = {b.url: httpx.AsyncClient(base_url=b.url, timeout=120.0, transport=transport)
                             for b in router.backends}
        yield
        for client in app.state.clients.values():
            await client.aclose()

    app = FastAPI(title="wattwise PromQL guard", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    def unit_projects(user: str) -> set[str]:
        if store is None:
            return set()
        with store.session() as session:
            return set(session.scalars(select(MonitorUnit.project).where(
                MonitorUnit.user == user, MonitorUnit.project != "").distinct()))

    def units_visible_for(who: Identity):
        def visible(keys: list[tuple[str, str, str]]) -> bool:
            """Every (hostname, manager, unit) is a unit in the database, and it is the user's or their
            project's."""
            if store is None:
                return False
            with store.session() as session:
                for hostname, manager, unit_id in set(keys):
                    # every cluster's unit with this key must be theirs (the same key can exist in two clusters)
                    rows = session.execute(select(MonitorUnit.user, MonitorUnit.project).where(
                        MonitorUnit.hostname == hostname, MonitorUnit.manager == manager,
                        MonitorUnit.unit_id == unit_id)).all()
                    if not rows or not all(row[0] == who.user or (row[1] and row[1] in who.projects)
                                           for row in rows):
                        return False
            return True

        return visible

    def backend(request: Request, params: list[tuple[str, str]]) -> tuple[str, httpx.AsyncClient]:
        chosen = router.choose(request.url.path, params)
        return chosen.url, request.app.state.clients[chosen.url]

    async def forward(request: Request, body: bytes) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        params = list(request.query_params.multi_items())
        if body and request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM:
            params += parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
        try:
            base, client = backend(request, params)
        except PromQLError as exc:
            return _error(400, "bad_data", str(exc))
        try:
            upstream = await client.request(request.method, request.url.path, params=request.query_params,
                                            content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _error(502, "unavailable", f"Prometheus at {base} is not reachable: {exc}")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=out_headers)

    async def forward_checked(request: Request, params: list[tuple[str, str]]) -> Response:
        """Forward exactly the parameters the guard checked, as a GET: never the original body or URL, so that
        what Prometheus evaluates cannot differ from what was checked (e.g. a body under an unusual
        Content-Type that the guard did not read but Prometheus would)."""
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_HEADERS and k.lower() not in ("content-type", "content-length")}
        try:
            base, client = backend(request, params)
        except PromQLError as exc:
            return _error(400, "bad_data", str(exc))
        try:
            upstream = await client.request("GET", request.url.path, params=httpx.QueryParams(tuple(params)),
                                            headers=headers)
        except httpx.HTTPError as exc:
            return _error(502, "unavailable", f"Prometheus at {base} is not reachable: {exc}")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=out_headers)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def guard(path: str, request: Request) -> Response:
        who = access.identify(request.headers, request.client.host if request.client else None, unit_projects)
        if who is None:
            return _error(401, "unauthorized",
                          "no user: send Authorization: Bearer <token> or come through Grafana/the front proxy")
        body = await request.body()
        route = "/" + path
        if who.admin or route in OPEN_PATHS:
            return await forward(request, body)
        params: list[tuple[str, str]] = list(request.query_params.multi_items())
        if request.method == "POST" and body:
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != FORM:
                return _error(400, "bad_data", "POST bodies must be application/x-www-form-urlencoded")
            params += parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
        visible = units_visible_for(who)
        try:
            if route in QUERY_PATHS:
                queries = [v for k, v in params if k == "query"]
                if not queries:
                    return _error(400, "bad_data", "missing parameter 'query'")
                for query in queries:
                    check_access(query, who.user, who.projects, visible)
            elif route in MATCH_PATHS or (route.startswith("/api/v1/label/") and route.endswith("/values")):
                matches = [v for k, v in params if k == "match[]"]
                if not matches:
                    return _error(403, "forbidden", f"{who.user} must give match[] selectors of their own units "
                                                    f"(e.g. match[]={{user=\"{who.user}\"}})")
                for match in matches:
                    check_access(match, who.user, who.projects, visible)
            else:
                return _error(403, "forbidden", f"{route} is for administrators only")
        except AccessDenied as exc:
            return _error(403, "forbidden", str(exc))
        except PromQLError as exc:
            return _error(400, "bad_data", f"the guard cannot read this query: {exc}")
        return await forward_checked(request, params)

    return app
