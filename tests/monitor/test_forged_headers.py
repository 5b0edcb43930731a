"""`wattwise monitor-api` and `wattwise monitor-proxy` as real uvicorn servers (the CLI in a subprocess), sent
forged forwarding headers from loopback: the client address comes from the socket only, so naming a trusted
proxy in X-Forwarded-For, X-Real-IP or Forwarded never makes the user header count; a trusted header without
trusted proxies refuses to start unless --insecure-trust-header."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.monitor.conftest import free_port

PROXY = "10.9.9.9"  # the front proxy's address in the access file: never this test's socket address
FORGED = [
    {"X-Forwarded-For": PROXY},
    {"X-Forwarded-For": f"{PROXY}, 127.0.0.1"},
    {"X-Real-IP": PROXY},
    {"Forwarded": f"for={PROXY}"},
    {"X-Forwarded-For": PROXY, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "grafana.example"},
]


def _access(tmp_path: Path, proxies: list[str] | None) -> Path:
    path = tmp_path / f"access-{len(proxies or [])}.yml"
    lines = ["admins: [ops]", "trusted_header: X-Grafana-User"]
    if proxies is not None:
        lines.append(f"trusted_proxies: [{', '.join(proxies)}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def _command(server: str, port: int, access: Path, db: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "wattwise", server, "--listen", f"127.0.0.1:{port}", "--access", str(access),
            "--db", str(db), "--prometheus", f"http://127.0.0.1:{free_port()}"]
    if server == "monitor-api":
        args += ["--interval", "0"]
    return [*args, *extra]


@contextmanager
def serve(server: str, access: Path, db: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(_command(server, port, access, db, *extra), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a hang guard only
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{server} exited with {process.returncode}: "
                                     f"{process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{server} did not listen within 60 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _who(server: str, url: str, headers: dict[str, str]) -> int:
    """The status of a request only an admin gets through (or any identified user, for the API's /me)."""
    if server == "monitor-api":
        return httpx.get(url + "/api/v1/admin/usage", headers=headers, timeout=30).status_code
    return httpx.get(url + "/api/v1/status/config", headers=headers, timeout=30).status_code


@pytest.mark.parametrize("server", ["monitor-api", "monitor-proxy"])
def test_forwarded_headers_never_make_a_trusted_proxy(server: str, tmp_path: Path) -> None:
    with serve(server, _access(tmp_path, [PROXY]), tmp_path / "m.db") as url:
        assert _who(server, url, {"X-Grafana-User": "ops"}) == 401  # the socket peer is not the proxy
        for forged in FORGED:
            assert _who(server, url, {**forged, "X-Grafana-User": "ops"}) == 401, forged


@pytest.mark.parametrize("server", ["monitor-api", "monitor-proxy"])
def test_the_header_counts_from_a_listed_proxy_socket(server: str, tmp_path: Path) -> None:
    with serve(server, _access(tmp_path, ["127.0.0.1"]), tmp_path / "m.db") as url:
        assert _who(server, url, {"X-Grafana-User": "alice"}) == 403  # a user, not an admin
        # an admin: the API answers, the guard forwards to a Prometheus that is not there (502)
        assert _who(server, url, {"X-Grafana-User": "ops"}) == (200 if server == "monitor-api" else 502)
        assert _who(server, url, {"X-Forwarded-For": PROXY}) == 401  # no user header, no user


@pytest.mark.parametrize("server", ["monitor-api", "monitor-proxy"])
def test_a_trusted_header_without_trusted_proxies_refuses_to_start(server: str, tmp_path: Path) -> None:
    access = _access(tmp_path, None)
    done = subprocess.run(_command(server, free_port(), access, tmp_path / "m.db"), capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert done.returncode == 2, done.stderr
    message = " ".join((done.stdout + done.stderr).split())
    assert "trusted_header: X-Grafana-User but no trusted_proxies" in message
    assert "--insecure-trust-header" in message
    with serve(server, access, tmp_path / "m.db", "--insecure-trust-header") as url:
        assert _who(server, url, {"X-Grafana-User": "ops"}) == (200 if server == "monitor-api" else 502)
