"""Help texts from docstrings: paragraphs are joined into one line each, so that the terminal wraps them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


def unwrap(text: str) -> str:
    """Join the lines of each paragraph; lines indented by two or more spaces stay as they are."""
    paragraphs: list[str] = []
    for block in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in block.splitlines():
            if line.startswith("  ") or not lines or lines[-1].startswith("  "):
                lines.append(line)
            else:
                lines[-1] += " " + line.strip()
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def helptext(fn: F) -> F:
    """Decorator: rewrap the function's docstring for --help."""
    if fn.__doc__:
        fn.__doc__ = unwrap(fn.__doc__)
    return fn
