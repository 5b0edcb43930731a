"""Measuring inside other tools: the pytest plugin (`pytest --wattwise`) and CI pipelines (`wattwise ci`).

These sit on the Python tracker (`wattwise.measure.tracker`) and the analysis; nothing below imports them.
"""

from __future__ import annotations

__all__: list[str] = []
