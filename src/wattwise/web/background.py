"""Serve an ASGI app from a thread on a free loopback port (tests, benchmarks, embedding)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from wattwise.web.serving import proxy_settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """`with BackgroundServer(app) as server: httpx.get(server.url + "/api")` — uvicorn in a daemon thread,
    with the same proxy trust as `wattwise serve` (forwarded headers only from `trusted_proxies`)."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        start_timeout_s: float = 30.0,
        *,
        trusted_proxies: Sequence[str] = (),
        log_level: str = "warning",
    ) -> None:
        import uvicorn

        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.start_timeout_s = start_timeout_s
        config = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, **proxy_settings(trusted_proxies))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="wattwise-uvicorn")

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
