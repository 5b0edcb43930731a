"""README badges: a flat two-part SVG (label | figure), for a run's phase and for the energy timeline.

    GET /api/runs/{run_id}/badge.svg?figure=energy|carbon|power|duration&phase=P&label=L
"""

from __future__ import annotations

from typing import Annotated, Literal
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Query, Response

from wattwise.store.models import RunStatus
from wattwise.web.api import ERRORS, RunPath, run_or_404, run_summary
from wattwise.web.deps import StoreDep, require_read

__all__ = ["BADGE_FIGURES", "badge_svg", "router"]

router = APIRouter(dependencies=[Depends(require_read)], responses=ERRORS)

BADGE_FIGURES = {
    "energy": ("energy_j", "J", "energy"),
    "carbon": ("carbon_g", "g", "CO₂e"),
    "power": ("mean_power_w", "W", "power"),
    "duration": ("duration_s", "s", "duration"),
}


def badge_svg(label: str, message: str, color: str = "#2f7d32") -> str:
    """A flat two-part badge; widths estimated from character counts (DejaVu Sans 11 px ≈ 6.5 px/char)."""
    lw = 10 + int(6.5 * len(label))
    mw = 10 + int(6.5 * len(message))
    label_x, msg_x = lw / 2, lw + mw / 2
    text = f"{label}: {message}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + mw}" height="20" role="img" '
        f'aria-label="{escape(text, {chr(34): "&quot;"})}"><title>{escape(text)}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="DejaVu Sans,Verdana,sans-serif" font-size="11">'
        f'<text x="{label_x}" y="14">{escape(label)}</text><text x="{msg_x}" y="14">{escape(message)}</text>'
        "</g></svg>"
    )


@router.get(
    "/runs/{run_id}/badge.svg",
    tags=["badges"],
    summary="SVG badge with a phase figure of the run, for a README",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "an SVG image"}},
)
def badge(
    store: StoreDep,
    run_id: RunPath,
    figure: Literal["energy", "carbon", "power", "duration"] = "energy",
    phase: Annotated[str, Query(max_length=200)] = "[RUNTIME]",
    label: Annotated[str | None, Query(max_length=60)] = None,
) -> Response:
    run = run_or_404(store, run_id)
    key, unit, default_label = BADGE_FIGURES[figure]
    summary = run_summary(store, run)
    value = next((p.get(key) for p in summary["phases"] if p["name"] == phase), None)
    estimated = summary.get("estimated")
    if value is None:
        message, color = "n/a", "#9e9e9e"
    else:
        from wattwise.units import format_si

        message = ("≈" if estimated else "") + format_si(float(value), unit)
        color = "#2f7d32" if run.status == RunStatus.FINISHED else "#c77700"
    return Response(
        badge_svg(label or default_label, message, color),
        media_type="image/svg+xml",
        headers={"Cache-Control": "max-age=300"},
    )
