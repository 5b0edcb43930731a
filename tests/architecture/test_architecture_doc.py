"""docs/architecture.md is written from the import contracts: its layer list, rules and exceptions are the ones
`lint-imports` checks (pyproject.toml, [tool.importlinter])."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _normal(layer: str) -> str:
    return " | ".join(part.strip() for part in layer.split("|"))


def test_doc_lists_the_contract_layers_in_order() -> None:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    block = re.search(r"<!-- layers.*?-->\s*```\n(.*?)```\s*<!-- /layers -->", DOC, re.S)
    assert block, "docs/architecture.md has no <!-- layers --> block"
    drawn = [_normal(line) for line in block.group(1).splitlines() if line.strip()]
    assert drawn == [_normal(layer) for layer in layers["layers"]]


def test_doc_states_every_forbidden_contract() -> None:
    stated = set(re.findall(r"^- \*\*(.+?)\*\*", DOC, re.M))
    names = {c["name"] for c in _contracts() if c["type"] == "forbidden"}
    assert names <= stated, f"not in docs/architecture.md: {sorted(names - stated)}"


def test_doc_names_every_temporary_exception() -> None:
    section = DOC.split("## Temporary exceptions", 1)[1].split("\n## ", 1)[0]
    for contract in _contracts():
        for entry in contract.get("ignore_imports", []):
            importer = entry.split("->")[0].strip()
            assert importer in section, f"{entry!r} is ignored in pyproject.toml but not named in the doc"
