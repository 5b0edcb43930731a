"""A real uvicorn server on a free loopback port, for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wattwise.web.background import BackgroundServer


@pytest.fixture
def serve() -> Iterator:
    servers: list[BackgroundServer] = []

    def start(app) -> BackgroundServer:
        server = BackgroundServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)
