"""Software Carbon Intensity (Green Software Foundation SCI specification, ISO/IEC 21031:2024).

    SCI = (O + M) / R
    O = E × I (× PUE)            operational carbon, g (machine energy plus network transfer energy)
    M = TE × (TiR / EL) × RS     embodied carbon share, g

TE: total embodied carbon of the machine (gCO2e); EL: expected lifetime (years, converted to seconds);
TiR: time reserved = the phase's duration; RS: resource share (0–1, the fraction of the machine the
software had); R: the functional unit count (requests, jobs, users ...).

Parameters come from the run's ``settings["sci"]`` (scenario runs), overridable by the caller. Accepted
keys (case-insensitive): ``TE`` (g), ``EL`` (years), ``RS`` (ratio), ``R`` (a number), ``R_d`` (what one
unit is), ``R_metric`` (a metric whose increase over the phase is R; default ``sci_r``), ``I`` (g/kWh, to
override the run's grid intensity). Without a number or a metric, R is counted from log lines and notes
of the form ``GMT_SCI_R=<n>`` emitted during the phase; without any of them R is 1 ("per run").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from wattwise.analysis.carbon import (
    DEFAULT_NETWORK_KWH_PER_GB,
    Intensity,
    carbon_from_energy_g,
    check_trace_covers,
    network_energy_j,
    operational_carbon,
)
from wattwise.analysis.phases import Series, load_series
from wattwise.analysis.stats import RUNTIME, flow_children
from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import WattwiseError
from wattwise.store import Store

SECONDS_PER_YEAR = 365.25 * 86400
DEFAULT_R_METRIC = "sci_r"
#: which network bytes carry transfer energy: "external" (only what leaves the machine, the default) or
#: "all" (also traffic between containers and processes of the same machine, each transfer counted once)
NETWORK_SCOPES = ("external", "all")
MACHINE = "machine"
EXTERNAL = "external"
_R_LINE = re.compile(r"GMT_SCI_R\s*=\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)")


@dataclass
class SciParams:
    te_g: float | None = None
    el_years: float = 4.0
    rs: float = 1.0
    r: float | None = None
    r_d: str = "run"
    r_metric: str = DEFAULT_R_METRIC
    intensity_g_per_kwh: float | None = None

    @classmethod
    def from_settings(cls, raw: dict[str, Any] | None, **overrides: Any) -> SciParams:
        values: dict[str, Any] = {}
        aliases = {
            "te": "te_g",
            "te_g": "te_g",
            "el": "el_years",
            "el_years": "el_years",
            "rs": "rs",
            "r": "r",
            "r_d": "r_d",
            "r_metric": "r_metric",
            "i": "intensity_g_per_kwh",
            "intensity_g_per_kwh": "intensity_g_per_kwh",
        }
        for key, value in (raw or {}).items():
            target = aliases.get(str(key).lower())
            if target is not None and value is not None:
                values[target] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        params = cls()
        for key, value in values.items():
            if key in ("r_d", "r_metric"):
                setattr(params, key, str(value))
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                if key == "r":  # R given as a metric name
                    params.r_metric = str(value)
                    continue
                raise WattwiseError(f"SCI parameter {key}={value!r} is not a number") from None
            setattr(params, key, number)
        params.validate()
        return params

    def validate(self) -> None:
        if self.te_g is not None and self.te_g < 0:
            raise WattwiseError(f"SCI TE (total embodied carbon, g) must be ≥ 0, got {self.te_g}")
        if not self.el_years > 0:
            raise WattwiseError(f"SCI EL (expected lifetime, years) must be > 0, got {self.el_years}")
        if not 0 <= self.rs <= 1:
            raise WattwiseError(f"SCI RS (resource share) must be between 0 and 1, got {self.rs}")
        if self.r is not None and not self.r > 0:
            raise WattwiseError(f"SCI R (functional units) must be > 0, got {self.r}")


def embodied_g(duration_s: float, te_g: float, el_years: float, rs: float) -> float:
    """M = TE × (TiR / EL) × RS."""
    return te_g * (duration_s / (el_years * SECONDS_PER_YEAR)) * rs


def sci_value(operational_g: float, embodied_g_: float, r: float) -> float:
    return (operational_g + embodied_g_) / r


@dataclass
class SciResult:
    phase: str
    duration_s: float
    energy_j: float | None
    network_bytes: float | None
    network_energy_j: float | None
    intensity_g_per_kwh: float | None
    intensity_source: str
    pue: float
    operational_g: float | None
    network_g: float | None
    embodied_g: float | None
    r: float | None
    r_d: str
    r_source: str
    sci_g_per_unit: float | None
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: E (and so O and the SCI) comes from the load→power estimate: shown with ≈
    estimated: bool = False
    #: which traffic `network_bytes` counts (see NETWORK_SCOPES)
    network_scope: str = "external"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _windows(store: Store, run_id: int, phase: str) -> tuple[list[tuple[int, int]], float]:
    phases = store.phases(run_id)
    children = flow_children(phases, phase)
    chosen = children or [p for p in phases if p.name == phase]
    if not chosen:
        names = ", ".join(p.name for p in phases) or "none"
        raise WattwiseError(f"run {run_id} has no phase {phase!r} (phases: {names})")
    windows = [(p.start_us, p.end_us) for p in chosen]
    return windows, sum(max(0, b - a) for a, b in windows) / 1e6


def _amount(
    series: list[Series], name: str, windows: list[tuple[int, int]], detail: str | None = None
) -> float | None:
    total: float | None = None
    for s in series:
        if s.name != name or (detail is not None and s.detail != detail):
            continue
        for a, b in windows:
            value = s.delta(a, b) if s.kind == "counter" else s.peak(a, b)
            if value is not None:
                total = (total or 0.0) + value
    return total


@dataclass
class NetworkBytes:
    """Bytes that carry transfer energy, and how they were found."""

    bytes: float | None
    machine_b: float | None  #: the machine's interface counters, rx + tx (same-host traffic on both ends)
    units_b: float | None  #: the containers' own network namespaces, rx + tx
    external_b: float | None  #: what left (or reached) the machine from outside, each byte once


def network_bytes(series: list[Series], windows: list[tuple[int, int]], scope: str = "external") -> NetworkBytes:
    """Network bytes of the windows that count for transfer energy.

    The machine's counters (``detail="machine"``) sum every interface but loopback, so a container's traffic
    passes through its host-side veth as well: a transfer between two containers of the machine shows up
    twice (rx on one veth, tx on the other) without leaving it, and a container's traffic to the outside
    twice (its veth and the uplink). Each container's own namespace counters (other details) mirror its veth,
    so the traffic that crossed the machine's boundary, each byte once, is machine − containers. A series
    with ``detail="external"`` (counted at the uplink) is used as it is. ``scope="all"`` adds the same-host
    traffic, each transfer once: half of what the containers' counters saw that did not leave the machine."""
    if scope not in NETWORK_SCOPES:
        raise WattwiseError(f"network scope {scope!r} is not one of {', '.join(NETWORK_SCOPES)}")
    names = ("network_rx_b", "network_tx_b")
    if not any(s.name in names for s in series):
        return NetworkBytes(None, None, None, None)

    def total(keep: Any) -> float | None:
        values = [
            max(0.0, v)
            for s in series
            if s.name in names and keep(s.detail)
            for a, b in windows
            if (v := s.delta(a, b)) is not None
        ]
        return sum(values) if values else None

    machine = total(lambda d: d == MACHINE)
    units = total(lambda d: d not in (MACHINE, EXTERNAL))
    external = total(lambda d: d == EXTERNAL)
    if external is None:
        external = max(0.0, (machine or 0.0) - (units or 0.0)) if machine is not None else None
    chosen = external
    if scope == "all" and external is not None:
        chosen = external + max(0.0, (units or 0.0) - external) / 2
    return NetworkBytes(chosen, machine, units, external)


