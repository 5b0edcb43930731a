"""The FastAPI application: JSON API under /api, dashboard pages at /, OpenAPI at /docs."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI

from wattwise import __version__
from wattwise.store import Store

log = logging.getLogger(__name__)


def _cluster_router() -> Any | None:
    try:
        module = importlib.import_module("wattwise.cluster.api")
    except ModuleNotFoundError as exc:
        if exc.name not in ("wattwise.cluster.api", "wattwise.cluster"):
            raise
        return None
    return getattr(module, "router", None)


def create_app(
    database_url: str | None = None,
    *,
    store: Store | None = None,
    read_only: bool = False,
    read_requires_token: bool = False,
) -> FastAPI:
    """Build the app on `store`, or on a Store opened at `database_url` (default: wattwise's database).

    read_only: refuse every write, whatever the token. read_requires_token: reading needs a token too
    (by default anyone who reaches the server may read; writing always needs a "write" token).
    """
    if store is None:
        from wattwise.config import resolve_database_url

        store = Store(resolve_database_url(database_url))
    app = FastAPI(
        title="wattwise",
        version=__version__,
        description="Energy and carbon of measured runs: runs, phases, measurements, comparisons.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.read_only = read_only
    app.state.read_requires_token = read_requires_token

    from wattwise.web import api, pages

    app.include_router(api.router, prefix="/api")
    cluster = _cluster_router()
    app.state.has_cluster = cluster is not None
    if cluster is not None:
        app.include_router(cluster, prefix="/api/cluster", tags=["cluster"])
    pages.mount(app)
    return app
