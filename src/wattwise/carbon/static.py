"""Static grid intensity per country, from the shipped, sourced table (see data/README.md)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources

from wattwise.errors import ConfigError
from wattwise.units import J_PER_KWH

ENV_INTENSITY = "WATTWISE_GRID_INTENSITY"  # g/kWh
ENV_COUNTRY = "WATTWISE_COUNTRY"  # ISO 3166 alpha-2 or alpha-3
ENV_PUE = "WATTWISE_PUE"


@dataclass(frozen=True)
class GridFactor:
    intensity_g_per_kwh: float
    source: str


@dataclass(frozen=True)
class _Row:
    iso2: str
    iso3: str
    country: str
    year: int
    intensity_g_per_kwh: float
    generation_twh: float


@cache
def _rows() -> tuple[_Row, ...]:
    text = resources.files("wattwise").joinpath("data/grid_intensity_by_country.csv").read_text()
    return tuple(
        _Row(
            r["iso2"],
            r["iso3"],
            r["country"],
            int(r["year"]),
            float(r["intensity_g_per_kwh"]),
            float(r["generation_twh"]),
        )
        for r in csv.DictReader(text.splitlines())
    )


def country_factor(code: str) -> GridFactor:
    """Yearly average intensity for an ISO alpha-2/alpha-3 code or a country name (case-insensitive)."""
    wanted = code.strip().lower()
    if wanted in ("world", "wld"):
        return world_factor()
    for row in _rows():
        if wanted in (row.iso2.lower(), row.iso3.lower(), row.country.lower()):
            return GridFactor(row.intensity_g_per_kwh, f"{row.country} {row.year} average (Ember/OWID)")
    import difflib

    names = [n for row in _rows() for n in (row.iso2, row.iso3, row.country)]
    close = difflib.get_close_matches(code.strip(), names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"no grid intensity for country {code!r}{hint}: use an ISO code like DE or DEU or a country name "
        "(all are listed in src/wattwise/data/grid_intensity_by_country.csv) or give --intensity in g/kWh"
    )


def world_factor() -> GridFactor:
    rows = _rows()
    total = sum(r.generation_twh for r in rows)
    mean = sum(r.intensity_g_per_kwh * r.generation_twh for r in rows) / total
    return GridFactor(round(mean, 1), "world average weighted by generation (Ember/OWID)")


def countries() -> list[tuple[str, str, str, int, float]]:
    return [(r.iso2, r.iso3, r.country, r.year, r.intensity_g_per_kwh) for r in _rows()]


def resolve_grid_factor(intensity_g_per_kwh: float | None = None, country: str | None = None) -> GridFactor:
    """An explicit value wins, then a country, then $WATTWISE_GRID_INTENSITY, $WATTWISE_COUNTRY, world."""
    if intensity_g_per_kwh is not None:
        if intensity_g_per_kwh < 0:
            raise ConfigError(f"grid intensity must not be negative: {intensity_g_per_kwh}")
        return GridFactor(intensity_g_per_kwh, "given")
    if country:
        return country_factor(country)
    if os.environ.get(ENV_INTENSITY):
        try:
            return GridFactor(float(os.environ[ENV_INTENSITY]), ENV_INTENSITY)
        except ValueError as exc:
            raise ConfigError(f"{ENV_INTENSITY}={os.environ[ENV_INTENSITY]!r} is not a number") from exc
    if os.environ.get(ENV_COUNTRY):
        return country_factor(os.environ[ENV_COUNTRY])
    return world_factor()


def resolve_pue(pue: float | None = None) -> float:
    if pue is None and os.environ.get(ENV_PUE):
        try:
            pue = float(os.environ[ENV_PUE])
        except ValueError as exc:
            raise ConfigError(f"{ENV_PUE}={os.environ[ENV_PUE]!r} is not a number") from exc
    pue = 1.0 if pue is None else pue
    if pue < 1.0:
        raise ConfigError(f"PUE must be at least 1.0 (it is total facility energy / IT energy), got {pue}")
    return pue


def carbon_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    return energy_j / J_PER_KWH * intensity_g_per_kwh * pue
