"""Problems found in a scenario file, each with the file, line and key path it is about."""

from __future__ import annotations

from dataclasses import dataclass

from wattwise.errors import WattwiseError

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """('services', 'web', 'ports', 0) -> 'services.web.ports[0]'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


@dataclass(frozen=True)
class Location:
    file: str  # as shown to the user: relative to the scenario folder when inside it
    line: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    location: Location | None
    path: KeyPath
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{format_path(self.path)}: " if self.path else ""
        return f"{where}{key}{self.message}"


class ScenarioError(WattwiseError):
    """A scenario file that cannot be used; `problems` lists every finding with its line and key path."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.location.file, p.location.line) if p.location else ("", 0))
        count = len(self.problems)
        head = f"{file} is not a valid usage scenario ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))

    @property
    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]
