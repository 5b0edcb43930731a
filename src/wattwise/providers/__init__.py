"""Metric providers: one module per source, all behind the `Provider` protocol of `base`.

The registry maps CLI names to classes. Machine providers can be created with no arguments; unit
providers (cgroup, per-namespace network) are attached by the runners to the units they start.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from wattwise.errors import WattwiseError
from wattwise.providers.base import (
    Availability,
    CounterAccumulator,
    Kind,
    MetricSpec,
    Provider,
    ProviderError,
    Scope,
)

__all__ = [
    "REGISTRY",
    "Availability",
    "CounterAccumulator",
    "Kind",
    "MetricSpec",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "Scope",
    "create",
    "default_machine_providers",
    "provider_class",
    "provider_table",
]

#: CLI name -> "module:Class" (imported on demand)
REGISTRY: dict[str, str] = {
    "cpu": "wattwise.providers.procstat:CpuUtilizationProvider",
    "cgroup": "wattwise.providers.cgroup:CgroupProvider",
    "network": "wattwise.providers.network:NetworkProvider",
    "rapl": "wattwise.providers.rapl:RaplProvider",
    "ipmi": "wattwise.providers.ipmi:IpmiDcmiProvider",
    "nvml": "wattwise.providers.nvml:NvmlProvider",
    "hwmon": "wattwise.providers.temperature:HwmonTemperatureProvider",
    "sensors": "wattwise.providers.temperature:SensorsTemperatureProvider",
    "estimate": "wattwise.providers.estimate:EstimatedPowerProvider",
}
#: sampled by default on the machine when available (cgroup is per unit, always attached)
DEFAULT_MACHINE = ("cpu", "network", "rapl", "ipmi", "nvml", "hwmon", "sensors", "estimate")
#: sources of measured CPU/machine power; when one is available the estimate is not needed (a GPU sensor alone
#: does not see the CPUs: the estimate then covers them and GPU energy is added)
POWER_SENSORS = ("rapl", "ipmi")


def provider_class(name: str) -> type[Provider]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise WattwiseError(
            f"unknown provider {name!r}; available providers: {', '.join(REGISTRY)}"
        ) from None
    module_name, class_name = target.split(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create(name: str) -> Provider:
    return provider_class(name)()


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    description: str
    scope: str
    default_interval_s: float
    metrics: dict[str, str]
    availability: Availability


def provider_table() -> list[ProviderInfo]:
    """Every registered provider with whether it works on this machine and why (not)."""
    rows = []
    for name in REGISTRY:
        cls = provider_class(name)
        try:
            availability = cls().availability()
        except Exception as exc:  # a provider must not break the table
            availability = Availability.no(f"{type(exc).__name__}: {exc}")
        rows.append(
            ProviderInfo(
                name,
                cls.description,
                _scope_text(cls),
                cls.default_interval_s,
                dict(cls.metric_units),
                availability,
            )
        )
    return rows


def _scope_text(cls: type[Provider]) -> str:
    """The class's scope; a scope that is a property depends on how the provider is opened (the machine, or
    a unit's process), so the table says both instead of printing the property object."""
    import inspect

    if isinstance(inspect.getattr_static(cls, "scope", None), property):
        return f"{Scope.MACHINE} or {Scope.UNIT}"
    return str(cls.scope)


def default_machine_providers(names: list[str] | None = None) -> tuple[list[Provider], list[str]]:
    """Providers to sample on the machine, and notes on the ones skipped.

    With `names`, exactly those (an unavailable one is an error naming why). Without, every available
    default provider; the estimate only when no power sensor is available.
    """
    notes: list[str] = []
    chosen: list[Provider] = []
    if names:
        for name in names:
            if name == "cgroup":
                continue  # attached to the unit by the runner
            provider = create(name)
            availability = provider.availability()
            if not availability.available:
                raise WattwiseError(f"provider {name!r} is not available here: {availability.reason}")
            chosen.append(provider)
        return chosen, notes
    have_sensor = False
    for name in DEFAULT_MACHINE:
        if name == "estimate" and have_sensor:
            notes.append("estimate: skipped, a power sensor is available")
            continue
        provider = create(name)
        availability = provider.availability()
        if availability.available:
            chosen.append(provider)
            have_sensor = have_sensor or name in POWER_SENSORS
        else:
            notes.append(f"{name}: {availability.reason}")
    return chosen, notes
