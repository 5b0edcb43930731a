"""The common provider protocol.

A provider turns one source (a sysfs tree, a tool's output, a library) into a fixed list of metrics.
The sampler calls :meth:`Provider.read` at the provider's interval; every other stage only sees
:class:`MetricSpec` and numbers. Counters are cumulative since :meth:`Provider.open` and already
corrected for wrap-around; gauges are instantaneous values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from wattwise.errors import ProviderError as ProviderError


class Kind(StrEnum):
    COUNTER = "counter"  # cumulative, non-decreasing: differences give the amount in an interval
    GAUGE = "gauge"  # instantaneous value: time integration gives the amount


class Scope(StrEnum):
    MACHINE = "machine"  # the whole machine
    UNIT = "unit"  # one compute unit: a command's cgroup, a container, a Slurm job


@dataclass(frozen=True)
class MetricSpec:
    """What one column of a provider's readings means. `name` carries its unit (energy_j, power_w)."""

    name: str
    unit: str  # SI symbol: J, W, s, B, ratio, degC
    kind: Kind
    detail: str = ""  # which zone, device, cgroup or container
    estimated: bool = False
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.detail)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""

    @classmethod
    def yes(cls, reason: str = "") -> Availability:
        return cls(True, reason)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


class Provider(ABC):
    """One source of metrics. Subclasses set the class attributes and implement the four methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    scope: ClassVar[Scope] = Scope.MACHINE
    default_interval_s: ClassVar[float] = 0.1
    #: metric names this provider may produce, with units, for `wattwise providers`
    metric_units: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def availability(self) -> Availability:
        """Whether the source exists here and, if not, why not. Must be cheap and must not raise."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare reading (find zones, take first counter values). Raise ProviderError if impossible."""

    @abstractmethod
    def specs(self) -> Sequence[MetricSpec]:
        """The metrics, in the order of :meth:`read`'s values. Valid after :meth:`open`."""

    @abstractmethod
    def read(self) -> Sequence[float | None]:
        """One value per spec (None: no value this time). Raise ProviderError on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or handles."""


class CounterAccumulator:
    """Turns a raw counter that wraps at `max_value` into a cumulative, non-decreasing total.

    The first raw value is the origin. A raw value below the previous one means the counter wrapped
    (once, assuming the sampling interval is far shorter than a wrap period).
    """

    def __init__(self, first_raw: float, max_value: float | None) -> None:
        self._previous = first_raw
        self._max = max_value
        self.total = 0.0
        self.wraps = 0

    def update(self, raw: float) -> float:
        delta = raw - self._previous
        if delta < 0:
            if self._max:
                delta += self._max
                self.wraps += 1
            else:  # a reset with no known range: count from the new origin
                delta = raw
        self._previous = raw
        self.total += delta
        return self.total
