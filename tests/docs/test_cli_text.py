"""What `--help` and the CLI print reads right: no eaten brackets, no `<bool>`, no property objects, examples."""

from __future__ import annotations

import json

import pytest

EXAMPLES = ["simulate", "sweep", "runs show", "runs delete", "exporter", "monitor-api", "monitor-proxy"]


@pytest.mark.parametrize("command", EXAMPLES)
def test_help_has_examples(run_cli, command: str) -> None:
    out = run_cli(*command.split(), "--help", check=True).stdout
    assert "Example" in out and f"wattwise {command} " in out


def test_flags_show_no_bool_type_and_brackets_survive(run_cli) -> None:
    out = run_cli("measure", "--help", check=True).stdout
    assert "<bool>" not in out and "--json" in out
    slurm = run_cli("slurm", "submit", "--help", check=True).stdout
    assert "[now, now + wait]" in slurm


def test_providers_scope_is_text(run_cli) -> None:
    out = run_cli("providers", check=True).stdout
    assert "property object" not in out
    rows = json.loads(run_cli("providers", "--json", check=True).stdout)
    assert {r["name"]: r["scope"] for r in rows}["network"] == "machine or unit"


def test_unknown_country_names_no_missing_command(run_cli) -> None:
    out = run_cli("measure", "--country", "Germny", "--baseline", "0", "--", "true")
    assert out.returncode == 2
    assert "wattwise grid" not in out.stderr and "Germany" in out.stderr
