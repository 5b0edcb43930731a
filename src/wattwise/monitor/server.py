"""The exporter's HTTP side: `--listen` addresses and a small threaded server for /metrics."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from wattwise.errors import ConfigError
from wattwise.monitor.exposition import CONTENT_TYPE

if TYPE_CHECKING:
    from wattwise.monitor.exporter import MonitorExporter

__all__ = ["make_server", "parse_listen"]

log = logging.getLogger(__name__)


def parse_listen(listen: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """':9010' → ('0.0.0.0', 9010); '127.0.0.1:9010'; '[::1]:9010'."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "", listen
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--listen {listen!r}: expected [HOST]:PORT, e.g. :9010 or 127.0.0.1:9010") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--listen {listen!r}: port must be 0..65535")
    return host, number


LANDING = b"""<html><head><title>wattwise exporter</title></head><body>
<h1>wattwise exporter</h1><p><a href="/metrics">metrics</a></p></body></html>
"""


def make_server(exporter: MonitorExporter, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "wattwise-exporter"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    body = exporter.scrape().encode()
                except Exception as exc:
                    log.exception("scrape failed")
                    self._send(500, f"scrape failed: {exc}\n".encode(), "text/plain; charset=utf-8")
                    return
                self._send(200, body, CONTENT_TYPE)
            elif path == "/":
                self._send(200, LANDING, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
