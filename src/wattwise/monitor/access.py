"""Who is asking, and what they may see: shared by `monitor-api` and `monitor-proxy`.

A request's user comes from, in this order:

1. ``Authorization: Bearer <token>``: the token's SHA-256 (hex) is looked up in ``tokens``;
2. the header named by ``trusted_header`` (e.g. ``X-Grafana-User``, which Grafana sends to data sources
   when ``send_user_header = true``), only when the access file sets ``trusted_header`` and the request's
   socket peer is one of ``trusted_proxies`` (the front proxy or Grafana). Without any access file the
   commands trust ``X-Grafana-User`` from loopback peers only (127.0.0.1, ::1).

The client address is always the socket peer: the servers run uvicorn without proxy headers, so
``X-Forwarded-For``, ``X-Real-IP`` or ``Forwarded`` can never make a request look as if it came from a
trusted proxy. A ``trusted_header`` without ``trusted_proxies`` would let anyone who reaches the port
name any user, admins included: :func:`check_header_trust` refuses it unless the operator insists
(``--insecure-trust-header``).

No user: HTTP 401. Admins (``admins``) see everything. Everyone else sees the units whose ``user`` is
them and the units of the projects they are a member of (``projects``). With
``members_from_units: true`` a user is also a member of every project they ran a unit in — only
safe where project labels come from Slurm itself (scontrol or the mapping file, see
:mod:`wattwise.monitor.metadata`), since a job's environment is under its user's control.

Access file (YAML)::

    admins: [ops]
    trusted_header: X-Grafana-User
    trusted_proxies: [127.0.0.1]
    tokens:                     # user: sha256 hex of the token (printf %s TOKEN | sha256sum)
      alice: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    projects:                   # project: members
      astro: [alice, bob]
    members_from_units: false
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wattwise.errors import ConfigError

DEFAULT_HEADER = "X-Grafana-User"
_KEYS = {"admins", "trusted_header", "trusted_proxies", "tokens", "projects", "members_from_units"}


LOOPBACK = frozenset({"127.0.0.1", "::1"})
#: uvicorn settings of both servers: the client address comes from the socket, never from forwarded headers
UVICORN_OPTIONS = {"proxy_headers": False, "forwarded_allow_ips": "", "server_header": False}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    user: str
    admin: bool
    projects: frozenset[str]
    via: str  # token | header


@dataclass(frozen=True)
class AccessConfig:
    admins: frozenset[str] = frozenset()
    trusted_header: str | None = DEFAULT_HEADER
    trusted_proxies: frozenset[str] = frozenset()
    tokens: dict[str, str] = field(default_factory=dict)  # sha256 hex → user
    projects: dict[str, frozenset[str]] = field(default_factory=dict)  # project → members
    members_from_units: bool = False

    @classmethod
    def load(cls, path: str | Path) -> AccessConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read access file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"access file {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "access config") -> AccessConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with keys {', '.join(sorted(_KEYS))}")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")

        def names(key: str) -> frozenset[str]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of names")
            return frozenset(str(v) for v in value)

        tokens: dict[str, str] = {}
        for user, digest in (data.get("tokens") or {}).items():
            text = str(digest).strip().lower()
            if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
                raise ConfigError(f"{where}: tokens.{user} must be the SHA-256 of the token in hex (64 digits)")
            tokens[text] = str(user)
        projects: dict[str, frozenset[str]] = {}
        for project, members in (data.get("projects") or {}).items():
            if not isinstance(members, list):
                raise ConfigError(f"{where}: projects.{project} must be a list of user names")
            projects[str(project)] = frozenset(str(m) for m in members)
        # an access file trusts a header only when it says so: a tokens-only file must not let anyone claim
        # any user (admins included) by sending X-Grafana-User
        header = data.get("trusted_header")
        return cls(names("admins"), str(header) if header else None, names("trusted_proxies"), tokens, projects,
                   bool(data.get("members_from_units", False)))

    def projects_of(self, user: str) -> frozenset[str]:
        return frozenset(p for p, members in self.projects.items() if user in members)

    def identify(self, headers: Any, client_host: str | None,
                 unit_projects: Any = None) -> Identity | None:
        """The identity of a request (`headers`: a case-insensitive mapping), or None.

        `unit_projects`: a callable user → projects of their units, used when members_from_units."""
        user: str | None = None
        via = ""
        authorization = headers.get("authorization") or ""
        if authorization.lower().startswith("bearer "):
            digest = token_hash(authorization[7:].strip())
            for known, owner in self.tokens.items():
                if hmac.compare_digest(known, digest):
                    user, via = owner, "token"
                    break
            if user is None:
                return None  # a wrong token never falls back to the header
        elif self.trusted_header:
            value = (headers.get(self.trusted_header) or "").strip()
            if value and (not self.trusted_proxies or client_host in self.trusted_proxies):
                user, via = value, "header"
        if not user:
            return None
        projects = set(self.projects_of(user))
        if self.members_from_units and unit_projects is not None:
            projects |= set(unit_projects(user))
        return Identity(user, user in self.admins, frozenset(projects), via)


def default_access() -> AccessConfig:
    """The commands' configuration without an access file: X-Grafana-User from loopback peers only."""
    return AccessConfig(trusted_proxies=LOOPBACK)


def check_header_trust(config: AccessConfig, insecure: bool, where: str = "the access file") -> None:
    """ConfigError for a trusted header that anyone could send (no trusted_proxies), unless `insecure`."""
    if config.trusted_header and not config.trusted_proxies and not insecure:
        raise ConfigError(
            f"{where} sets trusted_header: {config.trusted_header} but no trusted_proxies, so anyone who "
            f"reaches the port could send {config.trusted_header}: <any user> and be that user (admins "
            "included). List the addresses of Grafana or the front proxy under trusted_proxies, or start with "
            "--insecure-trust-header if the port is reachable only by that proxy.")
