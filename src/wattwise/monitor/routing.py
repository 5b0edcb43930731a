"""Several Prometheus servers behind `wattwise monitor-proxy`: route each request to one that holds its time range.

Backends are given as URLs with an optional retention in the fragment (never sent to the server):
``http://prom-short:9090#retention=15d``, ``http://thanos-query:9090`` (no retention: keeps everything).

For a query the guard has checked, the oldest instant it reads is

* ``query``: its ``time`` (default now), ``query_range``/``series``/``labels``: its ``start`` (default now);
* minus the longest range or subquery window (``[1h]``, ``[1d:5m]``) plus the largest ``offset`` in the
  expression; an ``@ <timestamp>`` modifier counts as an instant read too.

A backend can answer when now − retention ≤ that oldest instant. Among those, the ones with the shortest
retention are preferred (the short-term server is the fast one), and equal ones — replicas — take turns
(round-robin). When no backend's retention reaches back far enough, the one with the longest retention
answers. Every other request goes to the backends with the longest retention, in turn.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urldefrag

from wattwise.errors import ConfigError, PromQLError
from wattwise.monitor.promql import tokenize

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
RANGED_PATHS = ("/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels")


def parse_duration(text: str) -> float:
    """Prometheus durations: 90s, 1h30m, 15d, 2w, 1y (or plain seconds)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"{text!r} is not a duration (e.g. 90s, 1h30m, 15d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_time(text: str) -> float:
    """A Prometheus API time: Unix seconds or RFC 3339."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise PromQLError(f"cannot read the time {text!r}: expected Unix seconds or RFC 3339") from exc


@dataclass(frozen=True)
class Backend:
    url: str  # without the fragment
    retention_s: float | None = None  # None: everything

    @classmethod
    def parse(cls, spec: str) -> Backend:
        url, fragment = urldefrag(spec.strip())
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--prometheus {spec!r}: expected http(s)://host:port[#retention=15d]")
        retention = None
        if fragment:
            key, _, value = fragment.partition("=")
            if key != "retention" or not value:
                raise ConfigError(f"--prometheus {spec!r}: the only option after # is retention=<duration>")
            retention = parse_duration(value)
        return cls(url.rstrip("/"), retention)


def oldest_read_s(expression: str, at: float) -> float:
    """The oldest instant `expression` evaluated at `at` reads (see the module doc)."""
    tokens = tokenize(expression)
    window = offset = 0.0
    oldest = at
    for i, token in enumerate(tokens):
        if token.kind == "op" and token.text == "[" and i + 1 < len(tokens) and tokens[i + 1].kind == "number":
            window = max(window, _seconds(tokens[i + 1].text))
        elif token.kind == "ident" and token.text == "offset" and i + 1 < len(tokens):
            sign = -1.0 if tokens[i + 1].text == "-" else 1.0
            value = tokens[i + 2] if tokens[i + 1].text in "+-" and i + 2 < len(tokens) else tokens[i + 1]
            if value.kind == "number":
                offset = max(offset, sign * _seconds(value.text))
        elif token.kind == "op" and token.text == "@" and i + 1 < len(tokens) and tokens[i + 1].kind == "number":
            oldest = min(oldest, float(tokens[i + 1].text))
    return min(oldest, at) - window - max(0.0, offset)


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise PromQLError(str(exc)) from exc


class Router:
    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ConfigError("at least one --prometheus is needed")
        self.backends = list(backends)
        self._turns: dict[tuple[str, ...], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def _in_turn(self, group: Sequence[Backend]) -> Backend:
        key = tuple(b.url for b in group)
        with self._lock:
            counter = self._turns.setdefault(key, itertools.count())
            return group[next(counter) % len(group)]

    def _longest(self) -> list[Backend]:
        unlimited = [b for b in self.backends if b.retention_s is None]
        if unlimited:
            return unlimited
        longest = max(b.retention_s or 0.0 for b in self.backends)
        return [b for b in self.backends if b.retention_s == longest]

    def for_oldest(self, oldest_s: float, now: float) -> Backend:
        able = [b for b in self.backends if b.retention_s is None or now - b.retention_s <= oldest_s]
        if not able:
            return self._in_turn(self._longest())
        shortest = min((b.retention_s for b in able if b.retention_s is not None), default=None)
        return self._in_turn([b for b in able if b.retention_s == shortest])

    def choose(self, route: str, params: Sequence[tuple[str, str]] | Mapping[str, str],
               now: float | None = None) -> Backend:
        now = time.time() if now is None else now
        if len(self.backends) == 1:
            return self.backends[0]
        items = list(params.items()) if isinstance(params, Mapping) else list(params)
        if route not in RANGED_PATHS:
            return self._in_turn(self._longest())
        values = dict(items)
        at = parse_time(values["time"]) if route == "/api/v1/query" and values.get("time") else now
        start = parse_time(values["start"]) if values.get("start") else at
        oldest = start
        for key, value in items:
            if key in ("query", "match[]"):
                oldest = min(oldest, oldest_read_s(value, start))
        return self.for_oldest(oldest, now)
