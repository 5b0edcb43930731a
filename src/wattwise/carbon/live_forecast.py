"""Forecasts from live web APIs, as carbon traces that planners can use (`wattwise slurm submit --carbon ukci`).

- `ukci` / `ukci:<postcode or region id>`: the UK Carbon Intensity API's 48-hour forecast
  (`/intensity/{from}/fw48h`, `/regional/intensity/{from}/fw48h/{postcode|regionid}/{x}`), half-hourly periods
  with `intensity.forecast` (g/kWh).
- `electricitymaps:<zone>`: Electricity Maps' `/v3/carbon-intensity/forecast?zone=<zone>` (token from
  `$ELECTRICITYMAPS_TOKEN`), points `{carbonIntensity, datetime}` each valid until the next.

A spec that names an existing file is read as a trace or forecast CSV. Base URLs can be pointed elsewhere (a
mirror, or a local test server) with `$WATTWISE_UKCI_URL` and `$WATTWISE_ELECTRICITYMAPS_URL`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wattwise.carbon.live import (
    ELECTRICITYMAPS_URL,
    UK_CARBON_INTENSITY_URL,
    ElectricityMapsSource,
    UkCarbonIntensitySource,
)
from wattwise.carbon.trace import CarbonTrace, parse_time_s, read_trace
from wattwise.errors import ConfigError, IntensityError

__all__ = ["LIVE_FORECASTS", "read_carbon"]

LIVE_FORECASTS = ("ukci", "electricitymaps")
ENV_UKCI_URL = "WATTWISE_UKCI_URL"
ENV_ELECTRICITYMAPS_URL = "WATTWISE_ELECTRICITYMAPS_URL"


class UkForecast(UkCarbonIntensitySource):
    def forecast(self, now_s: float) -> CarbonTrace:
        start = datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%MZ")
        if not self.region:
            data = self._get_json(f"/intensity/{start}/fw48h")
            periods = data.get("data") if isinstance(data, dict) else None
        else:
            kind = "regionid" if self.region.isdigit() else "postcode"
            data = self._get_json(f"/regional/intensity/{start}/fw48h/{kind}/{self.region}")
            region = data.get("data") if isinstance(data, dict) else None
            periods = region.get("data") if isinstance(region, dict) else None
        if not isinstance(periods, list) or not periods:
            raise IntensityError(f"ukci: no forecast periods in the answer: {str(data)[:200]}")
        times, values, end = [], [], None
        for period in periods:
            if not isinstance(period, dict) or not isinstance(period.get("intensity"), dict):
                raise IntensityError(f"ukci: a forecast period without intensity: {str(period)[:200]}")
            value = period["intensity"].get("forecast")
            if value is None:
                raise IntensityError(f"ukci: a forecast period without intensity.forecast: {str(period)[:200]}")
            times.append(parse_time_s(str(period.get("from"))))
            values.append(float(value))
            end = parse_time_s(str(period.get("to")))
        return CarbonTrace.from_samples(times, values, end_s=end, zone=self.zone,
                                       source=f"ukci:{self.region}" if self.region else "ukci")


class ElectricityMapsForecast(ElectricityMapsSource):
    def forecast(self, now_s: float) -> CarbonTrace:
        headers = {"auth-token": self.token} if self.token else {}
        data = self._get_json("/v3/carbon-intensity/forecast", {"zone": self.zone}, headers)
        points = data.get("forecast") if isinstance(data, dict) else None
        if not isinstance(points, list) or not points:
            raise IntensityError(f"electricitymaps: no forecast in the answer: {str(data)[:200]}")
        times, values = [], []
        for point in points:
            if not isinstance(point, dict) or point.get("carbonIntensity") is None:
                raise IntensityError(f"electricitymaps: a forecast point without carbonIntensity: {point}")
            times.append(parse_time_s(str(point.get("datetime"))))
            values.append(float(point["carbonIntensity"]))
        return CarbonTrace.from_samples(times, values, zone=self.zone, source=f"electricitymaps:{self.zone}")


def read_carbon(spec: str, *, now_s: float | None = None, client: Any | None = None) -> CarbonTrace:
    """A trace or forecast: an existing CSV file, or a live forecast `ukci[:region]` / `electricitymaps:<zone>`."""
    import time

    if Path(spec).exists():
        return read_trace(spec)
    kind, _, argument = spec.partition(":")
    now = time.time() if now_s is None else now_s
    if kind == "ukci":
        url = os.environ.get(ENV_UKCI_URL) or UK_CARBON_INTENSITY_URL
        return UkForecast(argument or None, url, client=client).forecast(now)
    if kind == "electricitymaps":
        if not argument:
            raise ConfigError("electricitymaps needs a zone: electricitymaps:<zone>, e.g. electricitymaps:DE")
        url = os.environ.get(ENV_ELECTRICITYMAPS_URL) or ELECTRICITYMAPS_URL
        return ElectricityMapsForecast(argument, base_url=url, client=client).forecast(now)
    if kind == "rte":
        raise ConfigError("RTE's eCO2mix publishes no carbon-intensity forecast: use a forecast CSV, ukci or "
                          "electricitymaps:FR")
    raise ConfigError(f"--carbon {spec!r}: no such file, and not a live forecast (ukci, ukci:<postcode|region id>, "
                      "electricitymaps:<zone>)")
