"""Whole-node power from a BMC's Redfish service (DMTF Redfish, ``Chassis`` power).

For each chassis listed at ``/redfish/v1/Chassis`` (or the one named), the power the chassis draws:

* ``/redfish/v1/Chassis/<id>/Power`` (schema ``Power``): ``PowerControl[*].PowerConsumedWatts``, summed
  over the power-control entries, with ``PowerControl[*].PowerMetrics`` (``AverageConsumedWatts``,
  ``MinConsumedWatts``, ``MaxConsumedWatts`` over ``IntervalInMin``);
* else ``/redfish/v1/Chassis/<id>/EnvironmentMetrics`` (schema ``EnvironmentMetrics``, Redfish 2020.4+):
  ``PowerWatts.Reading``.

Chassis are filtered with `chassis` (ids); by default every chassis that reports power is summed, except
those contained in another reporting chassis (``Links.ContainedBy``), so that a blade's power is not added
to its enclosure's. Authentication is HTTP basic (``user``/``password``), as BMCs accept for sessionless
reads. A reading has the same fields as an IPMI DCMI reading, so the exporter polls either the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from wattwise.providers.base import ProviderError
from wattwise.providers.ipmi import DcmiPowerReading

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ChassisPower:
    chassis: str
    power_w: float
    average_w: float | None = None
    minimum_w: float | None = None
    maximum_w: float | None = None
    interval_s: float | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_power(document: dict[str, Any], chassis: str) -> ChassisPower | None:
    """A ``Power`` resource → the chassis power (None when no PowerControl entry has a reading)."""
    controls = document.get("PowerControl")
    if not isinstance(controls, list):
        return None
    readings = [c for c in controls if isinstance(c, dict) and _number(c.get("PowerConsumedWatts")) is not None]
    if not readings:
        return None
    metrics: list[dict[str, Any]] = [c["PowerMetrics"] if isinstance(c.get("PowerMetrics"), dict) else {}
                                     for c in readings]

    def total(key: str) -> float | None:
        values = [_number(m.get(key)) for m in metrics]
        return sum(v for v in values if v is not None) if all(v is not None for v in values) else None

    intervals = {_number(m.get("IntervalInMin")) for m in metrics}
    interval = next(iter(intervals)) if len(intervals) == 1 else None
    return ChassisPower(chassis, sum(float(c["PowerConsumedWatts"]) for c in readings),
                        total("AverageConsumedWatts"), total("MinConsumedWatts"), total("MaxConsumedWatts"),
                        interval * 60 if interval is not None else None)


def parse_environment_metrics(document: dict[str, Any], chassis: str) -> ChassisPower | None:
    watts = document.get("PowerWatts")
    reading = _number(watts.get("Reading")) if isinstance(watts, dict) else None
    return ChassisPower(chassis, reading) if reading is not None else None


class RedfishPower:
    """Reads chassis power from a Redfish service; :meth:`query` gives one whole-node reading."""

    name = "redfish"

    def __init__(self, base_url: str, *, user: str | None = None, password: str | None = None,
                 chassis: Sequence[str] | None = None, verify: bool | str = True,
                 timeout_s: float = DEFAULT_TIMEOUT_S, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        auth = httpx.BasicAuth(user, password or "") if user else None
        self._client = httpx.Client(base_url=self.base_url, auth=auth, verify=verify, timeout=timeout_s,
                                    transport=transport, headers={"Accept": "application/json"})
        self.chassis = list(chassis) if chassis else None
        self._paths: list[tuple[str, str]] | None = None  # (chassis id, power resource path)

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise ProviderError(f"Redfish {self.base_url}{path}: {exc}") from exc
        if response.status_code in (401, 403):
            raise ProviderError(f"Redfish {self.base_url}{path}: HTTP {response.status_code} (check user/password)")
        if response.status_code != 200:
            raise ProviderError(f"Redfish {self.base_url}{path}: HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError as exc:
            raise ProviderError(f"Redfish {self.base_url}{path}: not JSON") from exc
        if not isinstance(document, dict):
            raise ProviderError(f"Redfish {self.base_url}{path}: expected a JSON object")
        return document

    def _discover(self) -> list[tuple[str, str]]:
        members = self._get("/redfish/v1/Chassis").get("Members") or []
        found: list[tuple[str, str, str, str | None]] = []  # (id, power path, own link, ContainedBy link)
        for member in members:
            link = member.get("@odata.id") if isinstance(member, dict) else None
            if not isinstance(link, str):
                continue
            chassis = self._get(link)
            chassis_id = str(chassis.get("Id") or link.rstrip("/").rsplit("/", 1)[-1])
            if self.chassis is not None and chassis_id not in self.chassis:
                continue
            links = chassis.get("Links") if isinstance(chassis.get("Links"), dict) else {}
            parent = links.get("ContainedBy") if isinstance(links, dict) else None
            parent_link = parent.get("@odata.id") if isinstance(parent, dict) else None
            for key in ("Power", "EnvironmentMetrics"):
                target = chassis.get(key)
                path = target.get("@odata.id") if isinstance(target, dict) else None
                if isinstance(path, str) and self._read(chassis_id, path) is not None:
                    found.append((chassis_id, path, link.rstrip("/"),
                                  parent_link.rstrip("/") if isinstance(parent_link, str) else None))
                    break
        reporting = {own for _, _, own, _ in found}
        kept = [(c, p) for c, p, _, parent in found if parent not in reporting]
        if not kept:
            names = f" {', '.join(self.chassis)}" if self.chassis else ""
            raise ProviderError(f"Redfish {self.base_url}: no chassis{names} reports its power "
                                "(Power.PowerControl[].PowerConsumedWatts or EnvironmentMetrics.PowerWatts)")
        return kept

    def _read(self, chassis: str, path: str) -> ChassisPower | None:
        document = self._get(path)
        if path.rstrip("/").endswith("EnvironmentMetrics"):
            return parse_environment_metrics(document, chassis)
        return parse_power(document, chassis)

    def readings(self) -> list[ChassisPower]:
        if self._paths is None:
            self._paths = self._discover()
        result = []
        for chassis, path in self._paths:
            reading = self._read(chassis, path)
            if reading is None:
                raise ProviderError(f"Redfish {self.base_url}{path}: no power reading for chassis {chassis}")
            result.append(reading)
        return result

    def query(self) -> DcmiPowerReading:
        """The summed chassis power as a reading like IPMI DCMI's (current, average, minimum, maximum)."""
        readings = self.readings()

        def total(values: list[float | None]) -> float | None:
            return sum(v for v in values if v is not None) if all(v is not None for v in values) else None

        intervals = {r.interval_s for r in readings}
        return DcmiPowerReading(
            power_w=sum(r.power_w for r in readings), minimum_w=total([r.minimum_w for r in readings]),
            maximum_w=total([r.maximum_w for r in readings]), average_w=total([r.average_w for r in readings]),
            sampling_period_s=next(iter(intervals)) if len(intervals) == 1 else None)

    def close(self) -> None:
        self._client.close()
