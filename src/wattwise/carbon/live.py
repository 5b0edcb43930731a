"""Grid carbon intensity behind one interface: static factors, trace files and live web APIs.

Every source implements :class:`IntensitySource` (``fetch(now_s) -> IntensityReading``, raising
:class:`IntensityError`). Callers use :class:`CachedIntensity`, which adds

* caching: a value is reused for ``ttl_s`` seconds (live APIs publish every 5–60 min);
* last-good fallback: when a fetch fails, the last good value is returned, marked ``stale``;
* a fallback source (normally the static country factor) when no fetch has ever worked;
* optionally non-blocking refresh (``block=False``): an expired value is returned at once while a
  daemon thread fetches the new one, so that an exporter's scrape never waits for the network.

Live providers and the response parts they read (documented formats):

* Electricity Maps, ``GET {base}/v3/carbon-intensity/latest?zone=DE`` with header ``auth-token``:
  ``{"zone": "DE", "carbonIntensity": 302, "datetime": "2019-05-21T00:00:00.000Z", ...}``
  (lifecycle gCO2eq/kWh).
* RTE eCO2mix (France) through the ODRÉ open-data API,
  ``GET {base}/api/explore/v2.1/catalog/datasets/eco2mix-national-tr/records?select=date_heure,taux_co2
  &where=taux_co2 is not null&order_by=date_heure desc&limit=1``:
  ``{"total_count": 1, "results": [{"date_heure": "2024-07-28T13:45:00+00:00", "taux_co2": 21}]}``
  (``taux_co2``: gCO2/kWh of French production, every 15 min).
* UK Carbon Intensity (National Grid ESO), ``GET {base}/intensity``:
  ``{"data": [{"from": "2018-01-20T12:00Z", "to": "2018-01-20T12:30Z",
  "intensity": {"forecast": 266, "actual": 263, "index": "moderate"}}]}`` (``actual`` may be null:
  the forecast is used); regional ``GET {base}/regional/postcode/RG10`` or
  ``/regional/regionid/13``: ``{"data": [{"regionid": 13, "shortname": "London", "data":
  [{"from": ..., "to": ..., "intensity": {"forecast": 180, "index": "moderate"}}]}]}``.

``make_source("electricitymaps:DE")``, ``"rte"``, ``"ukci"``, ``"ukci:RG10"``, ``"static:FR"``,
``"trace:path.csv"`` build a source from a short spec (CLI options use it).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wattwise.carbon.static import GridFactor, country_factor, resolve_grid_factor
from wattwise.errors import ConfigError, WattwiseError
from wattwise.errors import IntensityError as IntensityError

log = logging.getLogger(__name__)

ELECTRICITYMAPS_URL = "https://api.electricitymap.org"
RTE_ODRE_URL = "https://odre.opendatasoft.com"
UK_CARBON_INTENSITY_URL = "https://api.carbonintensity.org.uk"
ENV_ELECTRICITYMAPS_TOKEN = "ELECTRICITYMAPS_TOKEN"
DEFAULT_TTL_S = 900.0
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class IntensityReading:
    intensity_g_per_kwh: float
    source: str  # provider name: static, trace, electricitymaps, rte, ukci
    zone: str  # country or grid zone the value is for
    valid_at_s: float | None = None  # the data's own time (Unix s), when the provider gives it
    fetched_at_s: float = 0.0
    stale: bool = False  # a last-good or fallback value given because the source failed
    detail: str = ""  # where the value comes from, for humans

    def __post_init__(self) -> None:
        if not math.isfinite(self.intensity_g_per_kwh) or self.intensity_g_per_kwh < 0:
            raise IntensityError(f"{self.source}: intensity must be a finite number ≥ 0, "
                                 f"got {self.intensity_g_per_kwh!r}")


class IntensitySource(ABC):
    """One way to get the grid carbon intensity now."""

    name: str = "source"
    zone: str = ""

    @abstractmethod
    def fetch(self, now_s: float) -> IntensityReading:
        """The intensity valid at `now_s`; IntensityError if the source cannot say."""

    def describe(self) -> str:
        return f"{self.name}:{self.zone}" if self.zone else self.name


class StaticSource(IntensitySource):
    """A fixed factor (a country's yearly average from the shipped table, or a given number)."""

    name = "static"

    def __init__(self, factor: GridFactor, zone: str = "") -> None:
        self.factor = factor
        self.zone = zone

    @classmethod
    def for_country(cls, country: str) -> StaticSource:
        return cls(country_factor(country), country.upper())

    def fetch(self, now_s: float) -> IntensityReading:
        return IntensityReading(self.factor.intensity_g_per_kwh, self.name, self.zone, None, now_s,
                                detail=self.factor.source)


class TraceSource(IntensitySource):
    """The value of a carbon-intensity trace file (wattwise.carbon.trace) at the current time."""

    name = "trace"

    def __init__(self, trace: Any, zone: str | None = None) -> None:
        self.trace = trace
        self.zone = zone or getattr(trace, "zone", None) or ""

    @classmethod
    def from_file(cls, path: str | Path, zone: str | None = None) -> TraceSource:
        from wattwise.carbon.trace import read_trace

        return cls(read_trace(path), zone)

    def fetch(self, now_s: float) -> IntensityReading:
        try:
            value = self.trace.at(now_s)
        except WattwiseError as exc:
            raise IntensityError(f"trace {getattr(self.trace, 'source', '')}: {exc}") from exc
        return IntensityReading(value, self.name, self.zone, now_s, now_s,
                                detail=str(getattr(self.trace, "source", "")))


def _parse_time(text: Any, what: str) -> float | None:
    if text is None:
        return None
    from datetime import UTC, datetime

    value = str(text).strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise IntensityError(f"{what}: time {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IntensityError(f"{what} is not a number: {value!r}")
    return float(value)


class HttpSource(IntensitySource):
    """A live web API, read with httpx (timeouts, status and JSON checked)."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 client: Any | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = client

    def _get_json(self, path: str, params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> Any:
        import httpx

        url = self.base_url + path
        try:
            if self._client is not None:
                response = self._client.get(url, params=params, headers=headers, timeout=self.timeout_s)
            else:
                response = httpx.get(url, params=params, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise IntensityError(f"{self.name}: cannot reach {url}: {exc}") from exc
        if response.status_code != 200:
            raise IntensityError(f"{self.name}: {url} answered HTTP {response.status_code}: "
                                 f"{response.text[:200]!r}")
        try:
            return response.json()
        except ValueError as exc:
            raise IntensityError(f"{self.name}: {url} did not answer JSON: {response.text[:200]!r}") from exc


class ElectricityMapsSource(HttpSource):
    name = "electricitymaps"

    def __init__(self, zone: str, token: str | None = None, base_url: str = ELECTRICITYMAPS_URL,
                 timeout_s: float = DEFAULT_TIMEOUT_S, client: Any | None = None) -> None:
        super().__init__(base_url, timeout_s, client)
        self.zone = zone
        self.token = token if token is not None else os.environ.get(ENV_ELECTRICITYMAPS_TOKEN, "")

    def fetch(self, now_s: float) -> IntensityReading:
        headers = {"auth-token": self.token} if self.token else {}
        data = self._get_json("/v3/carbon-intensity/latest", {"zone": self.zone}, headers)
        if not isinstance(data, dict) or "carbonIntensity" not in data:
            raise IntensityError(f"electricitymaps: no carbonIntensity in the answer: {str(data)[:200]}")
        value = _number(data["carbonIntensity"], "electricitymaps carbonIntensity")
        valid = _parse_time(data.get("datetime"), "electricitymaps datetime")
        return IntensityReading(value, self.name, str(data.get("zone") or self.zone), valid, now_s,
                                detail=f"Electricity Maps {data.get('emissionFactorType', '')}".strip())


class RteEco2mixSource(HttpSource):
    name = "rte"
    DATASET_PATH = "/api/explore/v2.1/catalog/datasets/eco2mix-national-tr/records"

    def __init__(self, base_url: str = RTE_ODRE_URL, timeout_s: float = DEFAULT_TIMEOUT_S,
                 client: Any | None = None) -> None:
        super().__init__(base_url, timeout_s, client)
        self.zone = "FR"

    def fetch(self, now_s: float) -> IntensityReading:
        params = {"select": "date_heure,taux_co2", "where": "taux_co2 is not null",
                  "order_by": "date_heure desc", "limit": "1"}
        data = self._get_json(self.DATASET_PATH, params)
        results = data.get("results") if isinstance(data, dict) else None
        if not results or not isinstance(results, list) or not isinstance(results[0], dict):
            raise IntensityError(f"rte: no results in the eCO2mix answer: {str(data)[:200]}")
        row = results[0]
        if row.get("taux_co2") is None:
            raise IntensityError(f"rte: the latest eCO2mix record has no taux_co2: {row}")
        value = _number(row["taux_co2"], "rte taux_co2")
        valid = _parse_time(row.get("date_heure"), "rte date_heure")
        return IntensityReading(value, self.name, "FR", valid, now_s, detail="RTE eCO2mix taux_co2")


class UkCarbonIntensitySource(HttpSource):
    name = "ukci"

    def __init__(self, region: str | None = None, base_url: str = UK_CARBON_INTENSITY_URL,
                 timeout_s: float = DEFAULT_TIMEOUT_S, client: Any | None = None) -> None:
        """`region`: None for Great Britain, an outward postcode (RG10) or a region id (13)."""
        super().__init__(base_url, timeout_s, client)
        self.region = region
        self.zone = f"GB:{region}" if region else "GB"

    def fetch(self, now_s: float) -> IntensityReading:
        if not self.region:
            data = self._get_json("/intensity")
            periods = data.get("data") if isinstance(data, dict) else None
        else:
            kind = "regionid" if self.region.isdigit() else "postcode"
            data = self._get_json(f"/regional/{kind}/{self.region}")
            regions = data.get("data") if isinstance(data, dict) else None
            if not regions or not isinstance(regions, list) or not isinstance(regions[0], dict):
                raise IntensityError(f"ukci: no region in the answer: {str(data)[:200]}")
            periods = regions[0].get("data")
        if not periods or not isinstance(periods, list) or not isinstance(periods[0], dict):
            raise IntensityError(f"ukci: no intensity period in the answer: {str(data)[:200]}")
        period = periods[0]
        intensity = period.get("intensity") or {}
        value = intensity.get("actual")
        if value is None:
            value = intensity.get("forecast")
        if value is None:
            raise IntensityError(f"ukci: the period has neither actual nor forecast: {period}")
        value = _number(value, "ukci intensity")
        valid = _parse_time(period.get("from"), "ukci from")
        kind_text = "actual" if intensity.get("actual") is not None else "forecast"
        return IntensityReading(value, self.name, self.zone, valid, now_s,
                                detail=f"UK Carbon Intensity {kind_text}")


class CachedIntensity:
    """The one interface callers use: caching, last-good fallback and a fallback source."""

    def __init__(self, source: IntensitySource, ttl_s: float = DEFAULT_TTL_S,
                 fallback: IntensitySource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.ttl_s = ttl_s
        self.fallback = fallback
        self.clock = clock
        self._lock = threading.Lock()
        self._last_good: IntensityReading | None = None
        self._last_attempt_s: float | None = None
        self._refreshing = False
        self.last_error: str | None = None
        self.failures = 0
        self.fetches = 0

    def _fetch_into_cache(self, now_s: float) -> None:
        self.fetches += 1
        try:
            reading = self.source.fetch(now_s)
        except IntensityError as exc:
            with self._lock:
                self.failures += 1
                self.last_error = str(exc)
                self._last_attempt_s = now_s
            log.warning("grid intensity from %s failed: %s", self.source.describe(), exc)
            return
        with self._lock:
            self._last_good = reading
            self._last_attempt_s = now_s
            self.last_error = None

    def _expired(self, now_s: float) -> bool:
        return self._last_attempt_s is None or now_s - self._last_attempt_s >= self.ttl_s \
            or now_s < self._last_attempt_s

    def current(self, now_s: float | None = None, block: bool = True) -> IntensityReading:
        """The intensity now. Raises IntensityError only if the source failed, nothing good was ever
        fetched, and there is no fallback."""
        now_s = self.clock() if now_s is None else now_s
        with self._lock:
            expired = self._expired(now_s)
            have_value = self._last_good is not None
            start_background = expired and not block and have_value and not self._refreshing
            if start_background:
                self._refreshing = True
        if expired and (block or not have_value):
            self._fetch_into_cache(now_s)
        elif start_background:
            def refresh() -> None:
                try:
                    self._fetch_into_cache(now_s)
                finally:
                    with self._lock:
                        self._refreshing = False

            threading.Thread(target=refresh, name="wattwise-intensity", daemon=True).start()
        with self._lock:
            good, error = self._last_good, self.last_error
        if good is not None:
            return replace(good, stale=True) if error else good
        if self.fallback is not None:
            reading = self.fallback.fetch(now_s)
            return replace(reading, stale=True,
                           detail=f"fallback for {self.source.describe()} ({error}): {reading.detail}")
        raise IntensityError(error or f"no intensity from {self.source.describe()}")


def default_static_source() -> StaticSource:
    """$WATTWISE_GRID_INTENSITY, else the $WATTWISE_COUNTRY factor, else the world average."""
    from wattwise.carbon.static import ENV_COUNTRY, ENV_INTENSITY

    factor = resolve_grid_factor()
    if os.environ.get(ENV_INTENSITY):
        zone = "configured"
    elif os.environ.get(ENV_COUNTRY):
        zone = os.environ[ENV_COUNTRY].upper()
    else:
        zone = "world"
    return StaticSource(factor, zone)


def make_source(spec: str, *, base_url: str | None = None, token: str | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> IntensitySource:
    """A source from a short spec: ``static:<country>``, ``static:<g/kWh>``, ``trace:<file>``,
    ``electricitymaps:<zone>``, ``rte``, ``ukci`` or ``ukci:<postcode or region id>``."""
    kind, _, argument = spec.partition(":")
    kind = kind.strip().lower()
    argument = argument.strip()
    if kind == "static":
        if not argument:
            return default_static_source()
        try:
            value = float(argument)
        except ValueError:
            return StaticSource.for_country(argument)
        return StaticSource(resolve_grid_factor(intensity_g_per_kwh=value), "configured")
    if kind == "trace":
        if not argument:
            raise ConfigError("trace source needs a file: trace:<path to CSV>")
        return TraceSource.from_file(argument)
    if kind == "electricitymaps":
        if not argument:
            raise ConfigError("electricitymaps source needs a zone: electricitymaps:<zone>, e.g. DE")
        return ElectricityMapsSource(argument, token, base_url or ELECTRICITYMAPS_URL, timeout_s)
    if kind == "rte":
        return RteEco2mixSource(base_url or RTE_ODRE_URL, timeout_s)
    if kind == "ukci":
        return UkCarbonIntensitySource(argument or None, base_url or UK_CARBON_INTENSITY_URL, timeout_s)
    raise ConfigError(f"unknown grid intensity source {spec!r}: use static:<country|g/kWh>, "
                      "trace:<file>, electricitymaps:<zone>, rte, ukci or ukci:<postcode|region id>")
