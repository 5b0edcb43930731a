"""FastAPI API and dashboard.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.web.app import create_app
    from wattwise.web.background import BackgroundServer

__all__ = [
    "BackgroundServer",
    "create_app",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "create_app": "wattwise.web.app",
    "BackgroundServer": "wattwise.web.background",
})
