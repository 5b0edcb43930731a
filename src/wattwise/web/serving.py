"""How wattwise runs uvicorn: which peers may tell the server who the client is.

uvicorn by default believes ``X-Forwarded-For`` and ``X-Forwarded-Proto`` from 127.0.0.1 (and from the
addresses in ``$FORWARDED_ALLOW_IPS``), so anyone who can reach the server from loopback could claim any client
address. wattwise decides the client address from the socket alone, unless the operator lists trusted
proxies (addresses or networks); then the forwarded headers are believed from those peers only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from wattwise.errors import WattwiseError


def check_trusted_proxies(proxies: Sequence[str]) -> list[str]:
    """The proxies as given, each an IP address or network; a clear error for anything else ('*' too)."""
    checked: list[str] = []
    for raw in proxies:
        value = raw.strip()
        try:
            if "/" in value:
                ipaddress.ip_network(value, strict=False)
            else:
                ipaddress.ip_address(value)
        except ValueError:
            raise WattwiseError(
                f"--trusted-proxy {raw!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24 or ::1): "
                "only the peers listed here may set X-Forwarded-For"
            ) from None
        checked.append(value)
    return checked


def proxy_settings(trusted_proxies: Sequence[str] = ()) -> dict[str, Any]:
    """uvicorn.Config keyword arguments: forwarded headers off, or believed from `trusted_proxies` only."""
    proxies = check_trusted_proxies(trusted_proxies)
    if not proxies:
        # no ProxyHeadersMiddleware at all: the client is the socket's peer, whatever the headers say
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}
