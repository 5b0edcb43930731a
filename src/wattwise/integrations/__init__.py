"""Measuring inside developers' tools: the pytest plugin (`pytest --wattwise`), CI pipelines (`wattwise ci`) and
the energy timeline over commits (`wattwise timeline`).

These sit on the Python tracker (`wattwise.measure.tracker`) and the analysis; nothing below imports them.
"""

from __future__ import annotations

__all__: list[str] = []