def _count_r_lines(store: Store, run_id: int, windows: list[tuple[int, int]]) -> float | None:
    total = None
    texts = [(n.t_us, n.text) for n in store.notes(run_id)] + [(e.t_us, e.text) for e in store.logs(run_id)]
    for t_us, text in texts:
        if t_us is None or not any(a <= t_us <= b for a, b in windows):
            continue
        for match in _R_LINE.finditer(text):
            total = (total or 0.0) + float(match.group(1))
    return total


def run_sci(
    store: Store,
    run_id: int,
    *,
    phase: str = RUNTIME,
    intensity: Intensity | None = None,
    pue: float | None = None,
    trace_shift_s: float = 0.0,
    network_kwh_per_gb: float = DEFAULT_NETWORK_KWH_PER_GB,
    network_scope: str = "external",
    series: list[Series] | None = None,
    **overrides: Any,
) -> SciResult:
    """SCI of one phase of a run ([RUNTIME] = its visible flow sub-phases, when it has them)."""
    run = store.get_run(run_id)
    settings = run.settings or {}
    params = SciParams.from_settings(settings.get("sci"), **overrides)
    windows, duration_s = _windows(store, run_id, phase)
    series = series if series is not None else load_series(store, run_id)
    warnings: list[str] = []
    if intensity is None:
        if params.intensity_g_per_kwh is not None:
            intensity = params.intensity_g_per_kwh
        else:
            intensity = float(settings.get("intensity_g_per_kwh", 0.0))
    pue = float(pue if pue is not None else settings.get("pue", 1.0))
    if isinstance(intensity, CarbonTrace):
        run_start = min(p.start_us for p in store.phases(run_id))
        check_trace_covers(intensity, windows, trace_shift_s, run_start_us=run_start)
    figure = operational_carbon(series, windows, intensity, pue, shift_s=trace_shift_s)
    if figure.energy_j is None:
        warnings.append("the run has no energy figures (no power or energy metric covers the phase)")
    net_bytes = network_bytes(series, windows, network_scope).bytes
    net_j = network_energy_j(net_bytes, network_kwh_per_gb) if net_bytes is not None else None
    net_g = None
    if net_j is not None and figure.intensity_g_per_kwh is not None:
        net_g = carbon_from_energy_g(net_j, figure.intensity_g_per_kwh, 1.0)
    operational = None
    if figure.carbon_g is not None:
        operational = figure.carbon_g + (net_g or 0.0)
    embodied = None
    if params.te_g is not None:
        embodied = embodied_g(duration_s, params.te_g, params.el_years, params.rs)
    else:
        warnings.append("no TE (total embodied carbon) given: embodied carbon is left out")
    raw_sci = settings.get("sci") or {}
    r_source = "given"
    if overrides.get("r") is None and isinstance(raw_sci, dict) and raw_sci.get("R_source"):
        r_source = f"scenario: {raw_sci['R_source']}"
    elif overrides.get("r") is None and isinstance(raw_sci, dict) and raw_sci.get("R") is not None:
        r_source = "scenario"
    r = params.r
    if r is None:
        r = _amount(series, params.r_metric, windows)
        r_source = f"metric {params.r_metric}"
        if r is None:
            r = _count_r_lines(store, run_id, windows)
            r_source = "GMT_SCI_R lines"
        if r is None:
            r, r_source = 1.0, "one run (no functional-unit metric)"
            warnings.append(f"no functional-unit metric {params.r_metric!r}: SCI is per run")
    sci = None
    if operational is not None and r and r > 0:
        sci = sci_value(operational, embodied or 0.0, r)
    elif r is not None and r <= 0:
        warnings.append(f"the functional unit count R is {r:g}: SCI is undefined")
    return SciResult(
        phase=phase,
        duration_s=duration_s,
        energy_j=figure.energy_j,
        network_bytes=net_bytes,
        network_energy_j=net_j,
        intensity_g_per_kwh=figure.intensity_g_per_kwh,
        intensity_source=figure.intensity_source
        if figure.intensity_source != "static"
        else str(settings.get("intensity_source") or "static"),
        pue=pue,
        operational_g=operational,
        network_g=net_g,
        embodied_g=embodied,
        r=r,
        r_d=params.r_d,
        r_source=r_source,
        sci_g_per_unit=sci,
        params={**asdict(params), "network_kwh_per_gb": network_kwh_per_gb},
        warnings=warnings,
        estimated=figure.estimated,
        network_scope=network_scope,
    )
