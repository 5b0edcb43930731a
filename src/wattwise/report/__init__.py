"""Self-contained HTML report of a run.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.report.html import render_report

__all__ = [
    "render_report",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "render_report": "wattwise.report.html",
})
