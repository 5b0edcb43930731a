"""WattTime as a grid intensity source: the marginal operating emissions rate (MOER) of a grid region.

WattTime API v3 (documented formats):

* ``GET {base}/login`` with HTTP basic auth (the account's user name and password) →
  ``{"token": "<bearer token>"}``, valid for 30 minutes;
* ``GET {base}/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer&horizon_hours=0`` with
  ``Authorization: Bearer <token>`` →
  ``{"data": [{"point_time": "2024-05-14T09:00:00+00:00", "value": 870.2}, ...],
  "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh", ...}}``.

The value used is the newest point at or before now (else the first one), converted to g/kWh from the
units ``meta`` names (``lbs_co2_per_mwh`` × 0.45359237; ``g_co2_per_kwh`` and ``kg_co2_per_mwh`` as they
are). A MOER is the emissions of the *next* kWh on that grid — a marginal factor, unlike the average
intensity of the other sources; the reading's detail says so. Credentials come from
``$WATTTIME_USERNAME`` / ``$WATTTIME_PASSWORD``. ``watttime:<region>`` is its spec on the exporter's
``--grid``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from typing import Any

import httpx

from wattwise.carbon.live import IntensityError, IntensityReading, IntensitySource

WATTTIME_URL = "https://api.watttime.org"
ENV_USERNAME = "WATTTIME_USERNAME"
ENV_PASSWORD = "WATTTIME_PASSWORD"
TOKEN_LIFETIME_S = 25 * 60  # WattTime tokens last 30 minutes: log in again a little before
G_PER_KWH = {"lbs_co2_per_mwh": 453.59237 / 1000, "g_co2_per_kwh": 1.0, "kg_co2_per_mwh": 1.0}


def _time(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise IntensityError(f"watttime: point_time {text!r} is not ISO 8601") from exc


class WattTimeSource(IntensitySource):
    name = "watttime"

    def __init__(self, region: str, username: str | None = None, password: str | None = None,
                 base_url: str = WATTTIME_URL, timeout_s: float = 5.0, signal_type: str = "co2_moer") -> None:
        self.region = region
        self.zone = region
        self.username = username if username is not None else os.environ.get(ENV_USERNAME, "")
        self.password = password if password is not None else os.environ.get(ENV_PASSWORD, "")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.signal_type = signal_type
        self._token: str | None = None
        self._token_at = 0.0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"WattTime {self.signal_type} {self.region}"

    def _login(self) -> str:
        if not self.username:
            raise IntensityError(f"watttime: no account: set ${ENV_USERNAME} and ${ENV_PASSWORD}")
        try:
            response = httpx.get(f"{self.base_url}/login", auth=(self.username, self.password),
                                 timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise IntensityError(f"watttime: cannot reach {self.base_url}/login: {exc}") from exc
        if response.status_code != 200:
            raise IntensityError(f"watttime: login refused (HTTP {response.status_code}): {response.text[:200]!r}")
        try:
            token = response.json().get("token")
        except (ValueError, AttributeError) as exc:
            raise IntensityError(f"watttime: login did not answer JSON with a token: {response.text[:200]!r}") from exc
        if not isinstance(token, str) or not token:
            raise IntensityError("watttime: login answered without a token")
        return token

    def _token_now(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() - self._token_at > TOKEN_LIFETIME_S:
                self._token = self._login()
                self._token_at = time.monotonic()
            return self._token

    def _forecast(self, token: str) -> httpx.Response:
        try:
            return httpx.get(f"{self.base_url}/v3/forecast", headers={"Authorization": f"Bearer {token}"},
                             params={"region": self.region, "signal_type": self.signal_type, "horizon_hours": 0},
                             timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise IntensityError(f"watttime: cannot reach {self.base_url}/v3/forecast: {exc}") from exc

    def fetch(self, now_s: float) -> IntensityReading:
        response = self._forecast(self._token_now())
        if response.status_code == 401:  # the token expired early: log in once more
            response = self._forecast(self._token_now(renew=True))
        if response.status_code != 200:
            raise IntensityError(f"watttime: /v3/forecast answered HTTP {response.status_code}: "
                                 f"{response.text[:200]!r}")
        try:
            document = response.json()
        except ValueError as exc:
            raise IntensityError(f"watttime: /v3/forecast did not answer JSON: {response.text[:200]!r}") from exc
        points = document.get("data") if isinstance(document, dict) else None
        meta = document.get("meta") if isinstance(document, dict) else None
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
            raise IntensityError(f"watttime: no data points for {self.region}: {str(document)[:200]}")
        units = str((meta or {}).get("units", "lbs_co2_per_mwh"))
        if units not in G_PER_KWH:
            raise IntensityError(f"watttime: unknown units {units!r} (known: {', '.join(G_PER_KWH)})")
        timed = sorted(((_time(p.get("point_time")), p) for p in points), key=lambda tp: tp[0])
        past = [tp for tp in timed if tp[0] <= now_s]
        at, point = past[-1] if past else timed[0]
        value = point.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IntensityError(f"watttime: value {value!r} is not a number")
        return IntensityReading(float(value) * G_PER_KWH[units], self.name, self.region, at, now_s,
                                detail=f"WattTime marginal {self.signal_type} ({units})")
