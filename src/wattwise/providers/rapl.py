"""CPU package and DRAM energy from RAPL through the Linux powercap sysfs tree.

Layout (``/sys/class/powercap``), all entries flat symlinks into ``/sys/devices/virtual/powercap``::

    intel-rapl:0/       name=package-0   energy_uj  max_energy_range_uj   (one per socket or die)
    intel-rapl:0:0/     name=core        sub-zone: cores only, INCLUDED in package-0
    intel-rapl:0:1/     name=uncore      sub-zone: integrated graphics etc., INCLUDED in package-0
    intel-rapl:0:2/     name=dram        sub-zone: memory of socket 0, NOT included in package-0
    intel-rapl:1/       name=psys        (laptops) whole SoC platform, INCLUDES package-0
    intel-rapl-mmio:0/  name=package-0   same package counter through MMIO: a duplicate

``energy_uj`` counts microjoules and wraps to 0 after ``max_energy_range_uj``. Since Linux 5.10
``energy_uj`` is readable by root only (mode 0400, CVE-2020-8694).

To get CPU + memory energy without double counting, add package and dram zones only
(:func:`machine_energy_zones`): core and uncore are parts of their package, psys contains it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.errors import ConfigError
from wattwise.providers.base import (
    Availability,
    CounterAccumulator,
    Kind,
    MetricSpec,
    Provider,
    ProviderError,
    Scope,
)

DEFAULT_ROOT = "/sys/class/powercap"
METRIC = "rapl_energy_j"
UJ_PER_J = 1e6

#: domains a zone may belong to, from its `name` file
DOMAINS = ("package", "core", "uncore", "dram", "psys")
#: domains whose energy is inside their package's counter: never add them to it
INCLUDED_IN_PACKAGE = frozenset({"core", "uncore"})
#: domains to add up for the CPU + memory total of the machine
MACHINE_TOTAL_DOMAINS = frozenset({"package", "dram"})

# intel-rapl:0, intel-rapl:0:2, intel-rapl-mmio:0, amd-rapl:1 ...
_ZONE_RE = re.compile(r"^(?P<type>[a-z0-9_-]*rapl[a-z0-9_-]*):(?P<index>\d+)(?::(?P<sub>\d+))?$")
_DESCRIPTIONS = {
    "package": "CPU package energy (cores, caches, uncore; DRAM not included)",
    "core": "energy of the CPU cores; already INCLUDED in the package zone, do not add",
    "uncore": "energy of the uncore (e.g. integrated GPU); already INCLUDED in the package zone, do not add",
    "dram": "DRAM energy; NOT included in the package zone: add it for CPU + memory",
    "psys": "platform (SoC) energy; INCLUDES the package zones, do not add to them",
}


def _domain_of(name: str) -> str:
    for domain in DOMAINS:
        if name == domain or name.startswith(domain + "-"):
            return domain
    return name


@dataclass(frozen=True)
class Zone:
    """One RAPL zone and one fresh reading of its counter."""

    zone_id: str  # directory name, e.g. intel-rapl:0:2
    control_type: str  # intel-rapl, intel-rapl-mmio, amd-rapl ...
    name: str  # contents of `name`: package-0, core, dram, psys, package-0-die-1 ...
    domain: str  # package, core, uncore, dram, psys (or the name if unknown)
    parent_id: str | None  # the package zone that contains this sub-zone's directory
    detail: str  # package-0, package-0/dram, psys
    path: Path
    energy_uj: int | None  # None when unreadable, see `error`
    max_energy_range_uj: int | None
    error: str | None = None

    @property
    def energy_j(self) -> float | None:
        return None if self.energy_uj is None else self.energy_uj / UJ_PER_J

    @property
    def in_machine_total(self) -> bool:
        """Whether this zone is one of those to add for the CPU + DRAM total."""
        return self.domain in MACHINE_TOTAL_DOMAINS


def _read_text(path: Path) -> str:
    return path.read_text().strip()


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise ProviderError(f"{path}: expected an integer, found {text!r}") from None


def _unreadable_reason(path: Path, exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return (f"{path}: permission denied (since Linux 5.10 RAPL energy_uj is readable by root only; "
                f"run as root or grant read access, e.g. with a udev rule or `chmod o+r`)")
    return f"{path}: {exc.strerror or exc}"


def _sort_key(entry: tuple[str, int, int]) -> tuple[int, str, int, int]:
    control_type, index, sub = entry
    # the MSR interface (intel-rapl) first, so that it wins when another interface repeats a zone;
    # a package (sub = -1) before its sub-zones
    return (0 if control_type == "intel-rapl" else 1, control_type, index, sub)


def read_rapl_zones(root: str | Path = DEFAULT_ROOT, include_duplicates: bool = False) -> list[Zone]:
    """Read every RAPL zone under `root` once (no state, no wrap correction).

    A zone whose energy cannot be read is returned with ``energy_uj=None`` and the reason in
    ``error``. Zones of a second interface (``intel-rapl-mmio``) that repeat a zone name already
    read through ``intel-rapl`` are left out unless `include_duplicates`. Raises ProviderError if
    `root` cannot be listed.
    """
    root = Path(root)
    try:
        entries = sorted(p.name for p in root.iterdir())
    except OSError as exc:
        raise ProviderError(f"cannot list {root}: {exc.strerror or exc}") from exc
    parsed: dict[tuple[str, int, int], str] = {}
    for entry in entries:
        match = _ZONE_RE.match(entry)
        if match:
            sub = int(match["sub"]) if match["sub"] is not None else -1
            parsed[(match["type"], int(match["index"]), sub)] = entry
    names: dict[str, str] = {}
    zones: list[Zone] = []
    seen_details: set[str] = set()
    for key in sorted(parsed, key=_sort_key):
        control_type, index, sub = key
        zone_id = parsed[key]
        path = root / zone_id
        try:
            name = _read_text(path / "name")
        except OSError:
            continue  # not a zone directory (or vanished)
        names[zone_id] = name
        parent_id = f"{control_type}:{index}" if sub >= 0 else None
        if parent_id is not None:
            parent_name = names.get(parent_id)
            if parent_name is None:
                try:
                    parent_name = _read_text(root / parent_id / "name")
                except OSError:
                    parent_name = parent_id
            detail = f"{parent_name}/{name}"
        else:
            detail = name
        if detail in seen_details and not include_duplicates:
            continue
        seen_details.add(detail)
        energy: int | None = None
        error: str | None = None
        try:
            energy = _read_int(path / "energy_uj")
        except OSError as exc:
            error = _unreadable_reason(path / "energy_uj", exc)
        except ProviderError as exc:
            error = str(exc)
        try:
            max_range: int | None = _read_int(path / "max_energy_range_uj")
        except (OSError, ProviderError):
            max_range = None
        zones.append(Zone(zone_id, control_type, name, _domain_of(name), parent_id, detail, path,
                          energy, max_range, error))
    return zones


def machine_energy_zones(specs: Iterable[MetricSpec]) -> list[MetricSpec]:
    """The RAPL specs to add up for the CPU + DRAM energy of the machine.

    Packages and dram zones: core and uncore are contained in their package, psys contains the
    packages, so adding those would count energy twice.
    """
    return [s for s in specs if s.name == METRIC and _domain_of(s.detail.rsplit("/", 1)[-1])
            in MACHINE_TOTAL_DOMAINS]


def _parse_zone_selection(zones: Iterable[str]) -> frozenset[str]:
    wanted = {z.strip().lower() for z in zones if z.strip()}
    if "all" in wanted:
        return frozenset(DOMAINS)
    unknown = sorted(wanted - set(DOMAINS))
    if unknown:
        raise ConfigError(f"unknown RAPL zone kind(s) {', '.join(unknown)}: allowed are "
                          f"{', '.join(DOMAINS)} or all")
    if not wanted:
        raise ConfigError(f"no RAPL zone kind selected: allowed are {', '.join(DOMAINS)} or all")
    return frozenset(wanted)


class RaplProvider(Provider):
    """Cumulative RAPL energy in joules, one counter per selected zone, wrap-around corrected."""

    name = "rapl"
    description = "CPU package (and optionally core/uncore/DRAM/psys) energy from RAPL powercap sysfs"
    scope = Scope.MACHINE
    default_interval_s = 0.1
    metric_units = {METRIC: "J"}

    def __init__(self, root: str | Path = DEFAULT_ROOT, zones: Sequence[str] = ("package",)) -> None:
        self.root = Path(root)
        self.domains = _parse_zone_selection(zones)
        self._zones: list[Zone] = []
        self._specs: list[MetricSpec] = []
        self._accumulators: list[CounterAccumulator] = []

    def _selected(self, zones: Iterable[Zone]) -> list[Zone]:
        return [z for z in zones if z.domain in self.domains]

    def availability(self) -> Availability:
        try:
            if not self.root.exists():
                return Availability.no(
                    f"{self.root} does not exist (no RAPL driver, or not an Intel/AMD CPU)")
            zones = read_rapl_zones(self.root)
            if not zones:
                return Availability.no(
                    f"{self.root} has no RAPL zones (load the intel_rapl_msr module; virtual machines "
                    f"usually do not expose RAPL)")
            selected = self._selected(zones)
            if not selected:
                found = ", ".join(z.detail for z in zones)
                return Availability.no(
                    f"no RAPL zone of kind {', '.join(sorted(self.domains))} under {self.root} "
                    f"(found: {found})")
            unreadable = [z for z in selected if z.error]
            if unreadable:
                return Availability.no(unreadable[0].error or "energy_uj unreadable")
            return Availability.yes(", ".join(z.detail for z in selected))
        except Exception as exc:  # availability must never raise
            return Availability.no(f"cannot inspect {self.root}: {exc}")

    def open(self) -> None:
        zones = self._selected(read_rapl_zones(self.root))
        if not zones:
            raise ProviderError(f"no RAPL zone of kind {', '.join(sorted(self.domains))} under {self.root}")
        for zone in zones:
            if zone.energy_uj is None:
                raise ProviderError(zone.error or f"{zone.path / 'energy_uj'} is unreadable")
        self._zones = zones
        self._accumulators = [CounterAccumulator(z.energy_uj or 0, z.max_energy_range_uj) for z in zones]
        self._specs = [
            MetricSpec(METRIC, "J", Kind.COUNTER, z.detail,
                       description=f"{_DESCRIPTIONS.get(z.domain, 'RAPL zone energy')} [{z.zone_id}]")
            for z in zones
        ]

    def specs(self) -> Sequence[MetricSpec]:
        return list(self._specs)

    def read(self) -> Sequence[float | None]:
        if not self._zones:
            raise ProviderError("RaplProvider.read() called before open()")
        values: list[float | None] = []
        for zone, accumulator in zip(self._zones, self._accumulators, strict=True):
            path = zone.path / "energy_uj"
            try:
                raw = _read_int(path)
            except OSError as exc:
                raise ProviderError(_unreadable_reason(path, exc)) from exc
            values.append(accumulator.update(raw) / UJ_PER_J)
        return values

    def close(self) -> None:
        self._zones = []
        self._accumulators = []

    def wraps(self) -> dict[str, int]:
        """How many wrap-arounds were corrected per zone detail since open()."""
        return {z.detail: a.wraps for z, a in zip(self._zones, self._accumulators, strict=True)}
