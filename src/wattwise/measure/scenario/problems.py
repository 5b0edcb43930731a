"""Problems found in a scenario file, each with the file, line and key path it is about."""

from __future__ import annotations

from dataclasses import dataclass

from wattwise.errors import ScenarioError as ScenarioError

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


