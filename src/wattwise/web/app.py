"""The FastAPI application: JSON API under /api, dashboard pages at /, OpenAPI at /docs."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI

from wattwise import __version__
from wattwise.store import Store

log = logging.getLogger(__name__)


def create_app(
    database_url: str | None = None,
    *,
    store: Store | None = None,
    read_only: bool = False,
    read_requires_token: bool = False,
    warm_caches: bool = False,
) -> FastAPI:
    """Build the app on `store`, or on a Store opened at `database_url` (default: wattwise's database).

    read_only: refuse every write, whatever the token. read_requires_token: reading needs a token too
    (by default anyone who reaches the server may read; writing always needs a "write" token).
    warm_caches: compute the page data of newly finished runs in a background thread (`wattwise serve`).
    """
    if store is None:
        from wattwise.config import resolve_database_url

        store = Store(resolve_database_url(database_url))
    lifespan = None
    if warm_caches:
        from contextlib import asynccontextmanager

        from wattwise.web.warm import Warmer

        @asynccontextmanager
        async def lifespan(_app: FastAPI):
            warmer = Warmer(store)
            warmer.start()
            yield
            warmer.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="wattwise",
        version=__version__,
        description="Energy and carbon of measured runs: runs, phases, measurements, comparisons.",
        docs_url=None,  # /docs: Swagger UI from local files (pages.mount_docs), not from a CDN
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.read_only = read_only
    app.state.read_requires_token = read_requires_token

    from wattwise.web import api, badges, cluster_api, pages

    app.include_router(api.router, prefix="/api")
    app.include_router(badges.router, prefix="/api")
    app.include_router(cluster_api.router, prefix="/api/cluster", tags=["cluster"])
    from wattwise.web import timeline

    app.include_router(timeline.router)
    app.state.has_cluster = True
    pages.mount(app)
    pages.mount_docs(app)
    app.add_middleware(AllowHeaderMiddleware)
    return app


class AllowHeaderMiddleware:
    """A 405 answer lists every method of the path in `Allow` (Starlette lists only those of the first
    route that matched the path, e.g. GET for /api/runs/{id} which also has DELETE)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.patterns: list[tuple[re.Pattern[str], str]] | None = None

    def _allowed(self, scope: dict[str, Any]) -> str | None:
        if self.patterns is None:
            fastapi_app = scope["app"]
            self.patterns = []
            for path, item in fastapi_app.openapi().get("paths", {}).items():
                regex = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$"
                methods = ", ".join(sorted(m.upper() for m in item if m.upper() != "HEAD"))
                self.patterns.append((re.compile(regex), methods))
        for pattern, methods in self.patterns:
            if pattern.match(scope["path"]):
                return methods
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = self._allowed(scope)
                if allowed:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    headers.append((b"allow", allowed.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)
